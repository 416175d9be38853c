"""The benchmark harness: run the device agent, parse its JSON lines as they stream, and store
each measurement the moment it arrives. A bench run has a stable id (bundle + scenarios +
engine + threads), so running it again resumes: scenarios already stored are skipped.

Runners hide how the agent is reached: `LocalRunner` (a subprocess here) and, in ssh.py,
`SSHRunner` (paramiko). One failing device never stops the others (see fleet.py).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sequence

from edge_eas.cost.store import FIXED, Measurement, MeasurementStore, fixed_key
from edge_eas.errors import AgentFailure, DeviceRefused
from edge_eas.runtime.agent.messages import BlockProfile, Done, Fatal, Hello, MeasurementLine, ScenarioError, parse_line, to_dict

__all__ = ["AgentFailure", "DeviceReport", "LocalRunner", "Runner", "bench_device", "bench_run_id", "profile_device"]


class Runner(Protocol):
    device_id: str

    def prepare_scenarios(self, scenarios: list[dict[str, Any]]) -> str:
        """Put the scenarios file where the agent can read it; return its path there."""
        ...

    def bundle_path(self) -> str:
        ...

    def stream(self, agent_args: list[str]) -> Iterator[str]:
        """Run `python -m edge_eas.runtime *agent_args` on the device, yield stdout lines."""
        ...


def bench_run_id(bundle_sha: str, scenarios: Sequence[dict[str, Any]], engine: str, threads: int | None) -> str:
    key = json.dumps([bundle_sha, list(scenarios), engine, threads], sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


@dataclass
class DeviceReport:
    device: str
    target: str
    stored: int = 0
    resent: int = 0
    skipped: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    failure: str | None = None
    attempts: int = 0
    hello: dict[str, Any] | None = None
    bench_run: str | None = None               # the run id its measurements are stored under
    prepare: dict[str, Any] | None = None      # what `--prepare` set on the device (and restored)
    warnings: list[str] = field(default_factory=list)  # the agent's, once each (e.g. threads not honoured)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["bench_prepare"] = d.pop("prepare")  # the report's JSON field name since it was added
        return d


class LocalRunner:
    """The agent as a subprocess of this machine (the `local` target)."""

    def __init__(self, bundle: Path, python: str | None = None, device_id: str = "local") -> None:
        self._bundle = Path(bundle).resolve()
        self.python = python or sys.executable
        self.device_id = device_id
        self._tmp = tempfile.TemporaryDirectory(prefix="edge-eas-bench-")

    def bundle_path(self) -> str:
        return str(self._bundle)

    def prepare_scenarios(self, scenarios: list[dict[str, Any]]) -> str:
        path = Path(self._tmp.name) / "scenarios.json"
        path.write_text(json.dumps(scenarios))
        return str(path)

    def stream(self, agent_args: list[str]) -> Iterator[str]:
        proc = subprocess.Popen([self.python, "-m", "edge_eas.runtime", *agent_args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stderr is not None
        try:
            yield from proc.stdout
        finally:
            proc.stdout.close()
            err = proc.stderr.read()
            proc.stderr.close()
            rc = proc.wait()
        if rc not in (0, 3):  # 3: some scenarios failed, reported as error lines
            raise AgentFailure(f"device agent exited with status {rc}: {err.strip().splitlines()[-1] if err.strip() else ''}")


def bench_device(runner: Runner, target: str, scenarios: list[dict[str, Any]], store: MeasurementStore,
                 bench_run: str, engine: str = "auto", threads: int | None = None, warmup: int = 10, runs: int = 50,
                 retries: int = 3, on_result: Callable[[MeasurementLine | ScenarioError], None] | None = None,
                 extra_args: Sequence[str] = (),
                 on_retry: Callable[[int, str], None] | None = None) -> DeviceReport:
    """Measure every scenario not yet stored for (bench_run, device); resume after failures.
    `on_retry(next_attempt, reason)` is told before each retry (the user sees a link loss)."""
    report = DeviceReport(device=runner.device_id, target=target)
    scen_path = None
    while True:
        done = store.scenarios_done(bench_run, runner.device_id)
        todo = [s for s in scenarios if s["id"] not in done]
        report.skipped = len(scenarios) - len(todo) - report.stored
        if not todo:
            return report
        report.attempts += 1
        try:
            if scen_path is None:
                scen_path = runner.prepare_scenarios(scenarios)
            # the device id keeps measurement ids unique per device: identical boards running
            # the same bench must not be dropped as re-sends of each other
            agent_run = f"{bench_run}@{runner.device_id}"
            args = ["--bundle", runner.bundle_path(), "--scenarios", scen_path, "--engine", engine,
                    "--warmup", str(warmup), "--runs", str(runs), "--run-id", agent_run,
                    "--skip", ",".join(sorted(done)), *extra_args]
            if threads:
                args += ["--threads", str(threads)]
            finished = _consume(runner.stream(args), runner.device_id, target, bench_run, store, report, on_result)
        except DeviceRefused as exc:  # host key, credentials, deployment: retrying cannot help
            report.failure = str(exc)
            return report
        except Exception as exc:  # link loss, agent crash: retry, resuming from what is stored
            report.failure = f"{type(exc).__name__}: {exc}"
        else:
            if finished:
                report.failure = None
                return report
            report.failure = "agent output ended before 'done' (device rebooted or agent killed)"
        if report.attempts > retries:
            return report
        if on_retry:
            on_retry(report.attempts + 1, report.failure)


def reference_args(hints: dict[str, float]) -> list[str]:
    """The agent's --reference-ms arguments for the speed-reference bests the store holds."""
    return [a for engine, ms in sorted(hints.items()) for a in ("--reference-ms", f"{engine}={ms:.6g}")]


