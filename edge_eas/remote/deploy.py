"""`edge_eas deploy`: put the runtime and a bundle on a device over SSH, offline and atomically.

On the device, under the target's runtime_dir:

    venv/            the runtime (edge_eas wheel built on the host + numpy, cryptography wheels, and
                     an engine wheel: ai-edge-litert, or tflite-runtime where numpy<2), installed
                     with `pip --no-index`: the device needs no internet. Where the device's own
                     python has Debian's python3-numpy, the venv uses it (--system-site-packages):
                     a numpy built for the board, and no 15 MB wheel to upload and unpack
    wheels/          the uploaded wheels (kept, so a re-deploy uploads only what changed)
    installed.json   hash of the installed edge_eas wheel: an unchanged runtime is not reinstalled
    releases/<sha16>/model.eas, smoke.json     one directory per bundle, immutable once written, except
                     latency_models.json(.sig): the target's calibrated models, pushed by every deploy
    current -> releases/<sha16>                switched by renaming a temporary symlink (atomic)
    previous -> releases/<sha16>               what `--rollback` goes back to

Uploads go to a temporary name, are hash-verified on the device and renamed; a bundle that is
already on the device (same SHA-256) is not transferred again. A deploy whose smoke
specialisation fails is rolled back automatically.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from edge_eas.common.console import info
from edge_eas.common.paths import models_file
from edge_eas.cost.latency_models import FILE_NAME as MODELS_FILE
from edge_eas.errors import UserError
from edge_eas.net.budget import Budget
from edge_eas.runtime.agent.messages import Fatal, Hello, MeasurementLine, ScenarioError, parse_line
from edge_eas.devices.targets import Target
from edge_eas.remote.layout import DeviceLayout, sha256_file
from edge_eas.remote.ssh import SSHSession
from edge_eas.remote.device_steps import resolve_target, run_helper
from edge_eas.remote.ssh_options import SSHOptions
from edge_eas.remote.trust_store import StorePlan, kept_pins, plan_store
from edge_eas.remote.install_plan import RUNTIME_DEPS, RuntimePlan, last_line, plan_runtime, runtime_wheel
from edge_eas.remote.wheels import CHECKS, SCHEMA_DIST, SCHEMA_MODULE, DevicePlatform, engine_families, family_of, wheel_name
from edge_eas.remote.scenarios import make_scenarios
from edge_eas.format.bundle_reader import BundleError, open_bundle
from edge_eas.net.space import SearchSpace

LONG_STEP_S = 900.0  # venv creation and pip install on a slow board
SMOKE_RUNS, SMOKE_WARMUP = 30, 2

@dataclass
class DeployReport:
    target: str
    host: str
    runtime_dir: str
    bundle_sha256: str | None = None
    current: str | None = None
    previous: str | None = None
    rolled_back: bool = False
    switched: bool = False
    runtime_installed: bool = False
    engine_package: str | None = None  # the engine wheel installed on the device; None: numpy engine only
    providers: list[str] | None = None  # onnxruntime's execution providers there (the smoke line names the one that ran)
    numpy_source: str = "wheel"        # "system": Debian's python3-numpy through --system-site-packages
    warnings: list[str] = field(default_factory=list)
    board: dict[str, Any] | None = None    # what the device reported (boards.BoardInfo)
    resolved_from: str | None = None       # the generic target (jetson, raspberry-pi) `target` was picked for
    bundle_uploaded: bool = False
    trust: dict[str, Any] = field(default_factory=dict)  # the device's trust store after this deploy
    transferred_bytes: int = 0
    device: dict[str, Any] = field(default_factory=dict)
    smoke: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---- device side ----------------------------------------------------------------------------
class Deployer:
    """One deploy (or rollback) to one device over one SSH session."""

    def __init__(self, target: Target, options: SSHOptions, wheels_dir: Path | None = None,
                 trust_keys: tuple[Path, ...] = (), allow_unsigned: bool = False) -> None:
        if target.local or target.connection is None:
            raise UserError(f"target {target.name} is local: nothing to deploy (bench runs the agent here)")
        self.target = target
        self.options = options
        self.wheels_dir = wheels_dir
        self.trust_keys = [*target.trust_keys, *trust_keys]
        self.allow_unsigned = allow_unsigned

    def deploy(self, bundle: Path) -> DeployReport:
        sha, smoke, signed = _check_bundle(bundle)
        # refused here, before a byte is sent, if the device's trust store would refuse it
        plan = plan_store(self.trust_keys, bundle, sha, signed, self.allow_unsigned)
        start = time.monotonic()
        with self._session() as s:
            # the board (a generic target becomes its profile) and its Python, before anything is copied
            self.target, checked = resolve_target(s, self.target)
            layout = DeviceLayout(s.expand(self.target.runtime_dir))
            report = DeployReport(self.target.name, s.label, layout.root, bundle_sha256=sha,
                                  board=self.target.board, resolved_from=self.target.resolved_from, warnings=checked)
            release = f"releases/{sha[:16]}"
            probe = self._helper(s, "probe", layout.root, release)
            report.device = {k: probe[k] for k in ("python", "machine", "libc")}
            if probe.get("trust") and not plan.active:
                raise UserError(f"{s.label} has a trust store ({layout.root}/trust) but target {self.target.name} "
                                f"names no [trust] keys: add them to the target (or --trust-key KEY.pub)")
            plan = replace(plan, pins=tuple(sorted(set(plan.pins) | set(kept_pins(
                probe.get("trust_store"), [probe.get("current"), probe.get("previous")])))))
            report.runtime_installed = self._ensure_runtime(s, layout, probe, report)
            if probe["release_sha256"] != sha:
                s.upload(bundle, f"{layout.root}/{release}/model.eas")
                report.bundle_uploaded = True
            if not probe["release_smoke"]:
                s.write_bytes(json.dumps(smoke).encode(), f"{layout.root}/{release}/smoke.json")
            self._push_latency_models(s, f"{layout.root}/{release}", plan.active, report)
            self._install_trust(s, layout, plan, probe)
            report.trust = plan.summary(self.allow_unsigned)
            report.warnings += plan.warnings
            switched = self._helper(s, "activate", layout.root, release)
            report.switched, report.current, report.previous = switched["changed"], release, switched["previous"]
            try:
                report.smoke = self._smoke(s, layout, self._smoke_engine(report))
            except UserError as exc:
                if switched["changed"] and switched["previous"]:
                    self._helper(s, "rollback", layout.root)
                    raise UserError(f"{exc}; rolled back to {switched['previous']}") from None
                raise
            report.transferred_bytes = s.bytes_uploaded
        report.seconds = round(time.monotonic() - start, 3)
        return report

    def rollback(self) -> DeployReport:
        start = time.monotonic()
        with self._session() as s:
            self.target, checked = resolve_target(s, self.target)
            layout = DeviceLayout(s.expand(self.target.runtime_dir))
            report = DeployReport(self.target.name, s.label, layout.root, rolled_back=True, board=self.target.board,
                                  resolved_from=self.target.resolved_from, warnings=checked)
            swapped = self._helper(s, "rollback", layout.root)
            report.switched, report.current, report.previous = True, swapped["current"], swapped["previous"]
            report.bundle_sha256 = s.sha256(layout.bundle)
            installed = json.loads(s.read_text(f"{layout.root}/installed.json") or "{}")
            report.engine_package = installed.get("engine_installed")
            report.providers = installed.get("providers")
            try:
                report.smoke = self._smoke(s, layout, self._smoke_engine(report))
            except UserError as exc:  # e.g. the trust store no longer accepts the old release: keep what ran
                self._helper(s, "rollback", layout.root)
                raise UserError(f"{exc}; kept {swapped['previous']}") from None
            report.transferred_bytes = s.bytes_uploaded
        report.seconds = round(time.monotonic() - start, 3)
        return report

    def _push_latency_models(self, s: SSHSession, release_dir: str, checks_signatures: bool,
                             report: DeployReport) -> None:
        """The target's calibrated latency models (and their signature) beside the bundle, where
        the agent reads them; nothing when this host has none for the target. Unsigned models
        are not shipped to a device that checks signatures: its agent would refuse them."""
        local = models_file(self.target.name)
        if not local.is_file():
            return
        sig = Path(f"{local}.sig")
        if checks_signatures and not sig.is_file():
            report.warnings.append(f"latency models {local} are unsigned and {s.label} checks signatures: not shipped "
                                   f"(sign them: edge_eas calibrate --target {self.target.name} --sign KEYFILE)")
            return
        remote = f"{release_dir}/{MODELS_FILE}"  # LatencyModels.beside(bundle) on the device
        for path, dest in ((sig, f"{remote}.sig"), (local, remote)):  # unchanged files are not sent again
            if path.is_file() and s.sha256(dest) != sha256_file(path):
                s.write_bytes(path.read_bytes(), dest)

    def _install_trust(self, s: SSHSession, layout: DeviceLayout, plan: StorePlan, probe: dict[str, Any]) -> None:
        """Write the store into its immutable, content-named directory, then switch the link."""
        if not plan.active:
            return
        if probe.get("trust") != plan.dirname:
            for name, data in plan.files().items():
                s.write_bytes(data, f"{layout.root}/{plan.dirname}/{name}")
            self._helper(s, "trust", layout.root, plan.dirname)

    def _session(self) -> SSHSession:
        assert self.target.connection is not None
        return SSHSession(self.target.connection, self.options, python=self.target.python)

    def _helper(self, s: SSHSession, *args: str) -> dict[str, Any]:
        return run_helper(s, self.target.python, *args)

    def _ensure_runtime(self, s: SSHSession, layout: DeviceLayout, probe: dict[str, Any],
                        report: DeployReport) -> bool:
        """Create the venv and install the runtime (+ engine) offline, unless exactly this is
        installed. Returns whether it was installed now."""
        dev = DevicePlatform.from_probe(probe)
        wheel = runtime_wheel(self.wheels_dir)
        plan = plan_runtime(dev, self.target.engine, self.wheels_dir)
        report.numpy_source = "system" if plan.system_numpy else "wheel"
        want = {"wheel": wheel.name, "wheel_sha256": sha256_file(wheel), **plan.want()}
        installed = probe.get("installed") or {}
        if (probe["venv"] and all(installed.get(k) == v for k, v in want.items())
                and bool(probe.get("venv_system_site")) == plan.system_numpy):
            report.engine_package = installed.get("engine_installed")
            report.providers = installed.get("providers")
            report.warnings += installed.get("warnings", [])
            return False
        remote_wheels = f"{layout.root}/wheels"
        for w in [*plan.wheels, wheel]:
            self._put_wheel(s, w, f"{remote_wheels}/{w.name}")
        venv = f"{layout.root}/venv"
        timeout = max(self.options.command_timeout, LONG_STEP_S)
        venv_argv = [self.target.python, "-m", "venv", *(["--system-site-packages"] if plan.system_numpy else [])]
        if not probe["venv"]:
            info(f"[{self.target.name}] creating {venv} with {self.target.python}"
                 + (" (Debian's numpy via --system-site-packages)" if plan.system_numpy else ""))
            s.check([*venv_argv, venv], "creating the runtime venv", timeout)
        elif bool(probe.get("venv_system_site")) != plan.system_numpy:
            info(f"[{self.target.name}] recreating {venv}: system site-packages {'on' if plan.system_numpy else 'off'}")
            s.check([*venv_argv, "--clear", venv], "recreating the runtime venv", timeout)
        pip = [layout.venv_python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-index",
               "--find-links", remote_wheels]
        remote_wheel = f"{remote_wheels}/{wheel.name}"
        info(f"[{self.target.name}] installing {wheel.name} + {', '.join(RUNTIME_DEPS)} offline"
             + (f" (numpy {plan.numpy_version} from the system)" if plan.system_numpy else ""))
        s.check([*pip, "--no-deps", "--force-reinstall", remote_wheel], "installing the edge_eas wheel", timeout)
        s.check([*pip, f"{remote_wheel}[runtime]"], "installing the runtime dependencies", timeout)
        report.engine_package = self._install_engine(s, layout, plan, pip, report, timeout)
        done = {**want, "engine_installed": report.engine_package, "providers": report.providers,
                "warnings": report.warnings}
        s.write_bytes(json.dumps(done, indent=1).encode(), f"{layout.root}/installed.json")
        return True

    def _install_engine(self, s: SSHSession, layout: DeviceLayout, plan: RuntimePlan, pip: list[str],
                        report: DeployReport, timeout: float) -> str | None:
        """Try the plan's engine wheels in order (onnxruntime ones, then TFLite ones): install,
        check the runtime can use it, else uninstall and try the next. Falling back to another
        family than the target's first is a warning; none working is one too: numpy always works."""
        failed: list[str] = []
        for cand in plan.engines.candidates:
            for w in cand.wheels:
                self._put_wheel(s, w, f"{layout.root}/wheels/{w.name}")
            pkgs = [cand.package, "flatbuffers"]
            if any(wheel_name(w) == SCHEMA_DIST for w in cand.wheels):
                pkgs.append(SCHEMA_MODULE)  # tflite-runtime's missing TFLite schema
            info(f"[{self.target.name}] installing {cand.package} offline")
            res = s.run([*pip, *pkgs], timeout)
            if res.rc == 0:
                res = s.run([layout.venv_python, "-c", CHECKS[cand.family]], timeout)
                if res.rc == 0:
                    if cand.family != plan.engines.families[0]:
                        self._warn(report, plan.engines.fallback_warning(cand.family, failed))
                    report.providers = (json.loads(res.stdout.strip().splitlines()[-1])
                                        if cand.family == "onnxruntime" else None)
                    return cand.package
                s.run([*pip[:3], "uninstall", "-y", "-q", *pkgs[:1], *pkgs[2:]], timeout)
            failed.append(f"{cand.package} does not work there: {last_line(res.stderr)}")
        if plan.engines.families:
            self._warn(report, plan.engines.warning(failed))
        return None

    def _warn(self, report: DeployReport, msg: str) -> None:
        report.warnings.append(msg)
        info(f"[{self.target.name}] warning: {msg}")

    def _smoke_engine(self, report: DeployReport) -> str:
        """The target's engine, or what the device got instead: TFLite for an onnxruntime target
        without onnxruntime, numpy where no engine wheel works."""
        families = engine_families(self.target.engine)
        if not families:
            return self.target.engine  # numpy, torch, executorch: nothing of deploy's to check
        got = family_of(report.engine_package) if report.engine_package else None
        if got == families[0]:
            return self.target.engine
        if got is not None:
            return "tflite"
        if self.target.engine == "auto":
            return "auto"  # the device picks what it has: numpy
        report.warnings.append(f"target engine {self.target.engine!r} is not available on the device: smoke "
                               "test ran numpy")
        return "numpy"

    @staticmethod
    def _put_wheel(s: SSHSession, local: Path, remote: str) -> None:
        try:
            if s.sftp.stat(remote).st_size == local.stat().st_size and s.sha256(remote) == sha256_file(local):
                return
        except FileNotFoundError:
            pass
        s.upload(local, remote)

    def _smoke(self, s: SSHSession, layout: DeviceLayout, engine: str | None = None) -> dict[str, Any]:
        """Specialise and time one scenario with the deployed runtime: proves the deploy works."""
        argv = [layout.venv_python, "-m", "edge_eas.runtime", "--bundle", layout.bundle, "--scenarios",
                f"{layout.current}/smoke.json", "--runs", str(SMOKE_RUNS), "--warmup", str(SMOKE_WARMUP),
                "--engine", engine or self.target.engine, "--run-id", "deploy-smoke",
                "--heartbeat", f"{self.options.heartbeat_s:g}"]
        if self.target.threads:
            argv += ["--threads", str(self.target.threads)]
        res = s.run(argv)
        msgs = [m for m in map(parse_line, res.stdout.splitlines()) if m is not None]
        hello = next((m for m in msgs if isinstance(m, Hello)), None)
        meas = next((m for m in msgs if isinstance(m, MeasurementLine)), None)
        if res.rc != 0 or hello is None or meas is None:
            bad = next((m.error for m in msgs if isinstance(m, (ScenarioError, Fatal))), None)
            raise UserError(f"smoke specialisation failed on {s.label} (exit {res.rc}): "
                            f"{bad or last_line(res.stderr)}")
        env = hello.environment
        return {"hostname": env.get("hostname"), "python": env.get("python"),
                "numpy": env.get("versions", {}).get("numpy"), "versions": env.get("versions", {}),
                "runtime_version": hello.runtime_version, "bundle_sha256": hello.bundle_sha256,
                "classes": meas.classes, "budget_mflops": _mflops(meas.scenario_budget()),
                "mflops": meas.mflops, "engine": meas.engine, "median_ms": meas.stats["median_ms"],
                "p90_ms": meas.stats.get("p90_ms")}


