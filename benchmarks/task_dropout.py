"""Task-dropout ablation: the same training budget with and without task dropout; mean task
accuracy over 50 random tasks of 2-5 classes for the smallest, a median and the largest
sub-network (BN recalibrated per task), plus all-class accuracy and what BN recalibration buys.

    python benchmarks/task_dropout.py [--data digits] [--epochs 50] [--runs-dir benchmarks/runs]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_allow_dirty, require_clean_tree, save_result  # noqa: E402

from edge_eas.cost.flops import macs  # noqa: E402
from edge_eas.data import load_dataset  # noqa: E402
from edge_eas.evaluate import TaskEvaluator  # noqa: E402
from edge_eas.run import RunDir, load_supernet  # noqa: E402
from edge_eas.space import Arch, SearchSpace  # noqa: E402
from edge_eas.tasks import Task, TaskSampler  # noqa: E402
from edge_eas.train import TrainConfig, train_supernet  # noqa: E402


def median_arch(space: SearchSpace, seed: int = 0) -> Arch:
    rng = np.random.default_rng(seed)
    archs = [space.sample(rng) for _ in range(2000)]
    costs = np.array([macs(space, a) for a in archs])
    return archs[int(np.argmin(np.abs(costs - np.median(costs))))]


def ensure_run(path: Path, data: str, epochs: int, task_dropout: bool, seed: int) -> dict:
    run = RunDir(path)
    if not run.is_complete():
        cfg = TrainConfig.for_preset("digits" if data == "digits" else "cifar", data=data, epochs=epochs,
                                     task_dropout=task_dropout, train_generator=False, seed=seed)
        train_supernet(cfg, path, resume=(path / "checkpoint" / "state.json").is_file())
    return run.meta()


def evaluate(path: Path, tasks: list[Task]) -> dict:
    net, meta = load_supernet(RunDir(path))
    data = load_dataset(meta["data"], resolution=net.space.resolution, seed=meta["config"]["seed"])
    ev = TaskEvaluator(net, data, split="test")
    space = net.space
    all_classes = Task(tuple(range(data.num_classes)))
    out = {}
    for name, arch in (("smallest", space.smallest()), ("median", median_arch(space)), ("largest", space.largest())):
        accs = [ev.accuracy(arch, t) for t in tasks]
        out[name] = {"mflops": macs(space, arch, data.num_classes) / 1e6,
                     "task_accuracy_mean": float(np.mean(accs)), "task_accuracy_min": float(np.min(accs)),
                     "all_class_accuracy": ev.accuracy(arch, all_classes),
                     "all_class_accuracy_without_bn_recalibration": ev.accuracy(arch, all_classes, recalibrate=False)}
    out["train_seconds"] = meta["throughput"]["seconds"]
    out["images_per_second"] = meta["throughput"]["images_per_second"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="digits")
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--tasks", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--runs-dir", type=Path, default=Path("benchmarks/runs"))
    add_allow_dirty(ap)
    args = ap.parse_args()
    require_clean_tree(args.allow_dirty)
    results = {}
    for label, td in (("task_dropout", True), ("no_task_dropout", False)):
        path = args.runs_dir / f"{args.data.replace(':', '_').replace('/', '_')}-{label}-e{args.epochs}-s{args.seed}"
        meta = ensure_run(path, args.data, args.epochs, td, args.seed)
        n = len(meta["class_names"])
        rng = np.random.default_rng(1000 + args.seed)
        sampler = TaskSampler(n, 2, 5)
        tasks = [sampler.sample(rng) for _ in range(args.tasks)]
        results[label] = evaluate(path, tasks)
    rows = []
    for arch in ("smallest", "median", "largest"):
        a, b = results["task_dropout"][arch], results["no_task_dropout"][arch]
        rows.append((arch, a["mflops"], a["task_accuracy_mean"], b["task_accuracy_mean"],
                     a["all_class_accuracy"], b["all_class_accuracy"]))
        print(f"{arch:9s} {a['mflops']:.3f} MFLOPs  2-5-class tasks: TD {100 * a['task_accuracy_mean']:.2f}% vs "
              f"no-TD {100 * b['task_accuracy_mean']:.2f}%   all classes: TD {100 * a['all_class_accuracy']:.2f}% vs "
              f"no-TD {100 * b['all_class_accuracy']:.2f}%")
    save_result("task_dropout", {"data": args.data, "epochs": args.epochs, "tasks": args.tasks, "seed": args.seed,
                                 "results": results}, allow_dirty=args.allow_dirty)


if __name__ == "__main__":
    main()
