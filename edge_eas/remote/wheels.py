"""Which inference engine a device gets, as wheels fetched on the host for the device's platform
(the device installs with `pip --no-index`: it needs no internet).

TFLite: ai-edge-litert is preferred; tflite-runtime (numpy<2 only: it is built against NumPy 1.x)
is the fallback for devices LiteRT has no wheel for, e.g. older Pythons. tflite-runtime ships no
TFLite schema, which the tflite engine needs to write models, so the host packages its own schema
(from its ai-edge-litert) as a tiny pure-Python wheel, `edge_eas_tflite_schema`.
ONNX Runtime: onnxruntime-gpu where `--wheels DIR` holds one (a Jetson's comes from its JetPack's
index, not PyPI), else PyPI's onnxruntime (CPU provider); a target that wants it and gets neither
falls back to TFLite, and says so. When no engine fits, deploy warns and the device runs numpy.
"""

from __future__ import annotations

import base64
import hashlib
import platform
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from email.parser import Parser
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from edge_eas.common.console import info
from edge_eas.runtime.engines import split_engine

SCHEMA_MODULE = "edge_eas_tflite_schema"
SCHEMA_DIST = canonicalize_name(SCHEMA_MODULE)
# engine family -> its wheels, best first; `fetched` ones come from the package index for the device
FAMILIES = {"onnxruntime": ("onnxruntime-gpu", "onnxruntime"), "tflite": ("ai-edge-litert", "tflite-runtime")}
_FETCHED = ("ai-edge-litert", "tflite-runtime", "onnxruntime")  # onnxruntime-gpu: only from --wheels DIR
# what the deployed runtime must be able to do with a family's wheel (onnxruntime's prints its providers)
CHECKS = {
    "tflite": ("from edge_eas.runtime.engines.tflite_engine import load_interpreter_class, load_schema; "
               "load_interpreter_class(); load_schema()"),
    "onnxruntime": ("import json; from edge_eas.runtime.engines.onnx_engine import load_onnxruntime; "
                    "print(json.dumps(load_onnxruntime().get_available_providers()))"),
}


def engine_families(target_engine: str) -> tuple[str, ...]:
    """The engine families a target's engine wants installed, best first: onnxruntime falls back
    to TFLite; tflite, tflite-int8 and auto want TFLite; numpy, torch, executorch nothing."""
    base = split_engine(target_engine)[0]
    if base == "onnxruntime":
        return ("onnxruntime", "tflite")
    return ("tflite",) if base in ("tflite", "tflite-int8", "auto") else ()


def family_of(package: str) -> str:
    return next(f for f, pkgs in FAMILIES.items() if package in pkgs)
UNAVAILABLE = "unavailable.txt"  # a definitive "no wheel for this platform", cached per platform
_NO_MATCH = ("No matching distribution", "Could not find a version that satisfies")
MIN_NUMPY = ">=1.21"  # the runtime extra's numpy requirement (pyproject.toml)
DISTRO_SITE = "/usr/lib/python3/dist-packages/"  # where Debian-family distros put apt's Python packages


@dataclass(frozen=True)
class DevicePlatform:
    python: str
    version: tuple[int, int]
    machine: str
    libc: tuple[str, str]
    numpy: str | None = None       # numpy version the device's own python imports, if any
    numpy_path: str | None = None

    @classmethod
    def from_probe(cls, probe: dict[str, Any]) -> DevicePlatform:
        major, minor = probe["version"][:2]
        libc = probe.get("libc") or ["", ""]
        sys_np = probe.get("system_numpy") or {}
        return cls(str(probe["python"]), (int(major), int(minor)), str(probe["machine"]), (str(libc[0]), str(libc[1])),
                   sys_np.get("version"), sys_np.get("path"))

    def uses_distro_numpy(self) -> bool:
        """Debian's python3-numpy (apt-managed, built for the board) is there and new enough for
        the runtime: the venv reuses it instead of uploading a numpy wheel. A numpy in some other
        python's site-packages (pyenv, conda) is not taken: its neighbours would leak in too."""
        if not self.numpy or not self.numpy_path or not self.numpy_path.startswith(DISTRO_SITE):
            return False
        return numpy_fits(self.numpy, [Requirement(f"numpy{MIN_NUMPY}")])

    @classmethod
    def host(cls) -> DevicePlatform:
        """This machine, as if it were the device (same-arch devices share its wheels)."""
        libc = platform.libc_ver()
        return cls(platform.python_version(), (sys.version_info[0], sys.version_info[1]), platform.machine(),
                   (libc[0], libc[1]))

    @property
    def tag(self) -> str:
        return f"cp{self.version[0]}{self.version[1]}-{self.machine}-{''.join(self.libc)}"

    def same_as_host(self) -> bool:
        """Same CPU, Python and C library: the host's own `pip download` picks the right wheels."""
        return (self.machine == platform.machine() and self.version == tuple(sys.version_info[:2])
                and self.libc == tuple(platform.libc_ver()))




