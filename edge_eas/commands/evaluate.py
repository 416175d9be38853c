"""`edge_eas eval`: task accuracy of one sub-network of a run, with and without BN recalibration."""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_eas.common.console import emit_json
from edge_eas.cost.flops import macs, params
from edge_eas.net.tasks import Task, parse_classes
from edge_eas.common.requirements import HOST, Need, modules
from edge_eas.commands.space import parse_arch
from edge_eas.data import run_dataset
from edge_eas.host.rundir import load_supernet, RunDir


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", type=Path, metavar="RUN")
    p.add_argument("--classes", required=True, help="task: comma-separated class ids, e.g. 1,4,7")
    p.add_argument("--arch", default="largest", help="arch JSON or file, or smallest | largest")
    p.add_argument("--split", default="test", choices=["val", "test"])


def requires(args: argparse.Namespace) -> list[Need]:
    return modules(*HOST, why="evaluating on the data set")


def run(args: argparse.Namespace) -> int:
    # lazy: loads torch only when this command runs (the CLI imports every command for its parser)
    from edge_eas.host.evaluate import TaskEvaluator

    # lazy: loads safetensors, torch only when this command runs (the CLI imports every command for its parser)
    from edge_eas.host.untrained import require_trained

    require_trained(RunDir(args.run_dir).meta(), args.run_dir, "evaluate")
    net, meta = load_supernet(RunDir(args.run_dir))
    task = Task.create(parse_classes(args.classes), len(meta["class_names"]))
    arch = parse_arch(net.space, args.arch)
    data = run_dataset(meta, resolution=net.space.resolution)
    ev = TaskEvaluator(net, data, split=args.split)
    acc = ev.accuracy(arch, task, recalibrate=True)
    acc_raw = ev.accuracy(arch, task, recalibrate=False)
    n = len(meta["class_names"])
    doc = {"accuracy": acc, "accuracy_without_bn_recalibration": acc_raw, "classes": list(task.classes),
           "split": args.split, "arch": arch.to_dict(), "mflops": macs(net.space, arch, n) / 1e6,
           "params": params(net.space, arch, n)}
    if args.json:
        emit_json(doc)
    else:
        print(f"task {list(task.classes)}: accuracy {100 * acc:.2f}% on {args.split} "
              f"(without BN recalibration {100 * acc_raw:.2f}%), {doc['mflops']:.3f} MFLOPs, {doc['params']:,} params")
    return 0
