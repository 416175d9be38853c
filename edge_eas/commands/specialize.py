"""`edge_eas specialize`: the generator's arch for one task and budget, in one forward pass."""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_eas.commands.budget_args import add_budget_arguments, budget_of
from edge_eas.common.console import emit_json
from edge_eas.net.tasks import Task, parse_classes
from edge_eas.common.requirements import HOST, Need, modules
from edge_eas.cost.flops import macs, params
from edge_eas.data import load_dataset
from edge_eas.host.rundir import load_supernet, RunDir
from edge_eas.workflows.specialise import specialise


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", type=Path, metavar="RUN_DIR_OR_BUNDLE")
    p.add_argument("--classes", required=True, help="task: comma-separated class ids, e.g. 0,3,7")
    add_budget_arguments(p)
    p.add_argument("--no-eval", action="store_true", help="skip the task-accuracy evaluation")


def requires(args: argparse.Namespace) -> list[Need]:
    """A bundle specialises with numpy alone (as on a device); a run directory needs the host tools."""
    return [] if args.source.is_file() else modules(*HOST, why="specialising from a run directory")


def run(args: argparse.Namespace) -> int:
    # numpy and the generator load when the command runs, not when the CLI's parser is built

    spec = specialise(args.source, parse_classes(args.classes), budget_of(args), args.target, args.engine,
                      args.threads)
    arch, budget, space, n = spec.arch, spec.budget, spec.space, spec.num_classes
    doc = {"classes": list(spec.task.classes), "budget": budget.to_dict(), "arch": arch.to_dict(),
           "mflops": macs(space, arch, n) / 1e6, "params": params(space, arch, n),
           "generation_ms": spec.generation_ms, "accuracy": None}
    if spec.latency is not None:
        doc["predicted_ms"] = spec.predicted_ms
    doc["untrained"] = spec.untrained
    if args.source.is_dir() and not args.no_eval and not doc["untrained"]:
        doc["accuracy"] = _task_accuracy(args.source, arch, spec.task)
    if args.json:
        emit_json(doc)
        return 0
    print(f"task {doc['classes']}, budget {budget.value:g} {budget.unit}")
    print(f"arch {arch.to_json()}")
    print(f"{doc['mflops']:.4f} MFLOPs, {doc['params']:,} params, generated in {spec.generation_ms:.2f} ms")
    if "predicted_ms" in doc:
        print(f"predicted latency on {args.target}: {doc['predicted_ms']:.4f} ms")
    if doc["accuracy"] is not None:
        print(f"task accuracy {100 * doc['accuracy']:.2f}% (test split, BN recalibrated)")
    elif doc["untrained"]:
        print("untrained run (edge_eas init): no accuracy; the arch and its cost are what it is for")
    return 0


def _task_accuracy(run_dir: Path, arch, task: Task) -> float:  # type: ignore[no-untyped-def]
    # torch: only a run directory's accuracy needs it (a bundle specialises with numpy alone)
    # lazy: loads torch only when this command runs (the CLI imports every command for its parser)
    from edge_eas.host.evaluate import TaskEvaluator

    net, meta = load_supernet(RunDir(run_dir))
    data = load_dataset(meta["data"], resolution=net.space.resolution, seed=meta["config"]["seed"])
    return TaskEvaluator(net, data).accuracy(arch, task)
