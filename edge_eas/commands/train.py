"""`edge_eas train`: supernet training with task dropout, then (by default) the generator and the
accuracy predictor."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from edge_eas.common.console import emit_json, info
from edge_eas.errors import UserError
from edge_eas.data import load_dataset, SPEC_FORMS

from edge_eas.net.space import PRESETS
from edge_eas.net.tasks import parse_classes
from edge_eas.common.requirements import HOST, Need, modules
from edge_eas.host.space_rule import space_for


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default="digits", help=f"one of: {SPEC_FORMS}")
    p.add_argument("--out", required=True, type=Path, help="run directory to create")
    p.add_argument("--space", choices=sorted(PRESETS),
                   help="search-space preset (default: the data set's own - digits, fashion, cifar - or, for IDX "
                        "files and folders, the one closest to the images' size); channels and resolution always "
                        "follow the data")
    p.add_argument("--resolution", type=int, help="network input size (default: the images' own size)")
    p.add_argument("--augment", help="training augmentation: flip,crop | crop | flip | none (default: the data "
                                     "set's - no flips for digits, IDX files and folders)")
    p.add_argument("--epochs", type=int, help="supernet epochs")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")
    p.add_argument("--force", action="store_true", help="overwrite an existing run directory")
    p.add_argument("--task-dropout", action=argparse.BooleanOptionalAction, default=None,
                   help="train each sub-network on a sampled task's classes (--task-dropout) or on all classes "
                        "(--no-task-dropout); default: the preset's")
    p.add_argument("--task-in-group", type=float, help="share of task-dropout tasks drawn inside one superclass, "
                                                       "for data sets that declare class groups (default 0.5)")
    p.add_argument("--hold-out-classes", metavar="IDS",
                   help="comma-separated class ids of the data set to leave out of every split (e.g. 4,7,8): a "
                        "supernet that has never seen them, whose classes are the rest renumbered; for adapting to "
                        "new classes from examples (specialize --examples)")
    p.add_argument("--no-generator", action="store_true", help="skip generator training at the end")
    p.add_argument("--generator-steps", type=int, help="generator training steps")
    p.add_argument("--no-accuracy-predictor", action="store_true",
                   help="skip fitting the accuracy predictor after the generator (what `specialize --min-accuracy` "
                        "answers with; `edge_eas fit-accuracy RUN` fits it later)")


def requires(args: argparse.Namespace) -> list[Need]:
    return modules(*HOST, why="training")


def run(args: argparse.Namespace) -> int:
    # lazy: loads safetensors, torch only when this command runs (the CLI imports every command for its parser)
    from edge_eas.host.train import TrainConfig, train_supernet

    for flag, value, low in (("--epochs", args.epochs, 1), ("--batch-size", args.batch_size, 1),
                             ("--resolution", args.resolution, 4)):
        if value is not None and value < low:
            raise UserError(f"{flag} must be >= {low}")
    if args.task_in_group is not None and not 0 <= args.task_in_group <= 1:
        raise UserError("--task-in-group must lie in [0, 1]")
    out: Path = args.out
    if out.exists() and any(out.iterdir()) and not args.resume:
        if not args.force:
            raise UserError(f"{out} already exists and is not empty; pass --resume to continue it or --force to overwrite")
    seed = 0 if args.seed is None else args.seed
    hold_out = tuple(sorted(set(parse_classes(args.hold_out_classes)))) if args.hold_out_classes else ()
    data = load_dataset(args.data, resolution=args.resolution, seed=seed, augment=args.augment, hold_out=hold_out)
    space = space_for(data, args.space)
    if out.exists() and args.force and not args.resume:
        shutil.rmtree(out)  # only now: a bad --data must not cost the user their old run
    cfg = TrainConfig.for_preset(space.name, data=args.data, epochs=args.epochs, batch_size=args.batch_size,
                                 lr=args.lr, seed=args.seed, task_dropout=args.task_dropout,
                                 train_generator=not args.no_generator, augment=args.augment,
                                 resolution=args.resolution, task_in_group=args.task_in_group,
                                 hold_out_classes=hold_out)
    info(f"data {data.name}: {len(data.y_train)} train / {len(data.y_val)} val / {len(data.y_test)} test images, "
         f"{data.num_classes} classes{f', {len(data.class_groups)} class groups' if data.class_groups else ''}; "
         f"space {space.name} at {space.resolution} px, {space.in_channels} channel(s); augmentation "
         f"{'flip, ' if data.flip else ''}crop {data.crop_padding} px")
    run_dir = train_supernet(cfg, out, resume=args.resume, dataset=data)
    result = {"run": str(out), **_summary(run_dir)}
    if cfg.train_generator and run_dir.meta_path.is_file():
        # lazy: loads safetensors, torch only when this command runs (the CLI imports every command for its parser)
        from edge_eas.host.generator_train import GeneratorConfig, train_generator
        gcfg = GeneratorConfig.for_preset(space.name, steps=args.generator_steps)
        result["generator"] = train_generator(run_dir, gcfg, resume=args.resume, data=data)
        if not args.no_accuracy_predictor:
            # lazy, as above; the predictor's margin is calibrated on the generator's answers, so it comes last
            from edge_eas.host.accuracy_fit import AccuracyFitConfig, fit_accuracy
            fit = fit_accuracy(run_dir, AccuracyFitConfig(seed=seed))
            result["accuracy_predictor"] = {"scores": fit["scores"], "margin_se": fit["margin_se"],
                                            "seconds": fit["seconds"]}
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
