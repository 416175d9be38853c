"""`edge_eas pareto`: accuracy against MFLOPs (and predicted ms on a target) along the
generator's picks for one task at a ladder of MFLOPs budgets, as a table, a plot and JSON."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge_eas.common.console import emit_json, print_table
from edge_eas.common.requirements import HOST, Need, modules
from edge_eas.devices.targets import load_target
from edge_eas.errors import UserError
from edge_eas.host.rundir import RunDir
from edge_eas.net.tasks import Task, parse_classes
from edge_eas.workflows.specialise import Source


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", type=Path, metavar="RUN")
    p.add_argument("--classes", default=None, help="task: comma-separated class ids, e.g. 0,6 (default: all classes)")
    p.add_argument("--target", default=None, help="also predict each pick's latency with this target's latency model")
    p.add_argument("--split", default="val", choices=["val", "test"], help="where accuracy is measured (default: val)")
    p.add_argument("--steps", type=int, default=6, help="number of log-spaced MFLOPs budgets (default: 6)")
    p.add_argument("--plot", type=Path, default=None, help="where to write the plot (default: RUN/pareto-<classes>-<split>.png)")


def requires(args: argparse.Namespace) -> list[Need]:
    return modules(*HOST, why="evaluating and plotting the front")


def run(args: argparse.Namespace) -> int:
    # lazy: loads safetensors, torch only when this command runs (the CLI imports every command for its parser)
    from edge_eas.host.untrained import require_trained
    # lazy: its evaluator loads torch when the front is computed
    from edge_eas.host.pareto import arch_summary, is_rising, pareto_front, plot_front, span_pp

    run_dir = RunDir(args.run_dir)
    meta = run_dir.meta()
    require_trained(meta, args.run_dir, "plot")
    if args.steps < 1:
        raise UserError(f"--steps must be at least 1, got {args.steps}")
    classes = _classes(args.classes, len(meta["class_names"]))
    latency = _latency(args.run_dir, args.target)
    points = pareto_front(run_dir, classes, split=args.split, steps=args.steps, latency=latency,
                          progress=not args.json)
    label = "all" if classes is None else "_".join(map(str, classes))
    plot = args.plot or args.run_dir / f"pareto-{label}-{args.split}.png"
    task = "all classes" if classes is None else f"classes {','.join(map(str, classes))}"
    plot_front(points, plot, f"{args.run_dir.name}: {task}, {args.split} split" +
               (f", ms on {args.target}" if latency is not None else ""))
    doc = {"classes": classes if classes is not None else list(range(len(meta["class_names"]))),
           "split": args.split, "steps": args.steps, "target": args.target if latency is not None else None,
           "points": [p.to_dict() for p in points], "rising": is_rising(points), "span_pp": span_pp(points),
           "plot": str(plot)}
    if args.json:
        emit_json(doc)
        return 0
    print_table(f"pareto front: {task}, {args.split} split (the generator's pick per MFLOPs budget)",
                ["budget", "MFLOPs", "params", "ms", "accuracy", "predicted", "arch"],
                [(f"{p.budget_mflops:.3g}", f"{p.mflops:.3f}", f"{p.params:,}",
                  f"{p.ms:.4f}" if p.ms is not None else "-", f"{100 * p.accuracy:.2f}%",
                  f"{100 * p.predicted:.2f}%" if p.predicted is not None else "-", arch_summary(p.arch))
                 for p in points])
    print(f"{'rising' if doc['rising'] else 'NOT rising'} with the budget; accuracy spans {doc['span_pp']:.2f} pp; "
          f"plot: {plot}")
    return 0


def _classes(text: str | None, num_classes: int) -> list[int] | None:
    """The task's class ids (sorted), or None for all classes; a bad id is one line."""
    if text is None:
        return None
    try:
        return list(Task.create(parse_classes(text), num_classes).classes)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def _latency(run_dir: Path, target: str | None):  # type: ignore[no-untyped-def]
    """The target's latency model for this run (as `specialize --target` finds it), or None
    with one line on stderr when the target has none."""
    if not target:
        return None
    load_target(target)  # an unknown target is an error, not a missing model
    source = Source.open(run_dir)  # so is a missing generator
    try:
        return source.latency_model(target)
    except UserError as exc:
        print(f"edge_eas pareto: {exc}; going on without ms", file=sys.stderr)
        return None