def _mflops(budget: Budget | None) -> float | None:
    """The smoke scenario's MFLOPs budget, as deploy reports have always shown it."""
    return budget.value if budget is not None and budget.kind == "mflops" else None


def _check_bundle(bundle: Path) -> tuple[str, list[dict[str, Any]], bool]:
    """Verify the bundle here before shipping it; return its SHA-256, one smoke scenario and
    whether it is signed."""
    try:
        b = open_bundle(bundle)
    except BundleError as exc:
        raise UserError(str(exc)) from None
    except OSError as exc:
        raise UserError(f"cannot read bundle {bundle}: {exc.strerror or exc}") from None
    space = SearchSpace.from_dict(b.manifest.space)
    scenario = make_scenarios(space, len(b.manifest.class_names), 1, seed=0)
    return b.sha256, [dict(scenario[0], id="smoke")], b.signature is not None


def deploy(target: Target, options: SSHOptions, bundle: Path | None, rollback: bool = False,
           wheels_dir: Path | None = None, trust_keys: tuple[Path, ...] = (),
           allow_unsigned: bool = False) -> DeployReport:
    d = Deployer(target, options, wheels_dir, trust_keys, allow_unsigned)
    if rollback:
        return d.rollback()
    if bundle is None:
        raise UserError("--bundle is required (or --rollback)")
    return d.deploy(bundle)
