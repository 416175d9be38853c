"""Task-dropout ablation: the same training budget with and without task dropout, over several
seeds. Arms: `superclass` (task dropout whose tasks are half inside one superclass, the digits
default), `random` (task dropout with random tasks only) and `none` (the fashion default, set
from this ablation). Each run is scored on the same tasks of 2-5 classes (half inside one
superclass where the data has groups) for the smallest, a median and the largest sub-network,
BN recalibrated, on the test split of each task's classes (`--split val`: the validation split,
what a preset's setting is chosen by); plus all-class accuracy. Paired differences (arm - none) with 95 % bootstrap
CIs over the tasks, within each seed: a seed is one training run, so its tasks share it, and
(seed, task) pairs are not independent samples.

A complete run already in `--runs-dir` under the arm's name is reused if its training config
is the arm's (the default `edge_eas train` runs are the preset's arm at the preset length).

    python -m benchmarks.task_dropout --data fashion-mnist --epochs 2 --seeds 0 1 [--arms superclass none]
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import add_allow_dirty, paired, require_clean_tree, save_result

from edge_eas.cost.flops import macs
from edge_eas.data import run_dataset
from edge_eas.host.evaluate import TaskEvaluator
from edge_eas.host.rundir import RunDir, load_supernet
from edge_eas.net.space import Arch, SearchSpace
from edge_eas.host.space_rule import NAMED
from edge_eas.net.tasks import Task, TaskSampler
from edge_eas.host.train import TrainConfig, train_supernet

ARMS = {"superclass": {"task_dropout": True, "task_in_group": 0.5},
        "random": {"task_dropout": True, "task_in_group": 0.0},
        "none": {"task_dropout": False}}
SIZES = ("smallest", "median", "largest")


def preset_of(data: str) -> str:
    return NAMED.get(data.split(":")[0], "digits")


def median_arch(space: SearchSpace, seed: int = 0) -> Arch:
    rng = np.random.default_rng(seed)
    archs = [space.sample(rng) for _ in range(2000)]
    costs = np.array([macs(space, a) for a in archs])
    return archs[int(np.argmin(np.abs(costs - np.median(costs))))]


def run_name(slug: str, arm: str, epochs: int | None, seed: int) -> str:
    return f"{slug}-{arm}-e{epochs or 'preset'}-s{seed}"


def ensure_run(path: Path, data: str, epochs: int | None, arm: str, seed: int) -> RunDir:
    """Train (or resume, or reuse) one supernet of the ablation."""
    run = RunDir(path)
    full = TrainConfig.for_preset(preset_of(data))
    # reduced epochs keep the preset's schedule shape: warm-up shrinks in proportion
    warmup = full.warmup_epochs * epochs / full.epochs if epochs else None
    cfg = TrainConfig.for_preset(preset_of(data), data=data, epochs=epochs, warmup_epochs=warmup,
                                 train_generator=False, seed=seed, **ARMS[arm])
    if not run.is_complete():
        train_supernet(cfg, path, resume=(path / "checkpoint" / "state.json").is_file())
    trained = {k: v for k, v in run.meta()["config"].items() if k != "train_generator"}
    wanted = {k: v for k, v in asdict(cfg).items() if k != "train_generator"}
    if trained != wanted:
        diff = sorted(k for k in wanted if trained.get(k) != wanted[k])
        raise SystemExit(f"{path}: trained with another config than arm {arm!r} (differs in {', '.join(diff)})")
    return run


def make_tasks(n_cls: int, groups: dict[str, list[int]], n: int, seed: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    grouped = TaskSampler(n_cls, 2, 5, groups=tuple(tuple(g) for g in groups.values()), in_group_prob=1.0)
    anywhere = TaskSampler(n_cls, 2, 5)
    out = []
    for i in range(n):
        in_group = bool(groups) and i % 2 == 0
        task = grouped.sample_in_group(rng) if in_group else anywhere.sample(rng)
        out.append({"classes": list(task.classes), "in_group": in_group})
    return out


def evaluate(run: RunDir, tasks: list[dict[str, Any]], split: str) -> dict[str, Any]:
    net, meta = load_supernet(run)
    data = run_dataset(meta, resolution=net.space.resolution)
    ev = TaskEvaluator(net, data, split=split)
    space = net.space
    everything = Task(tuple(range(data.num_classes)))
    out: dict[str, Any] = {"train_seconds": meta["throughput"]["seconds"]}
    for name, arch in zip(SIZES, (space.smallest(), median_arch(space), space.largest())):
        out[name] = {"mflops": macs(space, arch, data.num_classes) / 1e6,
                     "task_accuracy": [ev.accuracy(arch, Task(tuple(t["classes"]))) for t in tasks],
                     "all_class_accuracy": ev.accuracy(arch, everything)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="digits")
    ap.add_argument("--epochs", type=int, default=None, help="supernet epochs per run (default: the preset's)")
    ap.add_argument("--tasks", type=int, default=50)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--arms", nargs="+", choices=sorted(ARMS), default=["superclass", "none"])
    ap.add_argument("--runs-dir", type=Path, default=Path("benchmarks/runs"))
    ap.add_argument("--split", choices=("test", "val"), default="test",
                    help="test reports; val is what the preset's setting is chosen by (written as *_val.json)")
    add_allow_dirty(ap)
    args = ap.parse_args()
    require_clean_tree(args.allow_dirty)
    if "none" not in args.arms:
        ap.error("--arms must include none: every arm is compared with it")

    slug = args.data.replace(":", "_").replace("/", "_")
    data_name = args.data.split(":")[0]
    results: dict[str, dict[int, dict[str, Any]]] = {arm: {} for arm in args.arms}
    tasks: list[dict[str, Any]] = []
    for seed in args.seeds:
        for arm in args.arms:
            run = ensure_run(args.runs_dir / run_name(slug, arm, args.epochs, seed), args.data, args.epochs, arm, seed)
            meta = run.meta()
            if not tasks:
                tasks = make_tasks(len(meta["class_names"]), meta.get("class_groups", {}), args.tasks, 1000)
            results[arm][seed] = evaluate(run, tasks, args.split)
            r = results[arm][seed]
            print(f"seed {seed} {arm:10s} " + "  ".join(
                f"{s} {100 * np.mean(r[s]['task_accuracy']):.2f}%" for s in SIZES), flush=True)
    epochs = TrainConfig.for_preset(preset_of(args.data), epochs=args.epochs).epochs

    # Paired rows: one per task, within each seed; subsets: all tasks, in-group tasks, random tasks.
    subsets = {"all": list(range(len(tasks))),
               "in_group": [i for i, t in enumerate(tasks) if t["in_group"]],
               "random_tasks": [i for i, t in enumerate(tasks) if not t["in_group"]]}
    comparisons: dict[str, Any] = {}
    for size in SIZES:
        comparisons[size] = {}
        for subset, ids in subsets.items():
            if not ids:
                continue
            comparisons[size][subset] = {}
            for arm in args.arms:
                if arm == "none":
                    continue
                per_seed = {}
                for seed in args.seeds:
                    rows = {a: [{"test_accuracy": acc} for acc in results[a][seed][size]["task_accuracy"]]
                            for a in (arm, "none")}
                    per_seed[str(seed)] = paired(rows, arm, ids, seed)["none"]
                comparisons[size][subset][f"{arm} - none"] = per_seed
                for seed, c in per_seed.items():
                    print(f"[{size}, {subset}, seed {seed}] {arm} - none: {c['mean_pp']:+.2f} pp, 95% CI "
                          f"[{c['ci95_pp'][0]:+.2f}, {c['ci95_pp'][1]:+.2f}] ({c['verdict']})")
    summary = {arm: {size: {"mean_task_accuracy": float(np.mean([results[arm][s][size]["task_accuracy"]
                                                                  for s in args.seeds])),
                            "mean_all_class_accuracy": float(np.mean([results[arm][s][size]["all_class_accuracy"]
                                                                      for s in args.seeds])),
                            "mflops": results[arm][args.seeds[0]][size]["mflops"]} for size in SIZES}
               for arm in args.arms}
    save_result(f"task_dropout_{data_name}" + ("_val" if args.split == "val" else ""), {
        "data": args.data, "split": args.split, "arms": {a: ARMS[a] for a in args.arms},
        "sample": {"seeds": args.seeds, "tasks": len(tasks), "in_group_tasks": sum(t["in_group"] for t in tasks),
                   "epochs": epochs, "reduced_epochs": args.epochs is not None},
        "tasks": tasks, "summary": summary, "comparisons": comparisons,
        "runs": {arm: {str(s): r for s, r in by_seed.items()} for arm, by_seed in results.items()},
        "run_dirs": {arm: {str(s): str(args.runs_dir / run_name(slug, arm, args.epochs, s)) for s in args.seeds}
                     for arm in args.arms}},
        allow_dirty=args.allow_dirty)


if __name__ == "__main__":
    main()