def profile_device(runner: Runner, target: str, store: MeasurementStore, space_digest: str, engine: str = "auto",
                   threads: int | None = None, warmup: int = 5, runs: int = 30,
                   reference_hints: dict[str, float] | None = None) -> int:
    """Micro-benchmark every block config on the device (agent --profile-blocks) into the store's
    look-up table for (target, engine, threads); the fixed term is filed under the bundle's
    space (`space_digest`). Returns how many entries were stored."""
    args = ["--bundle", runner.bundle_path(), "--profile-blocks", "--engine", engine, "--warmup", str(warmup),
            "--runs", str(runs), *reference_args(reference_hints or {})]
    if threads:
        args += ["--threads", str(threads)]
    stored = 0
    for raw in runner.stream(args):
        msg = parse_line(raw)
        if isinstance(msg, BlockProfile):
            key = fixed_key(space_digest) if msg.block_key == FIXED else msg.block_key
            # filed under the threads that ran (the agent reads them back), not those asked for
            store.put_block_profile(target, msg.engine, msg.threads, key, float(msg.median_ms), to_dict(msg))
            stored += 1
        elif isinstance(msg, Fatal):
            raise AgentFailure(msg.error or "device agent failed")
    return stored


def _consume(lines: Iterator[str], device: str, target: str, bench_run: str, store: MeasurementStore,
             report: DeviceReport, on_result: Callable[[MeasurementLine | ScenarioError], None] | None) -> bool:
    for raw in lines:
        msg = parse_line(raw)  # None: library chatter (e.g. "INFO: Created TensorFlow Lite XNNPACK delegate")
        if isinstance(msg, Hello):
            report.hello = to_dict(msg)
        elif isinstance(msg, MeasurementLine):
            if store.insert(Measurement.from_agent(to_dict(msg), device, target, bench_run)):
                report.stored += 1
            else:
                report.resent += 1
            report.warnings += [w for w in msg.warnings if w not in report.warnings]
            if on_result:
                on_result(msg)
        elif isinstance(msg, ScenarioError):
            report.errors.append(to_dict(msg))
            if on_result:
                on_result(msg)
        elif isinstance(msg, Fatal):  # the agent refused the bundle, models or scenarios: retrying cannot help
            raise DeviceRefused(f"device agent: {msg.error or 'failed'}")
        elif isinstance(msg, Done):
            return True
    return False
