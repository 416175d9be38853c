"""Where the time goes in an mbv3 sub-network on TFLite/XNNPACK, fp32 and int8, 1 thread.

LiteRT's Python wheel has no op profiler (the op-profiling flag of `benchmark_model` is not in
it), and XNNPACK runs the whole graph as one delegate node. So each op's time is measured the
way block profiling measures a block: the network cut after every op (every conv, SE and residual
add inside each block), all prefixes timed interleaved under the bench protocol, and an op's
time is its prefix's minus the previous prefix's. Summed by kind (depthwise 3x3 / 5x5 / 7x7,
1x1 convs, SE, residual adds, stem, head), they tell what makes the large networks slow.

Two counterfactuals answer the 7x7 question directly, on the whole network: the largest arch
with its 7x7 depthwise kernels run in one piece instead of split into row bands
(XNNPACK_MAX_DW_TAPS), and the same arch with every 7x7 kernel a 5x5.

    python -m benchmarks.mbv3_time_split [--resolution 224] [--runs 30]
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from benchmarks.common import add_allow_dirty, require_clean_tree, save_result
from benchmarks.mbv3_engines import median_arch

from edge_eas.cost.flops import macs
from edge_eas.host.bundle import export_bundle
from edge_eas.host.untrained import init_run
from edge_eas.net.folded import FoldedBlock, FoldedConv, FoldedNet, Op, SqueezeExcite
from edge_eas.net.space import Arch, SearchSpace
from edge_eas.runtime import Runtime
from edge_eas.runtime.engines.tflite_engine import build_tflite, load_interpreter_class
from edge_eas.runtime.engines.tflite_quant import UniformRanges
from edge_eas.runtime.timing import measure_many

PRECISIONS = {"fp32": None, "int8": UniformRanges()}  # untrained weights: ranges do not change the speed


def kind(op: Op) -> str:
    """The row an op's time is filed under."""
    if isinstance(op, FoldedConv):
        if op.depthwise:
            return f"depthwise {op.kernel}x{op.kernel}"
        return "conv 1x1" if op.kernel == 1 else f"conv {op.kernel}x{op.kernel}"
    if isinstance(op, SqueezeExcite):
        return "squeeze-excite"
    return type(op).__name__


def prefixes(net: FoldedNet) -> list[tuple[str, FoldedNet]]:
    """(kind of the op last added, the network cut after it), for every op in order; inside a
    block, after each of its ops, then once more with its residual add."""
    out: list[tuple[str, FoldedNet]] = []
    done: tuple[Op, ...] = ()
    in_head = False
    for op in net.ops:
        if isinstance(op, FoldedBlock):
            for j, sub in enumerate(op.ops):
                part = FoldedBlock(op.name, op.ops[:j + 1], residual=False)
                out.append((kind(sub), FoldedNet(net.input_shape, (*done, part))))
            if op.residual:
                out.append(("residual add", FoldedNet(net.input_shape, (*done, op))))
            in_head = True
        else:
            out.append((f"{'head' if in_head else 'stem'}: {kind(op)}", FoldedNet(net.input_shape, (*done, op))))
        done = (*done, op)
    return out


def invoker(model: bytes, input_shape: tuple[int, int, int], threads: int = 1) -> Callable[[], Any]:
    interp = load_interpreter_class()(model_content=model, num_threads=threads)
    interp.allocate_tensors()
    c, h, w = input_shape
    interp.set_tensor(interp.get_input_details()[0]["index"],
                      np.random.default_rng(0).standard_normal((1, h, w, c)).astype(np.float32))
    return interp.invoke


def split(net: FoldedNet, ranges: Any, runs: int) -> dict[str, Any]:
    """Per kind: ms (sum of prefix differences) and share of the whole network."""
    cuts = prefixes(net)
    fns = [invoker(build_tflite(cut, ranges=ranges), net.input_shape) for _, cut in cuts]
    stats = measure_many(fns, warmup=3, runs=runs)
    times = [st["latency_ms"] for st in stats]
    by_kind: dict[str, float] = {}
    previous = 0.0
    for (label, _), t in zip(cuts, times):
        by_kind[label] = by_kind.get(label, 0.0) + (t - previous)
        previous = t
    whole = times[-1]
    return {"whole_ms": whole, "ops": len(cuts),
            "by_kind": {k: {"ms": v, "share": v / whole} for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])}}


def with_kernel(arch: Arch, old: int, new: int) -> Arch:
    return replace(arch, kernels=tuple(tuple(new if k == old else k for k in stage) for stage in arch.kernels))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--runs", type=int, default=30)
    add_allow_dirty(ap)
    args = ap.parse_args()
    require_clean_tree(args.allow_dirty)
    space = SearchSpace.preset("mbv3").at_resolution(args.resolution)
    with tempfile.TemporaryDirectory(prefix="mbv3-split-") as tmp:
        run = init_run(space, Path(tmp) / "run", num_classes=1000)
        export_bundle(run.path, Path(tmp) / "mbv3.eas")
        rt = Runtime.load(Path(tmp) / "mbv3.eas")
        archs = {"median": median_arch(space), "largest": space.largest()}
        nets = {name: rt.specialize(classes=[0, 1, 2], arch=a, engine="numpy").folded
                for name, a in archs.items()}
        largest_k5 = with_kernel(space.largest(), 7, 5)
        k5 = rt.specialize(classes=[0, 1, 2], arch=largest_k5, engine="numpy").folded
    splits = {f"{name}/{p}": split(net, ranges, args.runs) for name, net in nets.items()
              for p, ranges in PRECISIONS.items()}
    for key, res in splits.items():
        top = ", ".join(f"{k} {100 * v['share']:.0f}%" for k, v in list(res["by_kind"].items())[:4])
        print(f"{key}: {res['whole_ms']:.2f} ms; {top}", flush=True)
    variants: list[tuple[str, FoldedNet, Any, Any]] = []
    for p, ranges in PRECISIONS.items():
        variants += [(f"largest/{p}/7x7 as row bands (default)", nets["largest"], ranges, None),
                     (f"largest/{p}/7x7 in one piece", nets["largest"], ranges, "unsplit"),
                     (f"largest/{p}/every 7x7 a 5x5", k5, ranges, None)]
    fns = [invoker(build_tflite(net, ranges=ranges, **({"max_dw_taps": None} if how == "unsplit" else {})),
                   net.input_shape) for _, net, ranges, how in variants]
    counterfactual = {label: st["latency_ms"] for (label, *_), st in
                      zip(variants, measure_many(fns, warmup=3, runs=args.runs))}
    for label, ms in counterfactual.items():
        print(f"{label}: {ms:.2f} ms")
    save_result(f"mbv3_time_split_{args.resolution}", {
        "resolution": args.resolution, "threads": 1, "engine": "tflite (LiteRT, XNNPACK)", "untrained": True,
        "method": "prefix differences: the network cut after every op, all cuts timed interleaved",
        "archs": {k: a.to_dict() for k, a in archs.items()},
        "mflops": {k: macs(space, a, 1000) / 1e6 for k, a in archs.items()},
        "largest_k5_mflops": macs(space, largest_k5, 1000) / 1e6,
        "splits": splits, "counterfactual_ms": counterfactual}, args.allow_dirty)


if __name__ == "__main__":
    main()
