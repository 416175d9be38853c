"""How well the latency model predicts a second device type: Debian arm64 under qemu user
emulation (edge_eas.sim.arm64_lab), deployed to offline and measured over SSH by its own
aarch64 agent, next to this host measured natively.

For each engine (tflite via the ai-edge-litert aarch64 wheel, numpy), 1 thread: measure a pool of
20 + N held-out random sub-networks on the device (the same ones benchmarks/cost_model.py uses
for the same bundle and seed), profile every block on the device, then report on the held-out set
exactly like the host benchmark: roofline prior, calibrated with 5/10/20 measurements,
block-profiled, profiled + 20. The held-out sub-networks are also measured on this host with the
same engine, which gives the emulation slowdown. Writes benchmarks/results/cost_model_arm64.json
(+ .png); the README renders it beside the host's table.

    python benchmarks/cost_model_arm64.py --bundle model.eas [--held-out 100] [--engines tflite,numpy]

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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_allow_dirty, RESULTS, require_clean_tree, save_result  # noqa: E402
from cost_model import measure_archs, plot, report_config, sample_archs  # noqa: E402

from edge_eas.sim.arm64_lab import Arm64Lab  # noqa: E402
from edge_eas.remote.deploy import deploy  # noqa: E402
from edge_eas.remote.ssh_options import ssh_options  # noqa: E402
from edge_eas.remote.ssh_runner import SSHRunner  # noqa: E402
from edge_eas.runtime import Runtime  # noqa: E402
from edge_eas.runtime.engines import engine_available  # noqa: E402
from edge_eas.targets import load_target  # noqa: E402


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
    return [float(by_id[s["id"]]["stats"]["median_ms"]) for s in scenarios]


def environment(runner: SSHRunner) -> dict[str, Any]:
    hello = agent_lines(runner, [])[0]
    env = hello["environment"]
    return {k: env.get(k) for k in ("machine", "python", "cpu_model", "versions", "hostname")}


def host_summary(key: str) -> dict[str, Any] | None:
    """The host benchmark's figures for the same engine/threads, if it has been run."""
    path = RESULTS / "cost_model.json"
    if not path.is_file():
        return None
    r = json.loads(path.read_text())["results"].get(key)
    if r is None:
        return None
    return {k: r[k]["within_10pct"] for k in ("prior", "calibrated_20", "block_profiled", "block_profiled_calibrated_20")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--held-out", type=int, default=100)
    ap.add_argument("--pool", type=int, default=20)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--engines", default="tflite,numpy")
    add_allow_dirty(ap)
    args = ap.parse_args()
    require_clean_tree(args.allow_dirty)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # still tear the device down (finally)
    rt = Runtime.load(args.bundle)
    archs = sample_archs(rt.space, args.pool + args.held_out, args.seed)
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
                measured = measure_on_device(runner, rt, archs, engine, args.runs)
                rows = [ln for ln in agent_lines(runner, ["--profile-blocks", "--engine", engine, "--threads", "1",
                                                          "--warmup", "5", "--runs", str(args.runs)])
                        if ln.get("type") == "block"]
                timing[f"{key}_device_s"] = round(time.monotonic() - t0, 1)
                r = report_config(rt.space, target.hardware, target.name, engine, 1, archs, measured, rows, args.pool)
                held = archs[args.pool:]
                if engine_available(engine):
                    host_ms = measure_archs(rt, held, engine, 1, args.runs)
                    ratio = np.asarray(measured[args.pool:]) / np.asarray(host_ms)
                    r["emulation_slowdown"] = {"median": float(np.median(ratio)), "min": float(ratio.min()),
                                               "max": float(ratio.max())}
                r["host"] = host_summary(key)
                results[key] = r
                print(f"{key:10s} within ±10%: prior {100 * r['prior']['within_10pct']:.0f}%, "
                      + ", ".join(f"{n} meas {100 * r[f'calibrated_{n}']['within_10pct']:.0f}%" for n in (5, 10, 20))
                      + f", profiled {100 * r['block_profiled']['within_10pct']:.0f}%, profiled+20 "
                      + f"{100 * r['block_profiled_calibrated_20']['within_10pct']:.0f}%; slowdown vs host "
                      + f"{r.get('emulation_slowdown', {}).get('median', float('nan')):.0f}x", flush=True)
            runner.close()
        finally:
            lab.close()
    RESULTS.mkdir(parents=True, exist_ok=True)
    plot(results, RESULTS / "cost_model_arm64.png")
    save_result("cost_model_arm64", {
        "bundle": str(args.bundle), "target": "arm64-emu (Debian bookworm arm64, qemu user emulation)",
        "held_out": args.held_out, "pool": args.pool, "runs": args.runs, "device": device_env,
        "deploy": {"engine_package": rep.engine_package, "numpy_source": rep.numpy_source,
                   "transferred_bytes": rep.transferred_bytes},
        "timing": timing, "results": results}, allow_dirty=args.allow_dirty)


if __name__ == "__main__":
    main()
