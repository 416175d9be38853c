"""`edge_eas bench` behind the CLI, in three steps: plan (the targets resolved once, the bundle,
its scenarios, each device's work), run the devices (bounded concurrency for fleets, every
measurement stored as it arrives), then report and optionally calibrate."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_eas.common.console import info
from edge_eas.common.paths import default_store, home, models_file
from edge_eas.cost.latency_models import LatencyModels
from edge_eas.cost.store import MeasurementStore
from edge_eas.devices.targets import Target, load_target
from edge_eas.errors import UserError
from edge_eas.format.bundle_reader import Bundle, BundleError, open_bundle
from edge_eas.net.space import Arch, SearchSpace
from edge_eas.remote.bench import DeviceReport, LocalRunner, bench_device, bench_run_id, profile_device, reference_args
from edge_eas.remote.prepare import prepared_device
from edge_eas.remote.scenarios import budget_column, in_budget, local_model_args, make_scenarios, target_model
from edge_eas.remote.ssh_options import SSHOverrides, ssh_options
from edge_eas.runtime.agent.messages import MeasurementLine, ScenarioError


@dataclass(frozen=True)
class BenchRequest:
    """What a bench asks for, as data: `edge_eas bench` builds it from its flags, the quick start
    and the benchmarks build it directly. `ssh` overrides the targets' SSH connection."""

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
    ssh: SSHOverrides = field(default_factory=SSHOverrides)
    budget_kind: str = "mflops"  # ms: spread over the (first) target's calibrated latency model's range
    min_accuracy: float | None = None  # a fraction: scenarios ask for it instead of a budget


@dataclass(frozen=True)
class DeviceWork:
    """One device's share of a bench: its target (board resolved), the engine and threads it
    runs, and the bench run its measurements are filed under (what resuming looks up)."""

    target: Target
    engine: str
    threads: int | None
    run_id: str


@dataclass(frozen=True)
class BenchPlan:
    """Everything decided before the first device is measured."""

    request: BenchRequest
    bundle_path: Path
    bundle: Bundle
    space: SearchSpace
    scenarios: list[dict[str, Any]]
    store: Path
    devices: list[DeviceWork]
    concurrency: int


def load_targets(spec: str) -> tuple[list[Target], list[Target]]:
    """`--target a,b` read once: (the targets it names, the devices they stand for, a fleet's
    members in its place)."""
    named: list[Target] = []
    devices: list[Target] = []
    for name in [s.strip() for s in spec.split(",") if s.strip()]:
        t = load_target(name)
        named.append(t)
        devices.extend(load_target(m) for m in t.members) if t.is_fleet else devices.append(t)
    if not devices:
        raise UserError("--target is empty")
    return named, devices


def expand_targets(spec: str) -> list[Target]:
    return load_targets(spec)[1]


def make_runner(target: Target, bundle: Path, ssh: SSHOverrides):  # type: ignore[no-untyped-def]
    if target.local:
        return LocalRunner(bundle, python=target.python or None, device_id=target.name)
    from edge_eas.remote.ssh_runner import SSHRunner  # paramiko (the remote extra): only for SSH targets
    return SSHRunner(target, ssh_options(target, ssh), bundle=bundle)


def resolve_boards(targets: list[Target], ssh: SSHOverrides) -> list[Target]:
    """Generic targets (`--target jetson`) as the profile of the board each reaches, so their
    measurements are filed per board type (boards.py); every remote device's Python is checked."""
    out = []
    for t in targets:
        if t.board_detect and t.connection is not None:
            from edge_eas.remote.device_steps import resolve_target  # paramiko (the remote extra), as below
            from edge_eas.remote.ssh import SSHSession  # paramiko: `bench --target local` runs without it
            with SSHSession(t.connection, ssh_options(t, ssh), python=t.python) as s:
                t, warnings = resolve_target(s, t)
            for w in warnings:
                info(f"[{t.name}] warning: {w}")
        out.append(t)
    return out


