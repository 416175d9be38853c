"""How well the latency model predicts this machine at MobileNetV3 scale (issue: latency at real scale).

On a bundle of the `mbv3` space (`edge_eas init --space mbv3 --out RUN` then `edge_eas export
RUN --out mbv3.eas`; latency does not depend on trained weights), for each engine/threads
config (default tflite/1, tflite/2, numpy/1):

- Two arch sets, disjoint by architecture: a calibration pool of 20 and 100 held-out archs, each
  spread evenly over the space's whole MACs range (edge_eas/host/arch_spread.py), neither holding any
  of the probe archs block profiling estimates its fixed term from. The script checks the
  disjointness and refuses to score otherwise.
- Every arch is measured under the bench protocol (runtime/timing.py: interleaved groups of 10,
  a speed reference in each, 2 engine instances, `latency_ms` = fastest sample).
- Block profiling runs on the engine (its device time is recorded), and the fixed parts are
  timed on their own for the OFA-style baseline.
- On the same held-out archs: the roofline prior of the target profile (hand-set guesses in
  targets/local.toml, fitted on no device), the prior calibrated with 5/10/20 pool measurements
  (every 4th/2nd/all of the pool, so each spans the range), the block-profiled table, the
  block-profiled table + 20 measurements, and the OFA-style sum: every block timed as a network
  of its own plus the stem and head timed alone, summed, with no whole-network term.
  OFA-style tables hold each block's own cost, so two fairer variants sit beside it: the sum of
  with-minus-without block entries (plus stem and head), and the sum fitted with a scale and an
  offset to the same 20 pool measurements.
- The pool and the held-out archs are timed in one shuffled order, mixed in every group.
- Paired differences (block-profiled + 20 minus each other column) over the held-out archs,
  with 95 % bootstrap CIs, in within-±10 % share and in absolute relative error.

Writes benchmarks/results/cost_model_mbv3.json and .png (predicted vs measured).

    python -m benchmarks.cost_model --bundle mbv3.eas [--configs tflite/1,tflite/2,numpy/1] [--held-out 100]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from benchmarks.common import add_allow_dirty, bootstrap_ci, RESULTS, require_clean_tree, save_result

from edge_eas.net.arch import Arch
from edge_eas.host.arch_spread import arch_key, spread_archs
from edge_eas.cost.calibrate import accuracy_report, fit
from edge_eas.cost.flops import mflops
from edge_eas.cost.latency import LatencyModel, block_key, latency_ms
from edge_eas.runtime import Runtime
from edge_eas.runtime.model import benchmark_many
from edge_eas.runtime.engines import engine_available
from edge_eas.runtime.agent.messages import to_dict
from edge_eas.runtime.agent.profile import fixed_probes, isolated_fixed_ms, profile_blocks
from edge_eas.runtime.timing import INTERLEAVE_GROUP
from edge_eas.devices.targets import load_target

CALIBRATION_SUBSETS = {5: 4, 10: 2, 20: 1}   # n measurements: every k-th arch of the MACs-sorted pool


def measure_archs(rt: Runtime, archs: Sequence[Any], engine: str, threads: int, runs: int,
                  warmup: int = 10) -> list[dict[str, Any]]:
    """Every arch under the bench protocol, INTERLEAVE_GROUP at a time (specialised per group, so
    only one group's engines are alive), beside one speed reference."""
    reference = rt.speed_reference(engine, threads, warmup=warmup, runs=runs)
    out: list[dict[str, Any]] = []
    for start in range(0, len(archs), INTERLEAVE_GROUP):
        models = [rt.specialize(classes=list(range(rt.num_classes)), arch=a, engine=engine, threads=threads)
                  for a in archs[start:start + INTERLEAVE_GROUP]]
        out += benchmark_many(models, warmup=warmup, runs=runs, reference=reference)
    return out


def choose_archs(space: Any, pool: int, held_out: int, seed: int) -> tuple[list[Any], list[Any]]:
    """(calibration pool, held-out), each spread over the MACs range, disjoint by arch and free of
    the block profile's probe archs."""
    probes = fixed_probes(space)
    held = spread_archs(space, held_out, seed, exclude=probes)
    cal = spread_archs(space, pool, seed + 1, exclude=[*probes, *held])
    return cal, held


def check_disjoint(cal: Sequence[Any], held: Sequence[Any], probes: Sequence[Any]) -> None:
    held_keys = {arch_key(a) for a in held}
    overlap = held_keys & ({arch_key(a) for a in cal} | {arch_key(a) for a in probes})
    if overlap or len(held_keys) != len(held):
        raise SystemExit(f"refusing to score: {len(overlap)} held-out archs are also fit or probe archs, "
                         f"{len(held) - len(held_keys)} repeated")


def ofa_sum_ms(space: Any, arch: Any, isolated: dict[str, float]) -> float:
    """OFA-style latency: the arch's parts each timed as a network of its own, summed."""
    return isolated["stem"] + isolated["head"] + sum(isolated[block_key(c)] for c in space.active_blocks(arch))


def scale_and_offset(predicted: Sequence[float], measured: Sequence[float]) -> tuple[float, float]:
    """(offset, scale) minimising the relative error of offset + scale * predicted: the two-unknown
    fit the calibrated models get from the same pool measurements."""
    p, m = np.asarray(predicted, np.float64), np.asarray(measured, np.float64)
    (offset, scale), *_ = np.linalg.lstsq(np.stack([1 / m, p / m], 1), np.ones(len(m)), rcond=None)
    return float(offset), float(scale)


def interleaved(cal: Sequence[Any], held: Sequence[Any], seed: int) -> list[int]:
    """An order of [*cal, *held] that mixes the two through every timed group, so that a slow
    stretch of the machine cannot fall on the pool alone or on the held-out archs alone."""
    return list(np.random.default_rng(seed).permutation(len(cal) + len(held)))


def paired_against(ref_err: np.ndarray, others: dict[str, np.ndarray], seed: int) -> dict[str, Any]:
    """Per held-out arch, `ref` minus each other model: within-±10 % (pp) and |relative error|
    (pp; negative = ref closer), means with 95 % bootstrap CIs over the held-out archs."""
    out = {}
    for name, err in others.items():
        within = 100 * ((np.abs(ref_err) <= 0.1).astype(float) - (np.abs(err) <= 0.1).astype(float))
        abs_err = 100 * (np.abs(ref_err) - np.abs(err))
        out[name] = {"within_10pct_pp": float(within.mean()), "within_10pct_ci95": bootstrap_ci(within, seed),
                     "abs_rel_error_pp": float(abs_err.mean()), "abs_rel_error_ci95": bootstrap_ci(abs_err, seed),
                     "held_out_archs": len(err)}
    return out


def profiled_model(prior: LatencyModel, block_rows: list[dict]) -> LatencyModel:
    """The block-profiled table (profile rows as dicts) over `prior`, as calibration.prior_model
    builds it from a store."""
    fixed = next(r for r in block_rows if r["block_key"] == "fixed")
    scale = fixed.get("entry_scale") or 1.0
    return replace(prior, entries={r["block_key"]: scale * r["median_ms"] for r in block_rows
                                   if r["block_key"] != "fixed"},
                   fixed_ms=fixed["median_ms"], const_ms=0.0, coef=tuple(prior.prior_coef()[0]), source="profiled")


def report_config(space: Any, hardware: Any, target: str, engine: str, threads: int, cal: Sequence[Any],
                  cal_ms: Sequence[float], held: Sequence[Any], held_ms: Sequence[float], block_rows: list[dict],
                  isolated_fixed: dict[str, float] | None, seed: int) -> dict[str, Any]:
    """Every model's held-out accuracy, the predictions, and paired differences."""
    prior = LatencyModel(target=target, engine=engine, threads=threads, hardware=hardware)
    profiled = profiled_model(prior, block_rows)
    models: dict[str, LatencyModel] = {"prior": prior}
    for n, step in CALIBRATION_SUBSETS.items():
        models[f"calibrated_{n}"] = fit(prior, space, list(cal[::step]), list(cal_ms[::step]))
    models["block_profiled"] = profiled
    models["block_profiled_calibrated_20"] = fit(profiled, space, list(cal), list(cal_ms))
    predictions = {name: [m.predict(space, a) for a in held] for name, m in models.items()}
    if isolated_fixed is not None:
        # as earlier sessions compared it: each block timed as a whole small network (stem, head,
        # pool, engine call around it), so that overhead counts once per block, and no fit
        isolated = {**isolated_fixed, **{r["block_key"]: r["with_block_ms"] for r in block_rows
                                         if r["block_key"] != "fixed"}}
        predictions["ofa_sum"] = [ofa_sum_ms(space, a, isolated) for a in held]
        # what OFA-style tables hold: each block's own cost (with minus without it), beside the
        # stem and head timed alone
        delta = {**isolated_fixed, **{r["block_key"]: r["median_ms"] for r in block_rows
                                      if r["block_key"] != "fixed"}}
        predictions["ofa_delta_sum"] = [ofa_sum_ms(space, a, delta) for a in held]
        # and the same 20 pool measurements the compared models get, as a scale and an offset
        offset, scale = scale_and_offset([ofa_sum_ms(space, a, isolated) for a in cal], cal_ms)
        predictions["ofa_sum_calibrated_20"] = [offset + scale * p for p in predictions["ofa_sum"]]
    measured = np.asarray(held_ms)
    errors = {name: (np.asarray(p) - measured) / measured for name, p in predictions.items()}
    ref = "block_profiled_calibrated_20"
    return {"models": {name: accuracy_report(p, list(held_ms)) for name, p in predictions.items()},
            "paired_vs_block_profiled_calibrated_20": paired_against(
                errors[ref], {k: v for k, v in errors.items() if k != ref}, seed),
            "points": {"mflops": [mflops(space, a) for a in held], "measured_ms": list(held_ms), **predictions}}


def evaluate_config(rt: Runtime, target: str, engine: str, threads: int, cal: list, held: list, runs: int,
                    seed: int) -> dict[str, Any]:
    t0 = time.monotonic()
    block_rows = [to_dict(row) for row in profile_blocks(rt, engine=engine, threads=threads, runs=runs)]
    profile_s = time.monotonic() - t0
    t0 = time.monotonic()
    isolated = isolated_fixed_ms(rt, engine, threads, runs=runs)
    isolated_s = time.monotonic() - t0
    t0 = time.monotonic()
    both = [*cal, *held]
    order = interleaved(cal, held, seed)
    timed = measure_archs(rt, [both[i] for i in order], engine, threads, runs)
    stats: list[dict[str, Any]] = [{}] * len(both)
    for i, st in zip(order, timed):
        stats[i] = st
    measure_s = time.monotonic() - t0
    ms = [latency_ms(st) for st in stats]
    check_disjoint(cal, held, [Arch.from_dict(p) for p in next(r for r in block_rows
                                                                if r["block_key"] == "fixed")["probe_archs"]])
    out = report_config(rt.space, load_target(target).hardware, target, engine, threads, cal, ms[:len(cal)], held,
                        ms[len(cal):], block_rows, isolated, seed)
    out["device_seconds"] = {"block_profile": round(profile_s, 1), "isolated_fixed_parts": round(isolated_s, 1),
                             "measure_archs": round(measure_s, 1)}
    out["block_profile"] = {"configs": len(block_rows) - 1, "fixed": next(r for r in block_rows
                                                                           if r["block_key"] == "fixed")}
    out["noisy_held_out"] = int(sum(bool(st.get("noisy")) for st in stats[len(cal):]))
    out["group_attempts_max"] = int(max(st.get("group_attempts", 1) for st in stats))
    return out


def plot(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(results)
    fig, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 4.2), squeeze=False)
    shown = (("prior", "prior (roofline)"), ("ofa_sum", "OFA-style sum"),
             ("block_profiled_calibrated_20", "block-profiled + 20"))
    for ax, key in zip(axes[0], keys):
        pts = results[key]["points"]
        m = np.asarray(pts["measured_ms"])
        for name, label in shown:
            if name in pts:
                ax.scatter(m, pts[name], s=8, alpha=0.6, label=label)
        lo, hi = m.min() * 0.8, m.max() * 1.2
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.fill_between([lo, hi], [lo * 0.9, hi * 0.9], [lo * 1.1, hi * 1.1], color="grey", alpha=0.15)
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi * 1.5)
        share = results[key]["models"]["block_profiled_calibrated_20"]["within_10pct"]
        ax.set_title(f"{key}: {100 * share:.0f}% within ±10% ({len(m)} held-out archs)", fontsize=9)
        ax.set_xlabel("measured ms (fastest sample)")
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
    ap.add_argument("--configs", default="tflite/1,tflite/2,numpy/1", help="engine/threads, comma-separated")
    ap.add_argument("--name", default="cost_model_mbv3", help="result name")
    add_allow_dirty(ap)
    args = ap.parse_args()
    require_clean_tree(args.allow_dirty)
    rt = Runtime.load(args.bundle)
    cal, held = choose_archs(rt.space, args.pool, args.held_out, args.seed)
    results = {}
    started = time.monotonic()
    for config in args.configs.split(","):
        engine, threads = config.split("/")
        if not engine_available(engine):
            print(f"skipping {engine}: not installed", file=sys.stderr)
            continue
        results[config] = r = evaluate_config(rt, args.target, engine, int(threads), cal, held, args.runs, args.seed)
        shares = {k: 100 * v["within_10pct"] for k, v in r["models"].items()}
        print(f"{config:9s} within ±10%: " + ", ".join(f"{k} {v:.0f}%" for k, v in shares.items())
              + f"; tau {r['models']['block_profiled_calibrated_20']['kendall_tau']:.3f}; profiling "
              + f"{r['device_seconds']['block_profile']:.0f} s", flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    plot(results, RESULTS / f"{args.name}.png")
    save_result(args.name, {
        "bundle": str(args.bundle),
        "resolution": rt.space.resolution, "untrained": rt.untrained, "target": args.target,
        "prior": "the target profile's roofline (hand-set in targets/*.toml; fitted on no device)",
        "held_out": len(held), "pool": len(cal), "runs": args.runs, "seed": args.seed,
        "held_out_mflops_range": [min(mflops(rt.space, a) for a in held), max(mflops(rt.space, a) for a in held)],
        "wall_seconds": round(time.monotonic() - started, 1), "results": results}, allow_dirty=args.allow_dirty)


if __name__ == "__main__":
    main()
