"""The default Fashion-MNIST training, measured per seed: `edge_eas train --data fashion-mnist`
(supernet + generator) time, the space's MFLOPs range, accuracy on all 10 test classes of the
smallest, a median and the largest sub-network, the all-class Pareto front (the generator's
pick at 6 log-spaced budgets from just above the smallest network's cost to the largest's, the
front `edge_eas pareto` draws), the tops-group span (three tasks inside Fashion's tops, the
generator's pick at the largest budget minus its pick at the smallest), and whether the
generator answers different in-group tasks with different architectures. Every accuracy comes
from the shared evaluator (BN recalibrated on all-class training images), test split.

    python -m benchmarks.fashion_training --out DIR --seeds 0 1   # trains DIR/seed0, DIR/seed1 (unless complete)
    python -m benchmarks.fashion_training --run RUN0 --run RUN1   # measures existing runs only
        [--wall-seconds S0 S1] [--conditions "how the runs were trained"]

The all-class front is also scored on the validation split, which is what a preset setting may be
chosen by; the test split only reports.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import add_allow_dirty, require_clean_tree, save_result
from benchmarks.task_dropout import median_arch

import edge_eas.generator as G
from edge_eas.cost.flops import macs
from edge_eas.data import run_dataset
from edge_eas.host.evaluate import TaskEvaluator
from edge_eas.host.pareto import budget_ladder, pareto_front, plot_front, span_pp
from edge_eas.host.rundir import RunDir, load_supernet
from edge_eas.net.budget import Budget
from edge_eas.net.tasks import Task

IN_GROUP_TASKS = ([0, 2, 4, 6], [0, 6], [2, 4], [4, 6], [0, 2, 6], [5, 7, 9], [5, 7], [7, 9], [1, 3, 8], [1, 3])
TOPS_TASKS = ([0, 6], [2, 4], [0, 2, 4, 6])
STEPS = 6
SLACK_PP = 0.2  # a step of the front may fall this much and still count as rising (the acceptance's rule)


def train(out: Path, seed: int) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "edge_eas.cli", "train", "--data", "fashion-mnist", "--seed", str(seed),
                    "--out", str(out)], check=True)
    return time.perf_counter() - start


def rises(accuracies: list[float], slack_pp: float = SLACK_PP) -> bool:
    """Every step of the front at least the previous one's accuracy minus the slack."""
    return all(100 * b >= 100 * a - slack_pp for a, b in zip(accuracies, accuracies[1:]))


def measure(path: Path, wall: float | None) -> dict[str, Any]:
    """Everything this benchmark reports about one trained run."""
    run = RunDir(path)
    net, meta = load_supernet(run)
    space, n_cls = net.space, len(meta["class_names"])
    gen_meta = json.loads(run.generator_meta_path.read_text())
    data = run_dataset(meta, resolution=space.resolution)
    ev = TaskEvaluator(net, data, split="test")
    everything = Task(tuple(range(n_cls)))
    archs = {"smallest": space.smallest(), "median": median_arch(space), "largest": space.largest()}
    accuracy = {name: {"mflops": macs(space, a, n_cls) / 1e6, "arch": a.to_dict(),
                       "all_class_accuracy": ev.accuracy(a, everything)} for name, a in archs.items()}
    lo, hi = accuracy["smallest"]["mflops"], accuracy["largest"]["mflops"]
    front = pareto_front(run, None, split="test", steps=STEPS)
    front_acc = [p.accuracy for p in front]
    front_val = pareto_front(run, None, split="val", steps=STEPS)
    plot = plot_front(front, Path(__file__).parent / "results" / f"fashion_front_seed{meta['config']['seed']}.png",
                      f"Fashion-MNIST, all 10 classes, test split, seed {meta['config']['seed']}")
    gen = G.load(run.path)
    ladder = budget_ladder(lo, hi, STEPS)
    tops = []
    for classes in TOPS_TASKS:
        task = Task.create(classes, n_cls)
        ends = [gen.generate_for(task.classes, Budget("mflops", b)) for b in (ladder[0], ladder[-1])]
        acc = [ev.accuracy(a, task) for a in ends]
        tops.append({"classes": classes, "mflops": [macs(space, a, n_cls) / 1e6 for a in ends],
                     "accuracy": acc, "span_pp": 100 * (acc[1] - acc[0])})
    distinct: dict[str, Any] = {}
    for label, budget in (("low", lo * (hi / lo) ** 0.2), ("middle", math.sqrt(lo * hi)), ("high", lo * (hi / lo) ** 0.8)):
        chosen = gen.generate([list(t) for t in IN_GROUP_TASKS], [budget] * len(IN_GROUP_TASKS))
        distinct[label] = {"budget_mflops": budget, "tasks": len(IN_GROUP_TASKS),
                           "distinct_archs": len({json.dumps(a.to_dict(), sort_keys=True) for a in chosen})}
    return {"run": str(path), "seed": meta["config"]["seed"], "config": meta["config"],
            "train_wall_seconds": wall, "supernet_seconds": meta["throughput"]["seconds"],
            "generator_seconds": gen_meta.get("train_seconds"), "mflops_range": [lo, hi], "range_x": hi / lo,
            "accuracy": accuracy,
            "front": {"points": [p.to_dict() for p in front], "rising": rises(front_acc), "span_pp": span_pp(front),
                      "plot": str(plot.relative_to(Path(__file__).resolve().parents[1]))},
            "front_val": {"accuracy": [p.accuracy for p in front_val], "rising": rises([p.accuracy for p in front_val]),
                          "span_pp": span_pp(front_val), "val_images": int(len(data.y_val))},
            "tops": {"tasks": tops, "mean_span_pp": float(np.mean([t["span_pp"] for t in tops]))},
            "generator_distinct": distinct, "test_images": int(len(data.y_test)), "history": meta.get("history")}