def plan_bench(req: BenchRequest) -> BenchPlan:
    """Resolve the targets (once), the bundle, the scenarios and each device's work; file the
    bundle's space in the store (calibration needs it)."""
    named, devices = load_targets(req.target)
    targets = resolve_boards(devices, req.ssh)
    if req.runs < 30:
        raise UserError("--runs must be >= 30 (the latency protocol's minimum)")
    bundle_path = req.bundle if req.bundle is not None else _deployed_bundle(targets, req.ssh)
    try:
        bundle = open_bundle(bundle_path)
    except BundleError as exc:
        raise UserError(str(exc)) from None
    space = SearchSpace.from_dict(bundle.manifest.space)
    first = targets[0]
    latency = None if req.budget_kind != "ms" else target_model(
        first.name, req.engine or first.engine, req.threads or first.threads, space)
    if req.min_accuracy is not None and bundle.manifest.accuracy is None:
        raise UserError(f"{bundle_path} carries no accuracy predictor, so its scenarios cannot take accuracy "
                        f"targets: run `edge_eas fit-accuracy RUN` and export the bundle again")
    scenarios = make_scenarios(space, len(bundle.manifest.class_names), req.scenarios, req.seed,
                               kind=req.budget_kind, latency=latency, min_accuracy=req.min_accuracy)
    store = req.store or default_store()
    with MeasurementStore(store) as st:
        st.put_bundle(bundle.sha256, bundle.manifest.space, bundle.manifest.class_names)
    limit = req.concurrency or max([t.concurrency for t in named if t.is_fleet] or [4])
    work = []
    for t in targets:
        engine, threads = req.engine or t.engine, req.threads or t.threads
        work.append(DeviceWork(t, engine, threads, bench_run_id(bundle.sha256, scenarios, engine, threads)))
    return BenchPlan(request=req, bundle_path=bundle_path, bundle=bundle, space=space, scenarios=scenarios,
                     store=store, devices=work, concurrency=max(1, min(len(targets), limit)))


def run_devices(plan: BenchPlan) -> dict[str, DeviceReport]:
    """Bench every device, at most `plan.concurrency` at a time; each one's summary is told as
    it finishes."""
    lock = threading.Lock()
    results: dict[str, DeviceReport] = {}

    def one(work: DeviceWork) -> None:
        report = bench_one(plan, work, lock)
        name = work.target.name
        with lock:
            results[name] = report
            info(f"[{name}] {report.stored} measured, {report.skipped} already stored"
                 + (f", FAILED: {report.failure}" if report.failure else ""))
            for warning in report.warnings:
                info(f"[{name}] warning: {warning}")

    with ThreadPoolExecutor(max_workers=plan.concurrency) as pool:
        list(pool.map(one, plan.devices))
    return results


def bench_one(plan: BenchPlan, work: DeviceWork, lock: threading.Lock) -> DeviceReport:
    """One device: prepare it if asked, measure what is not yet stored (each measurement is
    stored as it arrives); a device that fails is a report with its failure, not an exception."""
    req, name = plan.request, work.target.name

    def progress(msg: MeasurementLine | ScenarioError) -> None:
        if isinstance(msg, ScenarioError):
            with lock:
                info(f"[{name}] scenario {msg.scenario}: {msg.error}")

    def retrying(attempt: int, reason: str) -> None:
        with lock:
            info(f"[{name}] {reason}; retrying (attempt {attempt}), resuming from what is stored")

    store = MeasurementStore(plan.store)  # one connection per worker thread
    prep: dict[str, Any] = {}
    try:
        runner = make_runner(work.target, plan.bundle_path, req.ssh)
        with prepared_device(runner, prep) if req.prepare else nullcontext():
            hints = store.reference_hints(name, plan.bundle.sha256, work.threads)
            report = bench_device(runner, name, plan.scenarios, store, work.run_id, work.engine, work.threads,
                                  warmup=req.warmup, runs=req.runs, on_result=progress, on_retry=retrying,
                                  extra_args=reference_args(hints) + local_model_args(work.target, req.budget_kind))
    except UserError as exc:
        report = DeviceReport(device=name, target=name, failure=str(exc))
    finally:
        store.close()
    report.bench_run = work.run_id
    report.prepare = prep or None
    return report


