"""The default Fashion-MNIST training, measured: `edge_eas train --data fashion-mnist` wall clock
(supernet + generator), then accuracy on all 10 test classes of the smallest, a median and the
largest sub-network (BN recalibrated, the shared evaluator), and whether the generator answers different in-group tasks with different architectures at
low, middle and high budgets.

    python -m benchmarks.fashion_training --out RUN      # trains RUN (unless complete), then measures
    python -m benchmarks.fashion_training --run RUN      # measures an existing run only
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


from benchmarks.common import add_allow_dirty, require_clean_tree, save_result

import edge_eas.generator as G
from edge_eas.cost.flops import macs
from edge_eas.data import load_dataset
from edge_eas.host.evaluate import TaskEvaluator
from edge_eas.host.rundir import RunDir, load_supernet
from edge_eas.net.tasks import Task
from benchmarks.task_dropout import median_arch

IN_GROUP_TASKS = ([0, 2, 4, 6], [0, 6], [2, 4], [4, 6], [0, 2, 6], [5, 7, 9], [5, 7], [7, 9], [1, 3, 8], [1, 3])


def train(out: Path) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "edge_eas.cli", "train", "--data", "fashion-mnist", "--out", str(out)],
                   check=True)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = ap.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", type=Path, help="train the default fashion run here (skipped if complete)")
    where.add_argument("--run", type=Path, help="an existing run to measure")
    add_allow_dirty(ap)
    args = ap.parse_args()
    require_clean_tree(args.allow_dirty)

    path = args.out or args.run
    wall = train(path) if args.out and not RunDir(path).is_complete() else None
    run = RunDir(path)
    net, meta = load_supernet(run)
    space, n_cls = net.space, len(meta["class_names"])
    gen_meta = json.loads(run.generator_meta_path.read_text())
    data = load_dataset(meta["data"], resolution=space.resolution, seed=meta["config"]["seed"])
    ev = TaskEvaluator(net, data, split="test")
    everything = Task(tuple(range(n_cls)))
    archs = {"smallest": space.smallest(), "median": median_arch(space), "largest": space.largest()}
    accuracy = {name: {"mflops": macs(space, a, n_cls) / 1e6, "all_class_accuracy": ev.accuracy(a, everything)}
                for name, a in archs.items()}
    lo, hi = (macs(space, a, n_cls) / 1e6 for a in (space.smallest(), space.largest()))
    gen = G.load(run.path)
    distinct: dict[str, Any] = {}
    for label, budget in (("low", lo * (hi / lo) ** 0.2), ("middle", math.sqrt(lo * hi)), ("high", lo * (hi / lo) ** 0.8)):
        chosen = gen.generate([list(t) for t in IN_GROUP_TASKS], [budget] * len(IN_GROUP_TASKS))
        distinct[label] = {"budget_mflops": budget,
                           "distinct_archs": len({json.dumps(a.to_dict(), sort_keys=True) for a in chosen}),
                           "tasks": len(IN_GROUP_TASKS)}
    for name, a in accuracy.items():
        print(f"{name:8s} {a['mflops']:.2f} MFLOPs: {100 * a['all_class_accuracy']:.2f}% on all 10 test classes")
    print("distinct archs for", len(IN_GROUP_TASKS), "in-group tasks:",
          {k: v["distinct_archs"] for k, v in distinct.items()})
    save_result("fashion_training", {
        "run": str(path), "data": meta["data"], "config": meta["config"],
        "train_wall_seconds": wall, "supernet_seconds": meta["throughput"]["seconds"],
        "generator_seconds": gen_meta.get("train_seconds"),
        "sample": {"test_images": int(len(data.y_test)), "in_group_tasks": IN_GROUP_TASKS},
        "accuracy": accuracy, "generator_distinct": distinct,
        "history": meta.get("history")}, allow_dirty=args.allow_dirty)


if __name__ == "__main__":
    main()
