"""Bundle and on-device runtime figures.

- bundle size int8 vs fp32 and the mean task-accuracy change (30 random tasks of 2-5 classes,
  generated archs at random MFLOPs budgets, digits test split, through the runtime);
- time from `Runtime.load` to the first prediction in a fresh process (and with imports);
- per-engine latency (median / p90) at batch 1 and 32 for the smallest, a median and the
  largest sub-network, against torch eager on the same sub-network.

    python -m benchmarks.runtime --run RUN_DIR
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.common import add_allow_dirty, require_clean_tree, save_result

from edge_eas.host.bundle import export_bundle
from edge_eas.cost.flops import macs
from edge_eas.data import run_dataset
from edge_eas.host.rundir import RunDir, load_supernet
from edge_eas.runtime import Runtime
from edge_eas.runtime.engines import available_engines
from edge_eas.runtime.timing import measure
from edge_eas.net.tasks import TaskSampler
from benchmarks.task_dropout import median_arch

COLD = """
import time, sys, numpy as np
t0 = time.perf_counter()
from edge_eas.runtime import Runtime
t1 = time.perf_counter()
rt = Runtime.load(sys.argv[1])
m = rt.specialize(classes=[1, 4, 7], budget_mflops=float(sys.argv[2]), engine="auto")
m.predict(np.zeros((1, *rt.preprocess.input_shape), np.uint8))
t2 = time.perf_counter()
print((t2 - t1) * 1000, (t2 - t0) * 1000, m.engine)
"""


def task_accuracy(bundle: Path, data, tasks, budgets) -> float:  # type: ignore[no-untyped-def]
    rt = Runtime.load(bundle)
    x, y = data.split("test")
    accs = []
    for task, b in zip(tasks, budgets):
        m = rt.specialize(classes=list(task.classes), budget_mflops=b, engine="numpy")
        sel = np.isin(y, task.classes)
        accs.append(float((m.predict_classes(x[sel]) == y[sel]).mean()))
    return float(np.mean(accs))


def cold_start(bundle: Path, budget: float, repeats: int = 5) -> tuple[float, float, str]:
    runs = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", COLD, str(bundle), str(budget)], capture_output=True, text=True,
                             check=True)
        a, b, eng = out.stdout.split()
        runs.append((float(a), float(b), eng))
    return float(np.median([r[0] for r in runs])), float(np.median([r[1] for r in runs])), runs[0][2]


def torch_eager(run: Path, arch, batch: int) -> dict:  # type: ignore[no-untyped-def]
    import torch
    net, _ = load_supernet(RunDir(run))
    sub = net.extract(arch).eval()
    x = torch.randn(batch, *net.space.input_shape)
    with torch.no_grad():
        return measure(lambda: sub(x), warmup=10, runs=50)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--tasks", type=int, default=30)
    add_allow_dirty(ap)
    args = ap.parse_args()
    require_clean_tree(args.allow_dirty)
    tmp = Path(tempfile.mkdtemp(prefix="edge-eas-rt-bench-"))
    b8, b32 = tmp / "int8.eas", tmp / "fp32.eas"
    export_bundle(args.run, b8, "int8")
    export_bundle(args.run, b32, "fp32")
    meta = RunDir(args.run).meta()
    data = run_dataset(meta)
    rt = Runtime.load(b8)
    space = rt.space
    lo, hi = macs(space, space.smallest()) / 1e6, macs(space, space.largest()) / 1e6
    rng = np.random.default_rng(0)
    tasks = [TaskSampler(rt.num_classes, 2, 5).sample(rng) for _ in range(args.tasks)]
    budgets = [float(b) for b in rng.uniform(lo * 1.02, hi, size=args.tasks)]
    acc8, acc32 = task_accuracy(b8, data, tasks, budgets), task_accuracy(b32, data, tasks, budgets)
    bundle = {"int8_bytes": b8.stat().st_size, "fp32_bytes": b32.stat().st_size,
              "ratio": b8.stat().st_size / b32.stat().st_size, "int8_accuracy": acc8, "fp32_accuracy": acc32,
              "accuracy_change_pp": 100 * (acc8 - acc32), "tasks": args.tasks}
    print(f"bundle int8 {bundle['int8_bytes']} B / fp32 {bundle['fp32_bytes']} B = {bundle['ratio']:.3f}; "
          f"accuracy int8 {100 * acc8:.2f}% fp32 {100 * acc32:.2f}%", flush=True)
    load_ms, cold_ms, auto_engine = cold_start(b8, hi)
    print(f"load -> first prediction {load_ms:.0f} ms ({cold_ms:.0f} ms with imports, engine {auto_engine})", flush=True)
    rows = []
    for label, arch in (("smallest", space.smallest()), ("median", median_arch(space)), ("largest", space.largest())):
        t1, t32 = torch_eager(args.run, arch, 1), torch_eager(args.run, arch, 32)
        rows.append({"subnet": label, "mflops": macs(space, arch) / 1e6, "engine": "torch eager (SubNet)",
                     "b1_median_ms": t1["median_ms"], "b1_p90_ms": t1["p90_ms"], "b32_median_ms": t32["median_ms"],
                     "b32_p90_ms": t32["p90_ms"], "speedup_vs_torch_b1": 1.0})
        for engine in available_engines():
            m = rt.specialize(classes=list(range(rt.num_classes)), arch=arch, engine=engine)
            s1, s32 = m.benchmark(runs=50), m.benchmark(runs=50, batch_size=32)
            rows.append({"subnet": label, "mflops": macs(space, arch) / 1e6, "engine": engine,
                         "b1_median_ms": s1["median_ms"], "b1_p90_ms": s1["p90_ms"], "b32_median_ms": s32["median_ms"],
                         "b32_p90_ms": s32["p90_ms"], "speedup_vs_torch_b1": t1["median_ms"] / s1["median_ms"]})
            print(f"{label:8s} {engine:10s} b1 {s1['median_ms']:.3f} ms  b32 {s32['median_ms']:.3f} ms  "
                  f"({rows[-1]['speedup_vs_torch_b1']:.1f}x torch eager {t1['median_ms']:.3f} ms)", flush=True)
    save_result("runtime", {"run": str(args.run), "bundle": bundle, "load_to_first_prediction_ms": load_ms,
                            "cold_start_ms": cold_ms, "auto_engine": auto_engine, "latency": rows}, allow_dirty=args.allow_dirty)


if __name__ == "__main__":
    main()