def bench_report(plan: BenchPlan, results: dict[str, DeviceReport]) -> dict[str, Any]:
    """The JSON report: each device's summary and its stored rows for this bench run."""
    by_id = {s["id"]: s for s in plan.scenarios}
    devices = []
    with MeasurementStore(plan.store) as store:
        for work in plan.devices:
            t = work.target
            rep = results[t.name]
            rows = store.measurements(bench_run=rep.bench_run, device_id=rep.device, batch_size=None)
            table = [{"scenario": r["scenario"], "classes": r["classes"],
                      **budget_column(by_id[r["scenario"]]), "mflops": r["mflops"],
                      "predicted_ms": _host_prediction(t.name, r, plan.space), "measured_ms": r["latency_ms"],
                      "median_ms": r["median_ms"], "engine": r["engine"], "threads": r["threads"],
                      "in_budget": in_budget(by_id[r["scenario"]], r), **(r["prediction"] or {})}
                     for r in rows if r["scenario"] in by_id]
            devices.append({**rep.to_dict(), "board": t.board, "resolved_from": t.resolved_from,
                            "rows": sorted(table, key=lambda r: r["scenario"])})
    return {"bundle": str(plan.bundle_path), "bundle_sha256": plan.bundle.sha256,
            "untrained": plan.bundle.manifest.untrained, "scenarios": len(plan.scenarios),
            "store": str(plan.store), "devices": devices,
            "failed_devices": [d["device"] for d in devices if d["failure"]]}


def calibrate_devices(plan: BenchPlan, result: dict[str, Any]) -> None:
    """Fill the per-block look-up table on each device that did not fail (nn-Meter / OFA style),
    then refit its latency model; adds `calibration` and `block_profiles` to `result`."""
    from edge_eas.cost.calibration import calibrate_target  # scipy (the host extra): only for --calibrate
    result["calibration"] = {}
    result["block_profiles"] = {}
    failed = set(result["failed_devices"])
    digest = plan.space.digest()
    for work in plan.devices:
        name = work.target.name
        if name in failed:
            continue
        with MeasurementStore(plan.store) as store:
            try:
                result["block_profiles"][name] = profile_device(
                    make_runner(work.target, plan.bundle_path, plan.request.ssh), name, store, digest, work.engine,
                    work.threads, runs=30,
                    reference_hints=store.reference_hints(name, plan.bundle.sha256, work.threads))
            except Exception as exc:  # the whole-network measurements still calibrate the model
                info(f"[{name}] block profiling failed ({exc}); calibrating from measurements only")
    specs = {w.target.name: w.target for w in plan.devices}
    for name in sorted(set(specs) - failed):
        cal = calibrate_target(specs[name], plan.store, run_dir=plan.request.run, space_digest=digest)
        for key, rep in cal["models"].items():
            result["calibration"][f"{name}/{key}"] = rep


def run_bench(req: BenchRequest) -> dict[str, Any]:
    """plan -> run the devices -> report (-> calibrate)."""
    plan = plan_bench(req)
    result = bench_report(plan, run_devices(plan))
    if req.calibrate:
        calibrate_devices(plan, result)
    return result


def _host_prediction(target: str, row: dict[str, Any], space: SearchSpace) -> float | None:
    """Predicted latency from the target's current calibrated model (the user's model file),
    falling back to what the device predicted from its bundle."""
    model = LatencyModels.read(models_file(target)).for_space(space).get(row["engine"], row["threads"])
    if model is not None:
        return model.predict(space, Arch.from_dict(row["arch"]))
    return row["predicted_ms"]


def _deployed_bundle(targets: list[Target], ssh: SSHOverrides) -> Path:
    """Without --bundle, benchmark what is deployed: fetch it from the first remote target."""
    remote = [t for t in targets if not t.local]
    if len(remote) != len(targets):
        raise UserError("--bundle is required for the local target (e.g. --bundle model.eas)")
    from edge_eas.remote.ssh_runner import SSHRunner  # paramiko (the remote extra): only for SSH targets
    runner = SSHRunner(remote[0], ssh_options(remote[0], ssh))
    try:
        return runner.fetch_deployed_bundle(home() / "deployed" / f"{remote[0].name}.eas")
    finally:
        runner.close()
