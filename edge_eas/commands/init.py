"""`edge_eas init`: a run with initialised (untrained) weights, for latency work at real scale."""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_eas.common.console import emit_json
from edge_eas.common.requirements import HOST, Need, modules
from edge_eas.net.space import PRESETS, SearchSpace

from edge_eas.cost.flops import macs


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--space", default="mbv3", choices=sorted(PRESETS), help="search-space preset")
    p.add_argument("--out", type=Path, required=True, metavar="RUN", help="run directory to create")
    p.add_argument("--resolution", type=int, help="input size in pixels (mbv3: 128-224; default: the preset's)")
    p.add_argument("--num-classes", type=int, default=1000, help="classifier width (default 1000, as ImageNet)")
    p.add_argument("--seed", type=int, default=0)


def requires(args: argparse.Namespace) -> list[Need]:
    return modules(*HOST, why="initialising a supernet")


def run(args: argparse.Namespace) -> int:
    # lazy: loads safetensors, torch only when this command runs (the CLI imports every command for its parser)
    from edge_eas.host.untrained import init_run

    space = SearchSpace.preset(args.space)
    if args.resolution is not None:
        if args.space == "mbv3" and not 128 <= args.resolution <= 224:
            raise ValueError(f"--resolution {args.resolution} is outside mbv3's 128-224")
        space = space.at_resolution(args.resolution)
    run_dir = init_run(space, args.out, args.num_classes, args.seed)
    lo, hi = (macs(space, a, args.num_classes) / 1e6 for a in (space.smallest(), space.largest()))
    doc = {"run": str(run_dir.path), "untrained": True, "space": space.name, "resolution": space.resolution,
           "num_classes": args.num_classes, "mflops_range": [lo, hi]}
    if args.json:
        emit_json(doc)
    else:
        print(f"wrote {run_dir.path}: untrained {space.name} supernet at {space.resolution} px, {args.num_classes} "
              f"classes, {lo:.0f}-{hi:.0f} MFLOPs; for latency work (export, deploy, bench, calibrate)")
    return 0
