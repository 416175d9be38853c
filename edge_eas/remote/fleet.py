"""`edge_eas bench` behind the CLI: targets -> runners -> bench_device per device (bounded
concurrency for fleets) -> store -> optional calibration."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from edge_eas.common.console import info
from edge_eas.cost.store import MeasurementStore
from edge_eas.errors import UserError
from edge_eas.common.paths import default_store
from edge_eas.format.bundle_reader import BundleError, open_bundle
from edge_eas.runtime.agent.messages import MeasurementLine, ScenarioError
from edge_eas.devices.targets import Target, load_target
from edge_eas.remote.bench import DeviceReport, LocalRunner, bench_device, bench_run_id, profile_device, reference_args
from edge_eas.remote.prepare import prepared_device
from edge_eas.remote.scenarios import make_scenarios


@dataclass(frozen=True)
class BenchRequest:
    """What a bench asks for, as data: `edge_eas bench` builds it from its flags, the quick start
    and the benchmarks build it directly. host/key/trust_new_host override the target's SSH
    connection (ssh_options reads them)."""

    target: str
    bundle: Path | None = None
    scenarios: int = 50
    seed: int = 0
    engine: str | None = None
    threads: int | None = None
    runs: int = 50
    warmup: int = 10
    store: Path | None = None
    calibrate: bool = False
    run: Path | None = None
    prepare: bool = False
    concurrency: int | None = None
    host: str | None = None
    key: str | None = None
    trust_new_host: bool = False


def expand_targets(spec: str) -> list[Target]:
    out: list[Target] = []
    for name in [s.strip() for s in spec.split(",") if s.strip()]:
        t = load_target(name)
        out.extend(load_target(m) for m in t.members) if t.is_fleet else out.append(t)
    if not out:
        raise UserError("--target is empty")
    return out


def make_runner(target: Target, bundle: Path, args: BenchRequest):  # type: ignore[no-untyped-def]
    if target.local:
        return LocalRunner(bundle, python=target.python or None, device_id=target.name)
    from edge_eas.remote.ssh_options import ssh_options
    from edge_eas.remote.ssh_runner import SSHRunner
    return SSHRunner(target, ssh_options(target, args), bundle=bundle)


def resolve_boards(targets: list[Target], args: BenchRequest) -> list[Target]:
    """Generic targets (`--target jetson`) as the profile of the board each reaches, so their
    measurements are filed per board type (boards.py); every remote device's Python is checked."""
    from edge_eas.remote.device_steps import resolve_target
    from edge_eas.remote.ssh import SSHSession
    from edge_eas.remote.ssh_options import ssh_options
    out = []
    for t in targets:
        if t.board_detect and t.connection is not None:
            with SSHSession(t.connection, ssh_options(t, args), python=t.python) as s:
                t, warnings = resolve_target(s, t)
            for w in warnings:
                info(f"[{t.name}] warning: {w}")
        out.append(t)
    return out


