"""Engines at real scale: the `mbv3` space (an untrained `edge_eas init` run; latency does not
depend on trained weights) at 224 and 160 px.

Per resolution:
- int8 and fp32 bundle sizes;
- `Runtime.load` -> first prediction of the largest sub-network in a fresh torch-free process
  (numpy engine, and the tflite engine where LiteRT is installed), with that process's peak RSS;
- for the smallest, a median (by MACs, of 2,000 random archs) and the largest sub-network, the
  batch-1 latency of each engine (numpy/1, tflite/1, tflite/2, tflite-int8/1, tflite-int8/2,
  executorch/1, executorch-int8/1, torch/1 eager, onnxruntime:cpu/1 and /2 where installed):
  the protocol of runtime/timing.py (fastest interleaved sample; median and p90 beside it).

    python -m benchmarks.mbv3_engines [--resolutions 224 160] [--out /tmp/mbv3-bench]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import add_allow_dirty, require_clean_tree, save_result

from edge_eas.host.bundle import export_bundle
from edge_eas.cost.flops import macs
from edge_eas.runtime import Runtime
from edge_eas.runtime.model import timed_call
from edge_eas.runtime.engines import available_engines
from edge_eas.runtime.timing import measure_many
from edge_eas.net.space import Arch, SearchSpace
from edge_eas.host.untrained import init_run

COLD = """
import sys, time
import numpy as np
t0 = time.perf_counter()
from edge_eas.runtime import Runtime
rt = Runtime.load(sys.argv[1])
m = rt.specialize(classes=[0, 1, 2], budget_mflops=1e9, engine=sys.argv[2])
m.predict(np.zeros((1, *rt.preprocess.input_shape), np.uint8))
# VmHWM is this process's own peak (a fresh mm after exec); ru_maxrss would carry the parent's size
hwm_kib = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(round((time.perf_counter() - t0) * 1000, 1), hwm_kib // 1024, "torch" in sys.modules)
"""


def median_arch(space: SearchSpace, seed: int = 0) -> Arch:
    rng = np.random.default_rng(seed)
    archs = [space.sample(rng) for _ in range(2000)]
    costs = np.array([macs(space, a) for a in archs])
    return archs[int(np.argmin(np.abs(costs - np.median(costs))))]


def cold_start(bundle: Path, engine: str, repeats: int) -> dict[str, Any]:
    """Fresh processes: load -> first prediction (ms) and peak RSS (MiB); the median of `repeats`."""
    runs = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", COLD, str(bundle), engine], capture_output=True, text=True,
                             check=True).stdout.split()
        if out[2] != "False":
            raise SystemExit("the runtime imported torch: the device path must not")
        runs.append((float(out[0]), int(out[1])))
    ms, rss = zip(*runs)
    return {"engine": engine, "load_to_first_prediction_ms": float(np.median(ms)), "runs_ms": list(ms),
            "peak_rss_mib": int(np.median(rss))}


def engine_configs() -> list[tuple[str, int]]:
    have = available_engines()
    configs = [("numpy", 1)]
    if "tflite" in have:
        configs += [("tflite", 1), ("tflite", 2)]
    if "tflite-int8" in have:  # the full-integer graph (ranges from random images: latency does not depend on them)
        configs += [("tflite-int8", 1), ("tflite-int8", 2)]
    if "executorch" in have:
        configs.append(("executorch", 1))
    if "executorch-int8" in have:
        configs.append(("executorch-int8", 1))
    if "torch" in have:  # torch eager, the baseline TFLite is held against (<= 0.5x at batch 1)
        configs.append(("torch", 1))
    if "onnxruntime" in have:  # the CPU provider: this machine has no GPU
        configs += [("onnxruntime:cpu", 1), ("onnxruntime:cpu", 2)]
    return configs


def latencies(rt: Runtime, archs: dict[str, Arch], runs: int) -> list[dict[str, Any]]:
    """Every engine config's networks of one resolution timed interleaved with each other."""
    rows, fns = [], []
    for engine, threads in engine_configs():
        for label, arch in archs.items():
            m = rt.specialize(classes=[0, 1, 2], arch=arch, engine=engine, threads=threads)
            fns.append(timed_call(m))
            rows.append({"engine": engine, "threads": threads, "arch": label, "mflops": m.mflops})
    for row, st in zip(rows, measure_many(fns, warmup=3, runs=runs)):
        row.update(latency_ms=st["latency_ms"], median_ms=st["median_ms"], p90_ms=st["p90_ms"],
                   runs=st["runs"], repeat=st["repeat"], noisy=st["noisy"])
    return rows


def one_resolution(resolution: int, out: Path, runs: int, cold_repeats: int) -> dict[str, Any]:
    space = SearchSpace.preset("mbv3").at_resolution(resolution)
    run = init_run(space, out / f"run-{resolution}", num_classes=1000)
    sizes = {}
    for dtype in ("int8", "fp32"):
        sizes[dtype] = export_bundle(run.path, out / f"mbv3-{resolution}-{dtype}.eas", dtype)["bytes"]
    bundle = out / f"mbv3-{resolution}-int8.eas"
    archs = {"smallest": space.smallest(), "median": median_arch(space), "largest": space.largest()}
    rt = Runtime.load(bundle)
    cold = [cold_start(bundle, e, cold_repeats) for e in ("numpy", "tflite", "tflite-int8", "onnxruntime")
            if e in ("numpy", *available_engines())]
    return {"resolution": resolution,
            "mflops": {k: macs(space, a, 1000) / 1e6 for k, a in archs.items()},
            "archs": {k: a.to_dict() for k, a in archs.items()},
            "bundle_bytes": sizes, "int8_over_fp32": sizes["int8"] / sizes["fp32"],
            "cold_start": cold, "latency": latencies(rt, archs, runs)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--resolutions", type=int, nargs="+", default=[224, 160])
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--cold-repeats", type=int, default=3)
    p.add_argument("--out", type=Path, help="where the runs and bundles go (default: a temporary directory)")
    add_allow_dirty(p)
    args = p.parse_args()
    require_clean_tree(args.allow_dirty)
    with tempfile.TemporaryDirectory(prefix="mbv3-bench-") as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        results = [one_resolution(r, out, args.runs, args.cold_repeats) for r in args.resolutions]
    for res in results:
        print(json.dumps({k: res[k] for k in ("resolution", "mflops", "int8_over_fp32", "cold_start")}))
    save_result("mbv3_engines", {"space": "mbv3", "untrained": True, "resolutions": results, "rss_source": "VmHWM",
                                 "sample": "3 sub-networks per resolution (smallest, median, largest); batch 1"},
                args.allow_dirty)


if __name__ == "__main__":
    main()
