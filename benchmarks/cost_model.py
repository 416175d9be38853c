"""How well the latency model predicts this machine, used as the device.

For each (engine, threads) of numpy/tflite x 1/2 threads: measure 100 random held-out
sub-networks plus a pool of 20 for calibration (batch 1, the latency protocol), then report
on the held-out set: the roofline prior alone, after 5/10/20 calibration measurements, the
block-profiled table, and the profiled table calibrated with 20 measurements. Writes
benchmarks/results/cost_model.json and cost_model.png (predicted vs measured).

    python benchmarks/cost_model.py --bundle model.eas [--target local] [--held-out 100]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_allow_dirty, RESULTS, require_clean_tree, save_result  # noqa: E402

from edge_eas.cost.calibrate import accuracy_report, fit  # noqa: E402
from edge_eas.cost.latency import LatencyModel  # noqa: E402
from edge_eas.runtime import Runtime  # noqa: E402
from edge_eas.runtime.engines import engine_available  # noqa: E402
from edge_eas.runtime.messages import to_dict  # noqa: E402
from edge_eas.runtime.profile import profile_blocks  # noqa: E402
from edge_eas.targets import load_target  # noqa: E402


def measure_archs(rt: Runtime, archs: list, engine: str, threads: int, runs: int) -> list[float]:
    out = []
    for arch in archs:
        m = rt.specialize(classes=list(range(rt.num_classes)), arch=arch, engine=engine, threads=threads)
        out.append(m.benchmark(warmup=10, runs=runs)["median_ms"])
    return out


def evaluate_config(rt: Runtime, target: str, engine: str, threads: int, held_out: int, pool: int, runs: int,
                    seed: int) -> dict:
    archs = sample_archs(rt.space, pool + held_out, seed)
    measured = measure_archs(rt, archs, engine, threads, runs)
    rows = [to_dict(row) for row in profile_blocks(rt, engine=engine, threads=threads, runs=runs)]
    return report_config(rt.space, load_target(target).hardware, target, engine, threads, archs, measured, rows, pool)


def sample_archs(space, n: int, seed: int) -> list:  # type: ignore[no-untyped-def]
    """The benchmark's sub-networks: the first `pool` calibrate, the rest are held out."""
    rng = np.random.default_rng(seed)
    return [space.sample(rng) for _ in range(n)]


def report_config(space, hardware, target: str, engine: str, threads: int, archs: list,  # type: ignore[no-untyped-def]
                  measured: list[float], block_rows: list[dict], pool: int) -> dict:
    """Held-out accuracy of the prior, the prior calibrated with 5/10/20 measurements, the
    block-profiled table and the profiled table calibrated with 20 (shared with the arm64 run)."""
    cal_archs, cal_ms = archs[:pool], measured[:pool]
    test_archs, test_ms = archs[pool:], measured[pool:]
    prior = LatencyModel(target=target, engine=engine, threads=threads, hardware=hardware)

    def report(model: LatencyModel) -> dict:
        return accuracy_report([model.predict(space, a) for a in test_archs], test_ms)

    out = {"prior": report(prior)}
    for n in (5, 10, 20):
        out[f"calibrated_{n}"] = report(fit(prior, space, cal_archs[:n], cal_ms[:n]))
    rows = block_rows
    profiled = LatencyModel(target=target, engine=engine, threads=threads, hardware=prior.hardware,
                            entries={r["block_key"]: r["median_ms"] for r in rows if r["block_key"] != "fixed"},
                            fixed_ms=next(r["median_ms"] for r in rows if r["block_key"] == "fixed"),
                            const_ms=0.0, coef=tuple(prior.prior_coef()[0]), source="profiled")
    out["block_profiled"] = report(profiled)
    out["block_profiled_calibrated_20"] = report(fit(profiled, space, cal_archs, cal_ms))
    best = fit(prior, space, cal_archs, cal_ms)
    out["points"] = {"measured_ms": test_ms, "prior_ms": [prior.predict(space, a) for a in test_archs],
                     "calibrated_20_ms": [best.predict(space, a) for a in test_archs]}
    return out


def plot(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(results)
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 4), squeeze=False)
    for ax, key in zip(axes[0], keys):
        pts = results[key]["points"]
        m = np.asarray(pts["measured_ms"])
        ax.scatter(m, pts["prior_ms"], s=8, alpha=0.5, label="prior (roofline)")
        ax.scatter(m, pts["calibrated_20_ms"], s=8, alpha=0.7, label="calibrated, 20 measurements")
        lo, hi = m.min() * 0.8, m.max() * 1.2
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.fill_between([lo, hi], [lo * 0.9, hi * 0.9], [lo * 1.1, hi * 1.1], color="grey", alpha=0.15)
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi * 1.5)
        ax.set_title(f"{key}: {100 * results[key]['calibrated_20']['within_10pct']:.0f}% within ±10%")
        ax.set_xlabel("measured ms")
        ax.set_ylabel("predicted ms")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--target", default="local")
    ap.add_argument("--held-out", type=int, default=100)
    ap.add_argument("--pool", type=int, default=20)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--engines", default="numpy,tflite")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--name", default="cost_model", help="result name (e.g. cost_model_arm64)")
    add_allow_dirty(ap)
    args = ap.parse_args()
    require_clean_tree(args.allow_dirty)
    rt = Runtime.load(args.bundle)
    results = {}
    for engine in args.engines.split(","):
        if not engine_available(engine):
            print(f"skipping {engine}: not installed", file=sys.stderr)
            continue
        for threads in (int(t) for t in args.threads.split(",")):
            key = f"{engine}/t{threads}"
            results[key] = evaluate_config(rt, args.target, engine, threads, args.held_out, args.pool, args.runs,
                                           args.seed)
            r = results[key]
            print(f"{key:10s} within ±10%: prior {100 * r['prior']['within_10pct']:.0f}%, "
                  + ", ".join(f"{n} meas {100 * r[f'calibrated_{n}']['within_10pct']:.0f}%" for n in (5, 10, 20))
                  + f", profiled {100 * r['block_profiled']['within_10pct']:.0f}%"
                  + f"; tau after 20: {r['calibrated_20']['kendall_tau']:.3f}", flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    plot(results, RESULTS / f"{args.name}.png")
    save_result(args.name, {"bundle": str(args.bundle), "target": args.target, "held_out": args.held_out,
                            "pool": args.pool, "runs": args.runs, "results": results}, allow_dirty=args.allow_dirty)


if __name__ == "__main__":
    main()
