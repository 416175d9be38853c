"""`edge_eas export`: pack a run into one signed, compressed `.eas` bundle for devices."""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_eas.common.console import emit_json
from edge_eas.common.requirements import HOST, Need, modules
from edge_eas.cost.latency_models import LatencyModels
from edge_eas.host.bundle import DEFAULT_CALIBRATION_PER_CLASS, export_bundle


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", type=Path, metavar="RUN")
    p.add_argument("--out", type=Path, required=True, help="bundle file to write, e.g. model.eas")
    dt = p.add_mutually_exclusive_group()
    dt.add_argument("--int8", dest="dtype", action="store_const", const="int8",
                    help="int8 per-channel weights (default)")
    dt.add_argument("--fp16", dest="dtype", action="store_const", const="fp16")
    dt.add_argument("--fp32", dest="dtype", action="store_const", const="fp32")
    p.add_argument("--sign", type=Path, metavar="KEYFILE", help="Ed25519 private key from `edge_eas keygen`")
    p.add_argument("--calibration-images", "--calib-per-class", dest="calib_per_class", type=int,
                   default=DEFAULT_CALIBRATION_PER_CLASS,
                   metavar="N", help="training images per class the bundle carries for BN recalibration (and int8 "
                                     "ranges) on the device (default %(default)s); 0 ships none, and the device "
                                     "then needs the user's own images (Runtime.load(..., calibration=...), agent "
                                     "--calibration)")


def requires(args: argparse.Namespace) -> list[Need]:
    return modules(*HOST, why="exporting a run")


def run(args: argparse.Namespace) -> int:
    if args.sign is not None and not args.sign.is_file():
        raise FileNotFoundError(f"signing key {args.sign} does not exist (make one with `edge_eas keygen --out {args.sign}`)")
    if args.calib_per_class < 0:
        raise ValueError("--calibration-images must be >= 0")
    summary = export_bundle(args.run_dir, args.out, args.dtype or "int8", args.sign, args.calib_per_class,
                            cost_models=LatencyModels.run_document(args.run_dir))
    if args.json:
        emit_json(summary)
    else:
        signed = f", signed by key {summary['signed_by']}" if summary["signed_by"] else ", unsigned"
        carried = (f"carries {summary['calibration_images']} training images ({summary['calibration_images_per_class']}"
                   f" per class) for BN recalibration" if summary["calibration_images"] else
                   "untrained run (edge_eas init): for latency work, no accuracy" if summary["untrained"] else
                   "carries no training images: devices recalibrate on images you provide")
        print(f"wrote {summary['bundle']}: {summary['bytes'] / 1024:.1f} KiB, {summary['dtype']} weights{signed}; "
              f"{carried}")
    return 0
