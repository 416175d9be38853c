"""`edge_eas space`: the search space summary, sampled archs, or one arch's cost."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from edge_eas.common.console import emit_json, print_table
from edge_eas.cost.flops import macs, params
from edge_eas.net.space import PRESETS, Arch, SearchSpace


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="digits", choices=sorted(PRESETS), help="search-space preset")
    p.add_argument("--arch", help="an arch as JSON, a JSON file, or 'smallest'/'largest'")
    p.add_argument("--sample", type=int, default=0, metavar="N", help="sample N random archs")
    p.add_argument("--seed", type=int, default=0)


def parse_arch(space: SearchSpace, text: str) -> Arch:
    """An arch from JSON text, a path to a JSON file, or the words smallest/largest; validated."""
    if text in ("smallest", "largest"):
        return space.smallest() if text == "smallest" else space.largest()
    if not text.lstrip().startswith("{"):
        path = Path(text)
        if not path.is_file():
            raise ValueError(f"--arch {text!r} is neither JSON, 'smallest'/'largest', nor an existing file")
        text = path.read_text()
    arch = Arch.from_json(text)
    space.validate(arch)
    return arch


def arch_row(space: SearchSpace, arch: Arch) -> dict:
    return {"arch": arch.to_dict(), "mflops": macs(space, arch) / 1e6, "params": params(space, arch)}


def run(args: argparse.Namespace) -> int:
    space = SearchSpace.preset(args.preset)
    if args.sample < 0:
        raise ValueError("--sample must be >= 0")
    if args.arch:
        row = arch_row(space, parse_arch(space, args.arch))
        if args.json:
            emit_json(row)
        else:
            print(f"arch {Arch.from_dict(row['arch']).to_json()}\nMFLOPs (MACs) {row['mflops']:.4f}\nparams {row['params']:,}")
        return 0
    lo, hi = space.smallest(), space.largest()
    rng = np.random.default_rng(args.seed)
    samples = [arch_row(space, space.sample(rng)) for _ in range(args.sample)]
    summary = {
        "preset": space.name, "input_shape": list(space.input_shape), "resolutions": list(space.resolutions),
        "widths": [list(s.widths) for s in space.stages], "space": space.to_dict(),
        "decisions": len(space.decision_sizes()), "num_archs": space.size(),
        "mflops_range": [macs(space, lo) / 1e6, macs(space, hi) / 1e6],
        "params_range": [params(space, lo), params(space, hi)], "samples": samples,
    }
    if args.json:
        emit_json(summary)
        return 0
    rows = [(i, "/".join(map(str, s.widths)), s.stride, list(s.depth_choices)) for i, s in enumerate(space.stages)]
    sides = f", input sides {list(space.resolutions)}" if space.resolution_choices else ""
    print_table(f"search space {space.name!r}: input {space.input_shape}{sides}, kernels {list(space.kernel_choices)}, "
                f"expands {list(space.expand_choices)}", ["stage", "widths", "stride", "depths"], rows)
    print(f"{summary['decisions']} decisions, {space.size():,} distinct archs, "
          f"{summary['mflops_range'][0]:.3f}-{summary['mflops_range'][1]:.3f} MFLOPs, "
          f"{summary['params_range'][0]:,}-{summary['params_range'][1]:,} params")
    if samples:
        print_table("sampled archs", ["#", "MFLOPs", "params", "arch"],
                    [(i, f"{s['mflops']:.3f}", f"{s['params']:,}", Arch.from_dict(s["arch"]).to_json())
                     for i, s in enumerate(samples)])
    return 0
