"""`edge_eas train-generator`: (re)train the architecture generator of a finished supernet run."""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_eas.common.console import emit_json, info
from edge_eas.common.requirements import HOST, Need, modules
from edge_eas.host.rundir import RunDir


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", type=Path, metavar="RUN")
    p.add_argument("--steps", type=int, help="training steps (default: the run's preset's, as `edge_eas train` uses)")
    p.add_argument("--task-agnostic", action="store_true",
                   help="baseline: train on all-class tasks only (written as generator-agnostic.*)")
    p.add_argument("--resume", action="store_true", help="continue from the last generator checkpoint")
    p.add_argument("--seed", type=int, default=0)


def requires(args: argparse.Namespace) -> list[Need]:
    return modules(*HOST, why="training the generator")


def run(args: argparse.Namespace) -> int:
    # lazy: loads safetensors, torch only when this command runs (the CLI imports every command for its parser)
    from edge_eas.host.generator_train import GeneratorConfig, train_generator

    # lazy: loads safetensors, torch only when this command runs (the CLI imports every command for its parser)
    from edge_eas.host.untrained import require_trained

    if args.steps is not None and args.steps < 1:
        raise ValueError("--steps must be >= 1")
    require_trained(RunDir(args.run_dir).meta(), args.run_dir, "train a generator against")
    # the run's preset sets the defaults, as `edge_eas train` does (fashion: 400 smaller steps)
    cfg = GeneratorConfig.for_preset(str(RunDir(args.run_dir).meta()["space"]["name"]), steps=args.steps,
                                     seed=args.seed, task_agnostic=args.task_agnostic,
                                     out_name="generator-agnostic" if args.task_agnostic else "generator")
    result = train_generator(RunDir(args.run_dir), cfg, resume=args.resume)
    if args.json:
        emit_json(result)
    else:
        info(f"generator trained: {result['steps']} steps in {result['seconds']:.1f} s")
    return 0
