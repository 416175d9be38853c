"""How well the latency model predicts a second device type: Debian arm64 under qemu user
emulation (tests/labs/arm64_lab.py), deployed to offline and measured over SSH by its own
aarch64 agent, next to this host measured natively.

For each engine (tflite via the ai-edge-litert aarch64 wheel, numpy), 1 thread: measure a
calibration pool of 20 and N held-out sub-networks on the device, spread over the MACs range and
disjoint by arch (the same sets benchmarks/cost_model.py uses for the same bundle and seed),
profile every block on the device, then report on the held-out set like the host benchmark:
the target profile's roofline prior (its coefficients were fitted on this emulated device, so it
is named so), calibrated with 5/10/20 measurements, block-profiled, profiled + 20; and a model
fitted on another device: the host's own block profile + 20 host measurements of the pool,
scored as is and after a scale/offset fit to 5 device measurements. The held-out sub-networks are
also measured on this host with the same engine, which gives the emulation slowdown. Use an
`mbv3` bundle at a low resolution (`edge_eas init --space mbv3 --resolution 128`) so the whole
run fits in ~20 min under qemu. Writes benchmarks/results/cost_model_arm64.json (+ .png).

    python -m benchmarks.cost_model_arm64 --bundle model.eas [--held-out 100] [--engines tflite,numpy]
    python -m benchmarks.cost_model_arm64 --mbv3-resolution 48   # an untrained mbv3 run at 48 px, made here

Under qemu an mbv3 network at 128 px takes 0.2-2 s (about 200x this host for XNNPACK, 40x for
numpy), so 120 networks x 2 instances x 40 samples alone would take hours: `--mbv3-resolution`
builds the same space at a resolution below the CLI's 128-224 (the space is resolution-agnostic;
tests use 32 px). Measured (2 cores): at 48 px the device took ~7 min to profile and ~36 s per
network; at 32 px `--held-out 30 --pool 20 --engines tflite` took 34 min in all (24 on the device).

Needs root and a qemu-aarch64 binfmt entry (firmware_scripts/make_arm64_device.sh says what is missing).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import add_allow_dirty, RESULTS, require_clean_tree, save_result
from benchmarks.cost_model import (CALIBRATION_SUBSETS, check_disjoint, choose_archs, measure_archs, plot,
                                   profiled_model, report_config)

from edge_eas.net.arch import Arch
from edge_eas.cost.calibrate import accuracy_report, fit
from edge_eas.cost.flops import mflops
from edge_eas.cost.latency import LatencyModel, latency_ms
from edge_eas.runtime.agent.messages import to_dict
from edge_eas.runtime.agent.profile import profile_blocks
from edge_eas.remote.deploy import deploy
from edge_eas.remote.ssh_options import ssh_options
from edge_eas.remote.ssh_runner import SSHRunner
from edge_eas.runtime import Runtime
from edge_eas.runtime.engines import engine_available
from edge_eas.devices.targets import load_target

from tests.labs.arm64_lab import Arm64Lab


def agent_lines(runner: SSHRunner, args: list[str]) -> list[dict[str, Any]]:
    out = []
    for raw in runner.stream(["--bundle", runner.bundle_path(), *args]):
        raw = raw.strip()
        if raw.startswith("{"):
            line = json.loads(raw)
            if line.get("type") in ("fatal", "error"):
                raise RuntimeError(f"device agent: {line.get('error')}")
            out.append(line)
    return out


def measure_on_device(runner: SSHRunner, rt: Runtime, archs: list, engine: str, runs: int) -> list[float]:
    scenarios = [{"id": f"a{i:03d}", "classes": list(range(rt.num_classes)), "arch": a.to_dict()}
                 for i, a in enumerate(archs)]
    path = runner.prepare_scenarios(scenarios)
    lines = agent_lines(runner, ["--scenarios", path, "--engine", engine, "--threads", "1", "--warmup", "10",
                                 "--runs", str(runs), "--run-id", "cost-model-arm64"])
    by_id = {ln["scenario"]: ln for ln in lines if ln.get("type") == "measurement"}
    assert all(ln["engine"] == engine for ln in by_id.values()), "the device ran another engine"
    return [latency_ms(by_id[s["id"]]["stats"]) for s in scenarios]


def environment(runner: SSHRunner) -> dict[str, Any]:
    hello = next(ln for ln in agent_lines(runner, []) if ln.get("type") == "hello")  # not the first line: warnings may precede it
    env = hello["environment"]
    return {k: env.get(k) for k in ("machine", "python", "cpu_model", "versions", "hostname")}


def host_model(rt: Runtime, engine: str, cal: list, runs: int) -> LatencyModel:
    """A model fitted on another device (this host): its block profile + its measurements of the
    calibration pool, as the product would calibrate it there."""
    rows = [to_dict(r) for r in profile_blocks(rt, engine=engine, threads=1, runs=runs)]
    profiled = profiled_model(LatencyModel(target="local", engine=engine, threads=1,
                                           hardware=load_target("local").hardware), rows)
    cal_ms = [latency_ms(st) for st in measure_archs(rt, cal, engine, 1, runs)]
    return fit(profiled, rt.space, cal, cal_ms)


def mbv3_bundle(resolution: int, out: Path) -> Path:
    """An untrained `mbv3` run at `resolution` (what `edge_eas init --space mbv3` makes at 128-224), exported."""
    from edge_eas.host.bundle import export_bundle
    from edge_eas.net.space import SearchSpace
    from edge_eas.host.untrained import init_run
    run = init_run(SearchSpace.preset("mbv3").at_resolution(resolution), out / "run", num_classes=1000)
    export_bundle(run.path, out / "mbv3.eas", "int8")
    return out / "mbv3.eas"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--bundle", type=Path)
    src.add_argument("--mbv3-resolution", type=int, help="make an untrained mbv3 bundle at this resolution")
    ap.add_argument("--held-out", type=int, default=100)
    ap.add_argument("--pool", type=int, default=20)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--engines", default="tflite,numpy")
    add_allow_dirty(ap)
    args = ap.parse_args()
    require_clean_tree(args.allow_dirty)
    started = time.monotonic()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # still tear the device down (finally)
    made = tempfile.TemporaryDirectory(prefix="eas-arm64-mbv3-")
    if args.mbv3_resolution:
        args.bundle = mbv3_bundle(args.mbv3_resolution, Path(made.name))
    rt = Runtime.load(args.bundle)
    cal, held = choose_archs(rt.space, args.pool, args.held_out, args.seed)
    results: dict[str, Any] = {}
    timing: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="eas-arm64-bench-") as tmp:
        t0 = time.monotonic()
        lab = Arm64Lab(Path(tmp)).start()
        try:
            timing["device_up_s"] = round(time.monotonic() - t0, 1)
            target = load_target(str(lab.write_target(engine="tflite", threads=1, command_timeout=600.0)))
            opts = ssh_options(target)
            t0 = time.monotonic()
            rep = deploy(target, opts, args.bundle, allow_unsigned=True)  # a stand-in device, any bundle
            timing["deploy_s"] = round(time.monotonic() - t0, 1)
            runner = SSHRunner(target, opts, bundle=args.bundle)
            device_env = environment(runner)
            for engine in args.engines.split(","):
                key = f"{engine}/t1"
                t0 = time.monotonic()
                rows = [ln for ln in agent_lines(runner, ["--profile-blocks", "--engine", engine, "--threads", "1",
                                                          "--warmup", "5", "--runs", str(args.runs)])
                        if ln.get("type") == "block"]
                timing[f"{key}_profile_device_s"] = round(time.monotonic() - t0, 1)
                t0 = time.monotonic()
                measured = measure_on_device(runner, rt, [*cal, *held], engine, args.runs)
                timing[f"{key}_measure_device_s"] = round(time.monotonic() - t0, 1)
                probes = [Arch.from_dict(p) for p in next(r for r in rows if r["block_key"] == "fixed")
                          .get("probe_archs") or []]
                check_disjoint(cal, held, probes)
                cal_ms, held_ms = measured[:len(cal)], measured[len(cal):]
                r = report_config(rt.space, target.hardware, target.name, engine, 1, cal, cal_ms, held, held_ms,
                                  rows, None, args.seed)
                r["models"]["prior_fitted_on_this_device"] = r["models"].pop("prior")
                if engine_available(engine):
                    host_stats = measure_archs(rt, held, engine, 1, args.runs)
                    ratio = np.asarray(held_ms) / np.asarray([latency_ms(st) for st in host_stats])
                    r["emulation_slowdown"] = {"median": float(np.median(ratio)), "min": float(ratio.min()),
                                               "max": float(ratio.max())}
                    other = host_model(rt, engine, cal, args.runs)
                    step = CALIBRATION_SUBSETS[5]
                    for name, model in (("fitted_on_host", other),
                                        ("fitted_on_host_calibrated_5", fit(other, rt.space, cal[::step],
                                                                           cal_ms[::step], min_full_fit=10 ** 9))):
                        r["models"][name] = accuracy_report([model.predict(rt.space, a) for a in held], held_ms)
                results[key] = r
                print(f"{key:10s} within ±10%: " + ", ".join(f"{k} {100 * v['within_10pct']:.0f}%"
                                                             for k, v in r["models"].items())
                      + f"; slowdown vs host {r.get('emulation_slowdown', {}).get('median', float('nan')):.0f}x",
                      flush=True)
            runner.close()
        finally:
            lab.close()
    RESULTS.mkdir(parents=True, exist_ok=True)
    plot(results, RESULTS / "cost_model_arm64.png")
    save_result("cost_model_arm64", {
        "bundle": str(args.bundle), "target": "arm64-emu (Debian bookworm arm64, qemu user emulation)",
        "held_out": len(held), "pool": len(cal), "runs": args.runs, "device": device_env,
        "resolution": rt.space.resolution, "untrained": rt.untrained,
        "deploy": {"engine_package": rep.engine_package, "numpy_source": rep.numpy_source,
                   "transferred_bytes": rep.transferred_bytes},
        "held_out_mflops_range": [min(mflops(rt.space, a) for a in held), max(mflops(rt.space, a) for a in held)],
        "timing": timing, "wall_seconds": round(time.monotonic() - started, 1), "results": results},
        allow_dirty=args.allow_dirty)
    made.cleanup()


if __name__ == "__main__":
    main()