@dataclass
class EngineCandidate:
    package: str              # pip name
    wheels: list[Path]        # the engine, flatbuffers and their dependencies, never numpy

    @property
    def family(self) -> str:
        return family_of(self.package)


@dataclass
class EngineOptions:
    """Engines worth trying on the device, best first, and why the others were dropped."""
    candidates: list[EngineCandidate] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    families: tuple[str, ...] = ("tflite",)  # what the target wants, best first

    def reasons_for(self, family: str, tried: list[str] = ()) -> str:  # type: ignore[assignment]
        pkgs = FAMILIES[family]
        return "; ".join(r for r in [*self.reasons, *tried] if any(p in r for p in pkgs)) or "none requested"

    def warning(self, tried: list[str] = ()) -> str:  # type: ignore[assignment]
        """Why no engine the target wants installed: the device runs numpy."""
        why = "; ".join([*self.reasons, *tried]) or "none requested"
        what = " or ".join("ONNX Runtime" if f == "onnxruntime" else "TFLite" for f in self.families) or "TFLite"
        return f"no {what} engine for this device ({why}): it runs the numpy engine"

    def fallback_warning(self, family: str, tried: list[str] = ()) -> str:  # type: ignore[assignment]
        """Why the device runs `family` (TFLite) instead of the first family the target wants."""
        first = self.families[0]
        return (f"no {first} for this device ({self.reasons_for(first, tried)}): it runs the {family} engine "
                f"instead")


def wheel_name(path: Path) -> str:
    return canonicalize_name(path.name.split("-", 1)[0])


def wheel_version(path: Path) -> str:
    return path.name.split("-")[1]


