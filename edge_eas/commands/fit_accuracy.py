"""`edge_eas fit-accuracy`: fit a run's accuracy predictor, what `specialize --min-accuracy` answers with."""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_eas.common.console import emit_json, info
from edge_eas.common.requirements import HOST, Need, modules
from edge_eas.host.rundir import RunDir


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", type=Path, metavar="RUN")
    p.add_argument("--archs", type=int, default=240,
                   help="sub-networks measured on the validation split (default 240; a fifth held out)")
    p.add_argument("--steps", type=int, default=12000, help="fitting steps per ensemble member (default 12000)")
    p.add_argument("--seed", type=int, default=0)


def requires(args: argparse.Namespace) -> list[Need]:
    return modules(*HOST, why="fitting the accuracy predictor")


def run(args: argparse.Namespace) -> int:
    # lazy: loads torch only when this command runs (the CLI imports every command for its parser)
    from edge_eas.host.accuracy_fit import AccuracyFitConfig, fit_accuracy
    from edge_eas.host.untrained import require_trained

    if args.archs < 10:
        raise ValueError("--archs must be at least 10 (a fifth is held out to measure the predictor)")
    if args.steps < 1:
        raise ValueError("--steps must be at least 1")
    run_dir = RunDir(args.run_dir)
    require_trained(run_dir.meta(), args.run_dir, "fit an accuracy predictor on")
    doc = fit_accuracy(run_dir, AccuracyFitConfig(archs=args.archs, steps=args.steps, seed=args.seed))
    if args.json:
        emit_json(doc)
    else:
        info(f"accuracy predictor written to {run_dir.accuracy_path} ({doc['seconds']:.0f} s)")
    return 0
