"""`edge_eas train`: supernet training with task dropout, then (by default) the generator."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from ..console import emit_json, info
from ..errors import UserError
from ..space import PRESETS
from ..requirements import HOST, Need, modules


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default="digits", help="digits | cifar10:DIR | cifar100:DIR | folder:DIR")
    p.add_argument("--out", required=True, type=Path, help="run directory to create")
    p.add_argument("--space", choices=sorted(PRESETS), help="search-space preset (default: digits for digits, else cifar)")
    p.add_argument("--epochs", type=int, help="supernet epochs")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")
    p.add_argument("--force", action="store_true", help="overwrite an existing run directory")
    p.add_argument("--no-task-dropout", action="store_true", help="ablation: plain all-class loss")
    p.add_argument("--no-generator", action="store_true", help="skip generator training at the end")
    p.add_argument("--generator-steps", type=int, help="generator training steps")


def requires(args: argparse.Namespace) -> list[Need]:
    return modules(*HOST, why="training")


def run(args: argparse.Namespace) -> int:
    from ..train import TrainConfig, train_supernet

    space = args.space or ("digits" if args.data == "digits" else "cifar")
    if args.epochs is not None and args.epochs < 1:
        raise UserError("--epochs must be >= 1")
    out: Path = args.out
    if out.exists() and any(out.iterdir()) and not args.resume:
        if not args.force:
            raise UserError(f"{out} already exists and is not empty; pass --resume to continue it or --force to overwrite")
        shutil.rmtree(out)
    cfg = TrainConfig.for_preset(space, data=args.data, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                                 seed=args.seed, task_dropout=not args.no_task_dropout,
                                 train_generator=not args.no_generator)
    run_dir = train_supernet(cfg, out, resume=args.resume)
    result = {"run": str(out), **_summary(run_dir)}
    if cfg.train_generator and run_dir.meta_path.is_file():
        from ..generator_train import GeneratorConfig, train_generator
        gcfg = GeneratorConfig(steps=args.generator_steps) if args.generator_steps else GeneratorConfig()
        result["generator"] = train_generator(run_dir, gcfg, resume=args.resume)
    if args.json:
        emit_json(result)
    else:
        info(f"run written to {out}")
    return 0


def _summary(run_dir) -> dict:  # type: ignore[no-untyped-def]
    if not run_dir.meta_path.is_file():
        return {}
    meta = run_dir.meta()
    last = meta["history"][-1] if meta["history"] else {}
    return {"epochs": meta["config"]["epochs"], "final": last, "throughput": meta["throughput"]}