def _marker_env(dev: DevicePlatform) -> dict[str, str]:
    return {"python_version": f"{dev.version[0]}.{dev.version[1]}", "python_full_version": dev.python,
            "platform_machine": dev.machine, "sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
            "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}


def requirements(whl: Path, dev: DevicePlatform) -> list[Requirement]:
    """Requires-Dist of a wheel that apply on the device (markers evaluated, extras left out)."""
    with zipfile.ZipFile(whl) as z:
        meta = next((n for n in z.namelist() if n.endswith(".dist-info/METADATA")), None)
        if meta is None:
            return []
        msg = Parser().parsestr(z.read(meta).decode("utf-8", "replace"))
    env, out = _marker_env(dev), []
    for line in msg.get_all("Requires-Dist") or []:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if req.marker is None or req.marker.evaluate(env):
            out.append(req)
    return out


def closure(pkg: str, wheels: list[Path], dev: DevicePlatform) -> list[Path]:
    """The wheels pkg needs from `wheels` (itself and its dependencies, transitively)."""
    by_name = {wheel_name(w): w for w in sorted(wheels)}
    out: dict[str, Path] = {}
    todo = [canonicalize_name(pkg)]
    while todo:
        name = todo.pop()
        if name in out or name not in by_name:
            continue
        out[name] = by_name[name]
        todo += [canonicalize_name(r.name) for r in requirements(by_name[name], dev)]
    return sorted(out.values())


def numpy_requirements(wheels: list[Path], dev: DevicePlatform) -> list[Requirement]:
    """numpy requirements that these wheels declare for the device."""
    return [r for w in wheels for r in requirements(w, dev) if canonicalize_name(r.name) == "numpy"]


def numpy_fits(version: str, reqs: list[Requirement]) -> bool:
    try:
        v = Version(version)
    except InvalidVersion:
        return False
    return all(req.specifier.contains(v, prereleases=True) for req in reqs)


def engine_options(dev: DevicePlatform, numpy_version: str, numpy_pinned: bool, cache: Path,
                   wheels_dir: Path | None, pip_platform_args: list[str],
                   families: tuple[str, ...] = ("tflite",)) -> EngineOptions:
    """Engines of `families` whose wheels exist for the device and accept the numpy it will run
    (its numpy is pinned for the download, so the resolver picks dependency versions that work
    with it), best first."""
    # tflite-runtime is built against NumPy 1.x
    packages = [p for f in families for p in FAMILIES[f] if p != "tflite-runtime" or _major(numpy_version) < 2]
    pin = f"numpy=={numpy_version}" if numpy_pinned else f"numpy<={numpy_version}"
    out = EngineOptions(families=families)
    for pkg in packages:
        if wheels_dir is not None or pkg not in _FETCHED:
            got: list[Path] | str = sorted(wheels_dir.glob("*.whl")) if wheels_dir is not None else []
            if not any(wheel_name(w) == pkg for w in got):
                if wheels_dir is None:
                    continue  # onnxruntime-gpu: only a wheel the user brings (--wheels DIR)
                got = f"no {pkg} wheel in {wheels_dir}"
        else:
            got = fetch(pkg, pin, dev, cache / "engines" / pkg / pin.replace("<=", "-le-").replace("==", "-eq-"),
                        pip_platform_args)
        if isinstance(got, str):
            out.reasons.append(got)
            continue
        # what the engine (and flatbuffers, which the tflite engine imports) pull in; numpy is the
        # device's own, checked against their requirements below
        wheels = sorted({w for w in [*closure(pkg, got, dev), *closure("flatbuffers", got, dev)]
                         if wheel_name(w) != "numpy"})
        unmet = sorted({f"numpy{r.specifier} ({wheel_name(w)})" for w in wheels for r in numpy_requirements([w], dev)
                        if not numpy_fits(numpy_version, [r])})
        if unmet:
            out.reasons.append(f"{pkg} needs {', '.join(unmet)}, the device has numpy {numpy_version}")
            continue
        if pkg == "tflite-runtime" and not any(wheel_name(w) == SCHEMA_DIST for w in wheels):
            schema = schema_wheel(cache / "schema")
            if schema is None:
                out.reasons.append("tflite-runtime lacks the TFLite schema and this host has no ai-edge-litert "
                                   "to take it from")
                continue
            wheels = [*wheels, schema]
        out.candidates.append(EngineCandidate(pkg, wheels))
    return out


def fetch(pkg: str, pin: str, dev: DevicePlatform, dest: Path, pip_platform_args: list[str]) -> list[Path] | str:
    """`pip download` the engine + flatbuffers (+ their dependencies, resolved against the pinned
    numpy) for the device into dest, once; a string says why not. "No wheel for this platform"
    is remembered, network errors are not."""
    marker = dest / UNAVAILABLE
    if marker.is_file():
        return marker.read_text().strip()
    have = sorted(dest.glob("*.whl"))
    if any(wheel_name(w) == pkg for w in have):
        return have
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--only-binary=:all:",
           "--dest", str(dest), *pip_platform_args, pkg, "flatbuffers", pin]
    info(f"fetching {pkg} wheels for the device ({dev.tag})")
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        why = f"no {pkg} wheel for {dev.tag} with {pin}"
        if any(s in res.stderr for s in _NO_MATCH):
            marker.write_text(why + "\n")
            return why
        lines = [ln.strip() for ln in res.stderr.splitlines() if ln.strip()]
        return f"cannot fetch {pkg} for {dev.tag}: {lines[-1] if lines else 'pip failed'}"
    return sorted(dest.glob("*.whl"))


def schema_wheel(dest: Path) -> Path | None:
    """A pure-Python wheel holding the host's TFLite schema module (from ai-edge-litert), so a
    tflite-runtime device can write .tflite models. None when the host has no ai-edge-litert."""
    try:  # ai-edge-litert (the tflite extra) may be missing or broken here
        from ai_edge_litert import schema_py_generated as schema  # type: ignore[import-not-found]
        version = metadata.version("ai-edge-litert")
    except Exception:  # not installed, or broken here: the engine just is not offered
        return None
    src = Path(schema.__file__).read_bytes()
    tag = hashlib.sha256(src).hexdigest()[:8]
    whl = dest / f"{SCHEMA_MODULE}-{version}+{tag}-py3-none-any.whl"
    if whl.is_file():
        return whl
    dest.mkdir(parents=True, exist_ok=True)
    dist = f"{SCHEMA_MODULE}-{version}+{tag}.dist-info"
    files = {f"{SCHEMA_MODULE}.py": src,
             f"{dist}/METADATA": (f"Metadata-Version: 2.1\nName: {SCHEMA_MODULE}\nVersion: {version}+{tag}\n"
                                  f"Summary: TFLite flatbuffer schema (from ai-edge-litert) for tflite-runtime devices\n"
                                  f"Requires-Dist: flatbuffers\n").encode(),
             f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: edge_eas\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
             f"{dist}/top_level.txt": f"{SCHEMA_MODULE}\n".encode()}
    record = [f"{name},sha256={_b64(hashlib.sha256(data).digest())},{len(data)}" for name, data in files.items()]
    files[f"{dist}/RECORD"] = ("\n".join([*record, f"{dist}/RECORD,,"]) + "\n").encode()
    tmp = whl.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    tmp.replace(whl)
    return whl


def _b64(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _major(version: str) -> int:
    try:
        return Version(version).major
    except InvalidVersion:
        return 0
