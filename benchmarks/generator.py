"""The generator against search baselines on 50 deployment scenarios (random tasks of 2-5
classes x MFLOPs budgets spread between the smallest and largest arch).

Reports generation time (numpy path, repair included, median of repeated runs), budget
compliance, and mean *test* task accuracy of the archs chosen by: the task-specialised
generator, a task-agnostic generator, OFA-style evolutionary search and random search (both
pick by validation accuracy with the same BN-recalibrating evaluator), with each method's
search time. Writes benchmarks/results/generator.json and generator_pareto.png.

    python -m benchmarks.generator --run RUN_DIR [--seed 1] [--evo-evaluations 1000] [--random-samples 1000]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from benchmarks.common import add_allow_dirty, RESULTS, plot_accuracy_vs_mflops, require_clean_tree, save_result

import edge_eas.generator as G
from edge_eas.cost.flops import macs
from edge_eas.data import run_dataset
from edge_eas.host.evaluate import TaskEvaluator
from edge_eas.host.generator_train import GeneratorConfig, train_generator
from edge_eas.host.rundir import RunDir, load_supernet
from edge_eas.host.search import EvolutionConfig, evolutionary_search, random_search
from edge_eas.net.tasks import Task


def scenarios(space, num_classes: int, seed: int, n: int = 50) -> tuple[list[list[int]], list[float]]:  # type: ignore[no-untyped-def]
    lo, hi = macs(space, space.smallest(), num_classes) / 1e6, macs(space, space.largest(), num_classes) / 1e6
    rng = np.random.default_rng(seed)
    tasks = [sorted(rng.choice(num_classes, size=int(rng.integers(2, 6)), replace=False).tolist()) for _ in range(n)]
    budgets = [float(b) for b in rng.uniform(lo * 1.02, hi, size=n)]
    return tasks, budgets


def time_generation(gen: G.ArchGenerator, tasks: list[list[int]], budgets: list[float], repeats: int = 21) -> dict:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        gen.generate(tasks, budgets)
        times.append(time.perf_counter() - t)
    ms = 1000 * float(np.median(times))
    return {"total_ms_median": ms, "per_scenario_ms": ms / len(tasks), "repeats": repeats,
            "total_ms_min": 1000 * float(np.min(times))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True, help="a digits run from `edge_eas train`")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--evo-evaluations", type=int, default=1000)
    ap.add_argument("--random-samples", type=int, default=1000)
    ap.add_argument("--search-scenarios", type=int, default=50,
                    help="run the (slow) searches on the first N scenarios only")
    add_allow_dirty(ap)
    args = ap.parse_args()
    require_clean_tree(args.allow_dirty)

    import torch
    # Sub-networks this small run fastest on one thread (no OpenMP hand-off per tiny op); the
    # generator's own timing below is numpy and unaffected.
    torch.set_num_threads(1)
    run = RunDir(args.run)
    gen = G.load(run.path)
    net, meta = load_supernet(run)
    n_cls = len(meta["class_names"])
    space = net.space
    if not (run.path / "generator-agnostic.safetensors").is_file():
        train_generator(run, GeneratorConfig(task_agnostic=True, out_name="generator-agnostic"))
    agnostic = G.load(run.path, name="generator-agnostic")
    tasks, budgets = scenarios(space, n_cls, args.seed)
    timing = time_generation(gen, tasks, budgets)
    data = run_dataset(meta, resolution=space.resolution)
    test_ev = TaskEvaluator(net, data, split="test")
    val_ev = TaskEvaluator(net, data, split="val", calib_images=128)
    cost_table = gen.cost_tables["mflops"]

    def cost(vecs: np.ndarray) -> np.ndarray:
        return cost_table.cost_of_vectors(space, vecs)

    methods: dict[str, dict] = {}

    def record(name: str, archs: list, seconds: list[float], extra: list[dict] | None = None) -> None:
        rows = []
        for i, (arch, b, t, s) in enumerate(zip(archs, budgets, tasks, seconds)):
            m = macs(space, arch, n_cls) / 1e6
            row = {"task": t, "budget_mflops": b, "mflops": m, "within_budget": m <= b + 1e-9,
                   "test_accuracy": test_ev.accuracy(arch, Task(tuple(t))), "search_seconds": s,
                   "arch": arch.to_dict(), **((extra or [{}] * len(archs))[i])}
            rows.append(row)
        methods[name] = {"scenarios": rows, "mean_test_accuracy": float(np.mean([r["test_accuracy"] for r in rows])),
                         "budget_compliance": float(np.mean([r["within_budget"] for r in rows])),
                         "mean_budget_use": float(np.mean([r["mflops"] / r["budget_mflops"] for r in rows])),
                         "mean_search_seconds": float(np.mean(seconds))}
        print(f"{name:24s} mean test acc {100 * methods[name]['mean_test_accuracy']:.2f}%  "
              f"in budget {100 * methods[name]['budget_compliance']:.0f}%  budget use "
              f"{methods[name]['mean_budget_use']:.2f}  search {methods[name]['mean_search_seconds'] * 1000:.3f} ms/scenario",
              flush=True)

    k = min(args.search_scenarios, len(tasks))
    per = timing["total_ms_median"] / 1000 / len(tasks)
    record("generator", gen.generate(tasks, budgets)[:k], [per] * k)
    record("task-agnostic generator", agnostic.generate(tasks, budgets)[:k], [per] * k)
    evo, evo_s, evo_extra = [], [], []
    rnd, rnd_s = [], []
    for i in range(k):
        task = Task(tuple(tasks[i]))

        def fitness(arch, task=task):  # type: ignore[no-untyped-def]
            return val_ev.score(arch, task)

        rng = np.random.default_rng(args.seed * 1000 + i)
        r = evolutionary_search(space, fitness, cost, budgets[i], rng, EvolutionConfig(evaluations=args.evo_evaluations))
        evo.append(r.arch)
        evo_s.append(r.seconds)
        evo_extra.append({"evaluations": r.evaluations})
        r2 = random_search(space, fitness, cost, budgets[i], rng, samples=args.random_samples)
        rnd.append(r2.arch)
        rnd_s.append(r2.seconds)
        print(f"  scenario {i + 1}/{k}: evolution {r.seconds:.1f} s, random {r2.seconds:.1f} s", flush=True)
    record("evolutionary search", evo, evo_s, evo_extra)
    record("random search", rnd, rnd_s)
    speedup = methods["evolutionary search"]["mean_search_seconds"] / methods["generator"]["mean_search_seconds"]
    summary = {
        "generation": timing, "scenarios": len(tasks), "search_scenarios": k,
        "budget_compliance": float(np.mean([macs(space, a, n_cls) / 1e6 <= b + 1e-9
                                            for a, b in zip(gen.generate(tasks, budgets), budgets)])),
        "generator_vs_evolution_pp": 100 * (methods["generator"]["mean_test_accuracy"]
                                            - methods["evolutionary search"]["mean_test_accuracy"]),
        "generator_vs_agnostic_pp": 100 * (methods["generator"]["mean_test_accuracy"]
                                           - methods["task-agnostic generator"]["mean_test_accuracy"]),
        "search_speedup_vs_evolution": speedup,
        "paper_reference": "EAS: 50 scenarios within 0.1 s",
    }
    print(f"50 scenarios generated in {timing['total_ms_median']:.2f} ms; speed-up vs evolution {speedup:,.0f}x")
    RESULTS.mkdir(parents=True, exist_ok=True)
    plot_accuracy_vs_mflops({n: [(r["mflops"], r["test_accuracy"]) for r in m["scenarios"]]
                             for n, m in methods.items()}, RESULTS / "generator_pareto.png",
                            "50 scenarios: accuracy vs cost (lines: Pareto front per method)")
    save_result("generator", {"run": str(args.run), "seed": args.seed, "evo_evaluations": args.evo_evaluations,
                              "random_samples": args.random_samples, "summary": summary,
                              "methods": {k2: {kk: vv for kk, vv in v.items()} for k2, v in methods.items()}}, allow_dirty=args.allow_dirty)


if __name__ == "__main__":
    main()