def summary(seeds: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean over seeds and each seed's value, for the headline figures."""
    def both(get: Any) -> dict[str, Any]:
        values = [float(get(s)) for s in seeds]
        return {"mean": float(np.mean(values)), "values": values}
    out = {"largest_accuracy": both(lambda s: s["accuracy"]["largest"]["all_class_accuracy"]),
           "smallest_accuracy": both(lambda s: s["accuracy"]["smallest"]["all_class_accuracy"]),
           "front_span_pp": both(lambda s: s["front"]["span_pp"]),
           "tops_mean_span_pp": both(lambda s: s["tops"]["mean_span_pp"]),
           "front_rising": [s["front"]["rising"] for s in seeds]}
    out["front_by_step"] = [both(lambda s, i=i: s["front"]["points"][i]["accuracy"]) for i in range(STEPS)]
    out["val_front_by_step"] = [both(lambda s, i=i: s["front_val"]["accuracy"][i]) for i in range(STEPS)]
    out["train_minutes"] = both(lambda s: (s["train_wall_seconds"] if s["train_wall_seconds"] is not None
                                           else s["supernet_seconds"] + (s["generator_seconds"] or 0)) / 60)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = ap.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", type=Path, help="train the default fashion runs here, one per seed (skipped if complete)")
    where.add_argument("--run", type=Path, action="append", help="an existing run to measure (repeat per seed)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--wall-seconds", type=float, nargs="+",
                    help="with --run: each run's measured `edge_eas train` wall clock, in --run order")
    ap.add_argument("--conditions", default="", help="how the runs were trained (threads, what else ran), for the README")
    add_allow_dirty(ap)
    args = ap.parse_args()
    require_clean_tree(args.allow_dirty)
    if args.wall_seconds and (not args.run or len(args.wall_seconds) != len(args.run)):
        ap.error("--wall-seconds needs one value per --run")
    runs: list[tuple[Path, float | None]] = []
    if args.out:
        for seed in args.seeds:
            path = args.out / f"seed{seed}"
            runs.append((path, train(path, seed) if not RunDir(path).is_complete() else None))
    else:
        runs = list(zip(args.run, args.wall_seconds or [None] * len(args.run)))
    seeds = [measure(path, wall) for path, wall in runs]
    for s in seeds:
        a = s["accuracy"]
        print(f"seed {s['seed']}: range {s['range_x']:.1f}x, largest {100 * a['largest']['all_class_accuracy']:.2f}%, "
              f"smallest {100 * a['smallest']['all_class_accuracy']:.2f}%, front "
              f"{' '.join('%.2f' % (100 * p['accuracy']) for p in s['front']['points'])} "
              f"(rising {s['front']['rising']}), "
              f"tops span {s['tops']['mean_span_pp']:.2f} pp")
    first = seeds[0]
    save_result("fashion_training", {
        "data": first["config"]["data"], "config": first["config"],
        "sample": {"test_images": first["test_images"], "seeds": [s["seed"] for s in seeds], "front_budgets": STEPS,
                   "tops_tasks": list(TOPS_TASKS), "in_group_tasks": list(IN_GROUP_TASKS)},
        "conditions": args.conditions, "summary": summary(seeds), "seeds": seeds}, allow_dirty=args.allow_dirty)


if __name__ == "__main__":
    main()
