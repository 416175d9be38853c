"""What the device's runtime venv gets, decided on the host before anything is copied: the
edge_eas wheel (built from this source tree, cached by a hash of its files), the dependency
wheels for the device's platform (`pip download` into a per-platform cache, or `--wheels DIR`),
Debian's numpy where it fits, and the engine wheels worth trying (wheels.py)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_eas.common.console import info
from edge_eas.errors import UserError
from edge_eas.remote.wheels import DevicePlatform, EngineOptions, engine_families, engine_options, wheel_name, wheel_version

# what the device agent imports (cryptography: signatures; threadpoolctl: the numpy engine's threads)
RUNTIME_DEPS = ("numpy", "cryptography", "threadpoolctl")


def cache_dir() -> Path:
    return Path(os.environ.get("EDGE_EAS_CACHE", "~/.cache/edge_eas")).expanduser()


def source_root() -> Path | None:
    """The source tree edge_eas runs from (editable install / checkout), if there is one."""
    root = Path(__file__).resolve().parents[2]
    py = root / "pyproject.toml"
    return root if py.is_file() and 'name = "edge-eas"' in py.read_text() else None


def _source_files(root: Path) -> list[Path]:
    files = [root / n for n in ("pyproject.toml", "README.md", "LICENSE", "setup.cfg") if (root / n).is_file()]
    files += sorted(p for p in (root / "edge_eas").rglob("*") if p.is_file() and "__pycache__" not in p.parts
                    and p.suffix not in (".pyc", ".pyo"))
    return files


def runtime_wheel(wheels_dir: Path | None = None) -> Path:
    """The edge_eas wheel to install on the device: from --wheels, or built from the source tree
    (cached by a hash of the sources, so an unchanged runtime keeps the same wheel hash)."""
    if wheels_dir is not None:
        found = sorted(wheels_dir.glob("edge_eas-*.whl"))
        if found:
            return found[-1]
    root = source_root()
    if root is None:
        raise UserError("cannot build the edge_eas wheel (not running from a source tree): put one in --wheels DIR")
    files = _source_files(root)
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0")
    out = cache_dir() / "runtime" / h.hexdigest()[:16]
    found = sorted(out.glob("edge_eas-*.whl"))
    if found:
        return found[-1]
    with tempfile.TemporaryDirectory(prefix="edge-eas-wheel-") as tmp:
        src = Path(tmp) / "src"
        for f in files:  # build from a copy: never leave build/ or *.egg-info in the checkout
            dst = src / f.relative_to(root)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, dst)
        built = Path(tmp) / "out"
        _pip_wheel(src, built)
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=out.parent))
        for whl in built.glob("edge_eas-*.whl"):
            shutil.move(str(whl), staging / whl.name)
        try:
            staging.rename(out)
        except OSError:  # another deploy built it concurrently
            shutil.rmtree(staging, ignore_errors=True)
    found = sorted(out.glob("edge_eas-*.whl"))
    if not found:
        raise UserError(f"building the edge_eas wheel produced nothing in {out}")
    return found[-1]


def _pip_wheel(src: Path, dest: Path) -> None:
    base = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--disable-pip-version-check", "-w", str(dest)]
    for extra in (["--no-build-isolation"], []):  # offline first; isolation needs an index
        res = subprocess.run([*base, *extra, str(src)], capture_output=True, text=True)
        if res.returncode == 0:
            return
    raise UserError(f"building the edge_eas wheel failed: {last_line(res.stderr)}")


def dependency_wheels(dev: DevicePlatform, wheels_dir: Path | None = None) -> list[Path]:
    """numpy, cryptography (+ their dependencies) as wheels for the device's platform: from
    --wheels, else a per-platform cache filled once with `pip download`."""
    if wheels_dir is not None:
        wheels = sorted(p for p in wheels_dir.glob("*.whl") if not p.name.startswith("edge_eas-"))
        needed = [d for d in RUNTIME_DEPS if not (d == "numpy" and dev.uses_distro_numpy())]
        missing = [d for d in needed if not any(w.name.lower().startswith(d + "-") for w in wheels)]
        if missing:
            raise UserError(f"--wheels {wheels_dir} has no wheel for {', '.join(missing)} ({dev.tag})")
        return wheels
    cache = cache_dir() / "wheels" / dev.tag
    have = sorted(cache.glob("*.whl"))
    if all(any(w.name.lower().startswith(d + "-") for w in have) for d in RUNTIME_DEPS):
        return have
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--only-binary=:all:",
           "--dest", str(cache), *pip_platform_args(dev)]
    info(f"fetching wheels for the device ({dev.tag}) into {cache}")
    res = subprocess.run([*cmd, *RUNTIME_DEPS], capture_output=True, text=True)
    if res.returncode != 0:
        raise UserError(f"cannot fetch {', '.join(RUNTIME_DEPS)} wheels for {dev.tag}: {last_line(res.stderr)} "
                        f"(pass --wheels DIR)")
    return sorted(cache.glob("*.whl"))


def pip_platform_args(dev: DevicePlatform) -> list[str]:
    """`pip download` options that select wheels for the device (none when it is like this host)."""
    if dev.same_as_host():
        return []
    if dev.libc[0] != "glibc":
        raise UserError(f"device libc {dev.libc[0] or 'unknown'} has no manylinux wheels: pass --wheels DIR")
    glibc_minor = int(dev.libc[1].split(".")[1]) if "." in dev.libc[1] else 17
    args = ["--python-version", f"{dev.version[0]}.{dev.version[1]}", "--implementation", "cp"]
    for minor in range(17, glibc_minor + 1):
        args += ["--platform", f"manylinux_2_{minor}_{dev.machine}"]
    return args + ["--platform", f"manylinux2014_{dev.machine}"]


@dataclass
class RuntimePlan:
    """What the device venv gets, decided on the host from the device's probe."""
    wheels: list[Path]        # dependencies to upload (not the edge_eas wheel, not the engines)
    system_numpy: bool
    numpy_version: str
    engines: EngineOptions    # engine wheels to try on the device, best first (wheels.FAMILIES)

    def want(self) -> dict[str, Any]:
        """What installed.json must say for this plan to count as installed."""
        return {"deps": sorted(w.name for w in self.wheels), "system_numpy": self.system_numpy,
                "engines": [[c.package, sorted(w.name for w in c.wheels)] for c in self.engines.candidates]}


def plan_runtime(dev: DevicePlatform, target_engine: str, wheels_dir: Path | None = None) -> RuntimePlan:
    """Dependency wheels for the device, Debian's numpy where it fits, and the engine wheels worth
    trying for the target's engine (`wheels.engine_families`: onnxruntime, then TFLite)."""
    deps = dependency_wheels(dev, wheels_dir)
    system = dev.uses_distro_numpy()
    if system:
        assert dev.numpy is not None
        numpy_version = dev.numpy
        deps = [w for w in deps if wheel_name(w) != "numpy"]
    else:
        numpy_wheels = [w for w in deps if wheel_name(w) == "numpy"]
        numpy_version = wheel_version(numpy_wheels[-1]) if numpy_wheels else "0"
    families = engine_families(target_engine)
    engines = EngineOptions(families=families)
    if families:
        engines = engine_options(dev, numpy_version, not system, cache_dir() / "wheels" / dev.tag, wheels_dir,
                                 pip_platform_args(dev), families)
    return RuntimePlan(deps, system, numpy_version, engines)


def last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "(no output)"