def run_bench(args: BenchRequest) -> dict[str, Any]:
    targets = resolve_boards(expand_targets(args.target), args)
    if args.runs < 30:
        raise UserError("--runs must be >= 30 (the latency protocol's minimum)")
    if args.bundle is None:
        args = replace(args, bundle=_deployed_bundle(targets, args))
    assert args.bundle is not None
    try:
        bundle = open_bundle(args.bundle)
    except BundleError as exc:
        raise UserError(str(exc)) from None
    space = bundle.manifest["space"]
    from edge_eas.net.space import SearchSpace
    sp = SearchSpace.from_dict(space)
    scenarios = make_scenarios(sp, len(bundle.manifest["class_names"]), args.scenarios, args.seed)
    store_path = args.store or default_store()
    with MeasurementStore(store_path) as store:
        store.put_bundle(bundle.sha256, space, bundle.manifest["class_names"])
    fleets = [t for t in (load_target(n.strip()) for n in args.target.split(",") if n.strip()) if t.is_fleet]
    limit = args.concurrency or max([f.concurrency for f in fleets] or [4])
    concurrency = max(1, min(len(targets), limit))
    lock = threading.Lock()
    results: dict[str, DeviceReport] = {}

    def one(target: Target) -> None:
        engine = args.engine or target.engine
        threads = args.threads or target.threads
        run_id = bench_run_id(bundle.sha256, scenarios, engine, threads)
        counter = {"n": 0}

        def progress(msg: MeasurementLine | ScenarioError) -> None:
            counter["n"] += 1
            if isinstance(msg, ScenarioError):
                with lock:
                    info(f"[{target.name}] scenario {msg.scenario}: {msg.error}")

        def retrying(attempt: int, reason: str) -> None:
            with lock:
                info(f"[{target.name}] {reason}; retrying (attempt {attempt}), resuming from what is stored")

        store = MeasurementStore(store_path)  # one connection per worker thread
        prep: dict[str, Any] = {}
        try:
            runner = make_runner(target, args.bundle, args)
            with prepared_device(runner, prep) if args.prepare else nullcontext():
                hints = store.reference_hints(target.name, bundle.sha256, threads)
                report = bench_device(runner, target.name, scenarios, store, run_id, engine, threads,
                                      warmup=args.warmup, runs=args.runs, on_result=progress,
                                      on_retry=retrying, extra_args=reference_args(hints))
        except UserError as exc:
            report = DeviceReport(device=target.name, target=target.name, failure=str(exc))
        finally:
            store.close()
        report.bench_run = run_id
        report.prepare = prep or None
        with lock:
            results[target.name] = report
            info(f"[{target.name}] {report.stored} measured, {report.skipped} already stored"
                 + (f", FAILED: {report.failure}" if report.failure else ""))
            for warning in report.warnings:
                info(f"[{target.name}] warning: {warning}")

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(one, targets))
    devices = []
    with MeasurementStore(store_path) as store:
        for t in targets:
            rep = results[t.name]
            rows = store.measurements(bench_run=rep.bench_run, device_id=rep.device, batch_size=None)
            by_id = {s["id"]: s for s in scenarios}
            table = [{"scenario": r["scenario"], "classes": r["classes"],
                      "budget_mflops": by_id[r["scenario"]]["budget_mflops"], "mflops": r["mflops"],
                      "predicted_ms": _host_prediction(t.name, r, sp), "measured_ms": r["latency_ms"],
                      "median_ms": r["median_ms"], "engine": r["engine"], "threads": r["threads"],
                      "in_budget": r["mflops"] <= by_id[r["scenario"]]["budget_mflops"] + 1e-9}
                     for r in rows if r["scenario"] in by_id]
            devices.append({**rep.to_dict(), "board": t.board, "resolved_from": t.resolved_from,
                            "rows": sorted(table, key=lambda r: r["scenario"])})
    result: dict[str, Any] = {"bundle": str(args.bundle), "bundle_sha256": bundle.sha256,
                              "untrained": bool(bundle.manifest.get("untrained", False)), "scenarios": len(scenarios),
                              "store": str(store_path), "devices": devices,
                              "failed_devices": [d["device"] for d in devices if d["failure"]]}
    if args.calibrate:
        from edge_eas.cost.calibration import calibrate_target
        result["calibration"] = {}
        result["block_profiles"] = {}
        for t in targets:  # fill the per-block look-up table on each device (nn-Meter / OFA style)
            if t.name in result["failed_devices"]:
                continue
            with MeasurementStore(store_path) as store:
                try:
                    threads = args.threads or t.threads
                    result["block_profiles"][t.name] = profile_device(
                        make_runner(t, args.bundle, args), t.name, store, sp.digest(), args.engine or t.engine,
                        threads, runs=30, reference_hints=store.reference_hints(t.name, bundle.sha256, threads))
                except Exception as exc:  # the whole-network measurements still calibrate the model
                    info(f"[{t.name}] block profiling failed ({exc}); calibrating from measurements only")
        specs = {t.name: t for t in targets}
        for name in sorted(set(specs) - set(result["failed_devices"])):
            cal = calibrate_target(specs[name], store_path, run_dir=args.run, space_digest=sp.digest())
            for key, rep in cal["models"].items():
                result["calibration"][f"{name}/{key}"] = rep
    return result


def _host_prediction(target: str, row: dict[str, Any], space: Any) -> float | None:
    """Predicted latency from the target's current calibrated model (the user's model file),
    falling back to what the device predicted from its bundle."""
    import json

    from edge_eas.cost.latency import model_for, model_key
    from edge_eas.common.paths import models_dir
    from edge_eas.net.space import Arch
    path = models_dir() / f"{target}.json"
    if path.is_file():
        model = model_for(json.loads(path.read_text()), model_key(row["engine"], row["threads"]), space)
        if model is not None:
            return model.predict(space, Arch.from_dict(row["arch"]))
    return row["predicted_ms"]


def _deployed_bundle(targets: list[Target], args: BenchRequest) -> Path:
    """Without --bundle, benchmark what is deployed: fetch it from the first remote target."""
    from edge_eas.common.paths import home
    remote = [t for t in targets if not t.local]
    if len(remote) != len(targets):
        raise UserError("--bundle is required for the local target (e.g. --bundle model.eas)")
    from edge_eas.remote.ssh_options import ssh_options
    from edge_eas.remote.ssh_runner import SSHRunner
    runner = SSHRunner(remote[0], ssh_options(remote[0], args))
    try:
        return runner.fetch_deployed_bundle(home() / "deployed" / f"{remote[0].name}.eas")
    finally:
        runner.close()
