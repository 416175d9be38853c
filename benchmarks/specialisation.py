"""Does specialisation pay? Every method picks one sub-network per (task, budget) scenario; all
are scored by the same evaluator: test accuracy on the task's classes after BN recalibration.

Scenarios: tasks of 2-5 classes, half inside one superclass (the hard ones), half random;
budgets log-uniform over the space's MFLOPs range. Methods:
- generator: the run's task-conditioned generator (one forward pass, repair included);
- task-agnostic generator: same training, all-class tasks only, and asked for all classes;
- static: one architecture per budget for every task (the largest uniform arch - one depth,
  kernel, expand, width step and resolution everywhere - within budget, as a scaled model
  family gives);
- evolutionary and random search: the same oracle (validation accuracy after BN
  recalibration) and the same number of real evaluations;
- predictor pick: the most accurate network the run's accuracy predictor sees within the
  budget (`specialize --min-accuracy` with a budget: the same candidates and predictor).
Every method sees the same images: the generator and the predictor learnt from the whole
validation split, and the searches score on it too (unless --val-per-class cuts it).
Reports paired differences (generator - other, and predictor pick - task-agnostic generator)
with 95 % bootstrap CIs over scenarios, for all scenarios and the in-group / random halves,
with bootstrap p-values and which differences survive a Holm correction over every comparison
the table makes; distinct architectures per method, budget compliance, and search time per
scenario, with the generator's training amortised over 100 and 1,000 scenarios. Writes
benchmarks/results/specialisation_<data>.json and a plot.

    python -m benchmarks.specialisation --run RUN [--scenarios 50] [--evo-evaluations 100]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import (add_allow_dirty, holm, paired, plot_accuracy_vs_mflops, require_clean_tree,
                               RESULTS, save_result)

import edge_eas.generator as G
from edge_eas.archgen.targets import meet_target
from edge_eas.host.accuracy_fit import load_predictor
from edge_eas.cost.flops import macs
from edge_eas.data import run_dataset
from edge_eas.host.evaluate import TaskEvaluator
from edge_eas.host.generator_train import GeneratorConfig, train_generator
from edge_eas.host.rundir import RunDir, load_supernet
from edge_eas.host.search import EvolutionConfig, evolutionary_search, random_search
from edge_eas.net.space import Arch, SearchSpace
from edge_eas.net.tasks import Task, TaskSampler


def make_scenarios(space: SearchSpace, n_cls: int, groups: dict[str, list[int]], n: int,
                   seed: int) -> list[dict[str, Any]]:
    lo, hi = (macs(space, a, n_cls) / 1e6 for a in (space.smallest(), space.largest()))
    rng = np.random.default_rng(seed)
    sampler = TaskSampler(n_cls, 2, 5, groups=tuple(tuple(g) for g in groups.values()), in_group_prob=1.0)
    out = []
    for i in range(n):
        in_group = bool(groups) and i % 2 == 0
        task = sampler.sample_in_group(rng) if in_group else TaskSampler(n_cls, 2, 5).sample(rng)
        budget = float(np.exp(rng.uniform(np.log(lo * 1.01), np.log(hi))))
        out.append({"id": i, "classes": list(task.classes), "budget_mflops": budget, "in_group": in_group})
    return out


def uniform_family(space: SearchSpace) -> list[Arch]:
    """Archs with one depth index, kernel, expand, width step and resolution everywhere: a
    scaled model family (as MobileNet's width and resolution multipliers give)."""
    out = []
    n_depth = max(len(s.depth_choices) for s in space.stages)
    n_width = max(len(s.widths) for s in space.stages)
    for di in range(n_depth):
        depths = tuple(s.depth_choices[min(di, len(s.depth_choices) - 1)] for s in space.stages)
        for wi in range(n_width):
            widths = tuple(s.widths[min(wi, len(s.widths) - 1)] for s in space.stages) if space.has_widths else ()
            for r in (space.resolutions if space.resolution_choices else (0,)):
                for k in space.kernel_choices:
                    for e in space.expand_choices:
                        out.append(Arch(depths, tuple((k,) * d for d in depths), tuple((e,) * d for d in depths),
                                        widths, r))
    return out


def static_arch(space: SearchSpace, family: list[Arch], n_cls: int, budget: float) -> Arch:
    fits = [a for a in family if macs(space, a, n_cls) / 1e6 <= budget]
    return max(fits, key=lambda a: macs(space, a, n_cls)) if fits else space.smallest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True, help="a run from `edge_eas train` (with its generator)")
    ap.add_argument("--scenarios", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--evo-evaluations", type=int, default=100, help="real evaluations per scenario, both searches")
    ap.add_argument("--search-scenarios", type=int, default=None, help="run the searches on the first N only")
    ap.add_argument("--val-per-class", type=int, default=None,
                    help="validation images per class the searches score (default: all of them, the images the "
                         "generator and the predictor learnt from)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads for every method (timings depend on it)")
    add_allow_dirty(ap)
    args = ap.parse_args()
    require_clean_tree(args.allow_dirty)

    import torch
    torch.set_num_threads(args.threads)
    wall_start = time.perf_counter()
    run = RunDir(args.run)
    net, meta = load_supernet(run)
    space, n_cls = net.space, len(meta["class_names"])
    groups = meta.get("class_groups", {})
    gen = G.load(run.path)
    gen_meta = json.loads(run.generator_meta_path.read_text())
    if not (run.path / "generator-agnostic.safetensors").is_file():
        cfg = GeneratorConfig(**{**gen_meta["config"], "task_agnostic": True, "out_name": "generator-agnostic"})
        train_generator(run, cfg)
    agnostic = G.load(run.path, name="generator-agnostic")
    scen = make_scenarios(space, n_cls, groups, args.scenarios, args.seed)
    tasks, budgets = [s["classes"] for s in scen], [s["budget_mflops"] for s in scen]
    data = run_dataset(meta, resolution=space.resolution)
    test_ev = TaskEvaluator(net, data, split="test")
    val_ev = TaskEvaluator(net, data, split="val", calib_images=256, per_class=args.val_per_class)
    table = gen.cost_tables["mflops"]

    def cost(vecs: np.ndarray) -> np.ndarray:
        return table.cost_of_vectors(space, vecs)

    def timed(generator: G.ArchGenerator, all_classes: bool = False) -> tuple[list[Arch], float]:
        times = []
        asked = [list(range(n_cls))] * len(tasks) if all_classes else tasks
        for _ in range(21):
            t = time.perf_counter()
            archs = generator.generate(asked, budgets)
            times.append(time.perf_counter() - t)
        return archs, float(np.median(times)) / len(tasks)

    k = min(args.search_scenarios or len(scen), len(scen))
    picks: dict[str, tuple[list[Arch], list[float], list[dict[str, Any]]]] = {}
    archs, per = timed(gen)
    picks["generator"] = (archs[:k], [per] * k, [{}] * k)
    archs, per_a = timed(agnostic, all_classes=True)
    picks["task-agnostic generator"] = (archs[:k], [per_a] * k, [{}] * k)
    predictor = load_predictor(run)
    chosen, secs = [], []
    for i in range(k):
        t = time.perf_counter()
        chosen.append(meet_target(gen, predictor, tasks[i], 1e-6, "mflops", table, budgets[i]).arch)
        secs.append(time.perf_counter() - t)
    picks["predictor pick"] = (chosen, secs, [{}] * k)
    family = uniform_family(space)
    t = time.perf_counter()
    static = [static_arch(space, family, n_cls, b) for b in budgets[:k]]
    picks["static (one arch per budget)"] = (static, [(time.perf_counter() - t) / k] * k, [{}] * k)
    evo: tuple[list[Arch], list[float], list[dict[str, Any]]] = ([], [], [])
    rnd: tuple[list[Arch], list[float], list[dict[str, Any]]] = ([], [], [])
    for i in range(k):
        task = Task(tuple(tasks[i]))

        def fitness(arch: Arch, task: Task = task) -> tuple[float, float]:
            return val_ev.score(arch, task)

        r = evolutionary_search(space, fitness, cost, budgets[i], np.random.default_rng(args.seed * 1000 + i),
                                EvolutionConfig(population=max(10, args.evo_evaluations // 5),
                                                evaluations=args.evo_evaluations))
        r2 = random_search(space, fitness, cost, budgets[i], np.random.default_rng(args.seed * 1000 + i),
                           samples=args.evo_evaluations)
        for store, res in ((evo, r), (rnd, r2)):
            store[0].append(res.arch)
            store[1].append(res.seconds)
            store[2].append({"evaluations": res.evaluations, "val_accuracy": res.fitness[0]})
        print(f"  scenario {i + 1}/{k}: evolution {r.seconds:.1f} s ({r.evaluations} evals), random "
              f"{r2.seconds:.1f} s ({r2.evaluations})", flush=True)
    picks["evolutionary search"] = evo
    picks["random search"] = rnd

    methods: dict[str, list[dict[str, Any]]] = {}
    for name, (archs, secs, extra) in picks.items():
        rows = []
        for i, (arch, s, x) in enumerate(zip(archs, secs, extra)):
            m = macs(space, arch, n_cls) / 1e6
            rows.append({**scen[i], "mflops": m, "within_budget": m <= budgets[i] + 1e-9,
                         "test_accuracy": test_ev.accuracy(arch, Task(tuple(tasks[i]))), "search_seconds": s,
                         "arch": arch.to_dict(), **x})
        methods[name] = rows
        print(f"{name:30s} mean test acc {100 * np.mean([r['test_accuracy'] for r in rows]):.2f}%", flush=True)

    ids = list(range(k))
    in_group = [i for i in ids if scen[i]["in_group"]]
    random_ids = [i for i in ids if not scen[i]["in_group"]]
    train_s = float(gen_meta.get("train_seconds", 0.0))
    summary: dict[str, Any] = {}
    for name, rows in methods.items():
        summary[name] = {
            "mean_test_accuracy": float(np.mean([r["test_accuracy"] for r in rows])),
            "mean_test_accuracy_in_group": float(np.mean([rows[i]["test_accuracy"] for i in in_group])) if in_group else None,
            "budget_compliance": float(np.mean([r["within_budget"] for r in rows])),
            "mean_budget_use": float(np.mean([r["mflops"] / r["budget_mflops"] for r in rows])),
            "distinct_archs": len({json.dumps(r["arch"], sort_keys=True) for r in rows}),
            "search_seconds_per_scenario": float(np.mean([r["search_seconds"] for r in rows]))}
    per_gen = summary["generator"]["search_seconds_per_scenario"]
    timing = {"generator_train_seconds": train_s,
              "generator_amortised_100_s": (train_s + 100 * per_gen) / 100,
              "generator_amortised_1000_s": (train_s + 1000 * per_gen) / 1000,
              "evolution_per_scenario_s": summary["evolutionary search"]["search_seconds_per_scenario"]}
    timing["speedup_per_scenario"] = timing["evolution_per_scenario_s"] / per_gen
    timing["speedup_amortised_1000"] = timing["evolution_per_scenario_s"] / timing["generator_amortised_1000_s"]
    subsets = {"all": ids, "in_group": in_group, "random_tasks": random_ids}
    comparisons = {name: paired(methods, "generator", sel, args.seed) if sel else None for name, sel in subsets.items()}
    pair = {m: methods[m] for m in ("predictor pick", "task-agnostic generator")}
    predictor_vs_agnostic = {name: paired(pair, "predictor pick", sel, args.seed)["task-agnostic generator"]
                             if sel else None for name, sel in subsets.items()}
    # Holm over every difference the tables report: generator - each other method and
    # predictor pick - task-agnostic generator, in each subset
    family = {f"{subset}|generator|{name}": c["p_value"] for subset, comp in comparisons.items()
              for name, c in (comp or {}).items()}
    family.update({f"{subset}|predictor pick|task-agnostic generator": c["p_value"]
                   for subset, c in predictor_vs_agnostic.items() if c})
    survives = holm(family)
    for subset, comp in comparisons.items():
        for name, c in (comp or {}).items():
            c["holm_significant"] = survives[f"{subset}|generator|{name}"]
            print(f"[{subset}] generator - {name}: {c['mean_pp']:+.2f} pp, 95% CI [{c['ci95_pp'][0]:+.2f}, "
                  f"{c['ci95_pp'][1]:+.2f}] ({c['verdict']}{', Holm' if c['holm_significant'] else ''})")
    for subset, c in predictor_vs_agnostic.items():
        if c:
            c["holm_significant"] = survives[f"{subset}|predictor pick|task-agnostic generator"]
            print(f"[{subset}] predictor pick - task-agnostic generator: {c['mean_pp']:+.2f} pp "
                  f"[{c['ci95_pp'][0]:+.2f}, {c['ci95_pp'][1]:+.2f}]")
    data_name = meta["data"].split(":")[0]
    RESULTS.mkdir(parents=True, exist_ok=True)
    plot_accuracy_vs_mflops({n: [(r["mflops"], r["test_accuracy"]) for r in rows] for n, rows in methods.items()},
                            RESULTS / f"specialisation_{data_name}.png",
                            f"{k} scenarios on {data_name}: accuracy vs MFLOPs (lines: Pareto fronts)")
    save_result(f"specialisation_{data_name}", {
        "run": str(args.run), "data": meta["data"], "untrained": False, "seed": args.seed,
        "sample": {"scenarios": k, "in_group": len(in_group), "random_tasks": len(random_ids),
                   "test_images_per_class": int(np.bincount(data.y_test).min()),
                   "search_val_images_per_class": args.val_per_class or int(np.bincount(data.y_val).min()),
                   "search_evaluations": args.evo_evaluations,
                   "threads": args.threads},
        "benchmark_wall_seconds": time.perf_counter() - wall_start,
        "summary": summary, "comparisons": comparisons, "predictor_vs_agnostic": predictor_vs_agnostic,
        "multiple_comparisons": {"comparisons": len(family), "correction": "Holm", "alpha": 0.05,
                                 "p_values": "two-sided paired bootstrap, 10,000 resamples of scenarios"},
        "timing": timing, "methods": methods},
        allow_dirty=args.allow_dirty)


if __name__ == "__main__":
    main()
