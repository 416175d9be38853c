"""The device runtime supports Python 3.8+ (JetPack 5's Python; Raspberry Pi OS bullseye has 3.9),
checked two ways:

- statically, on every module a device imports (the agent, the engines, the bundle reader and
  what they pull in): vermin finds no syntax or standard-library use newer than 3.8;
- for real, where this machine has an older interpreter (python3.8, python3.9 on PATH or under
  pyenv): a fresh venv with `.[runtime]` only, then the agent measures a bundle with it. CI's
  Debian has only 3.11; there the bullseye arm64 stand-in (tests/test_arm64.py) runs 3.9.

Runtime-evaluated annotations of the 3.9/3.10 kinds (`tuple[int, ...]` as a value, `X | Y` in
isinstance) are what vermin cannot see; the real run catches them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEVICE_ENTRY = ("edge_eas.runtime.agent.main", "edge_eas.runtime.engines.numpy_engine",
                "edge_eas.runtime.engines.tflite_engine", "edge_eas.runtime.agent.profile", "edge_eas.runtime.app_io",
                "edge_eas.runtime.environment", "edge_eas.archgen.generator")


def device_modules() -> list[Path]:
    """Source files of every edge_eas module the device side imports, found by importing it."""
    code = ("import importlib, json, sys\n"
            f"for m in {list(DEVICE_ENTRY)!r}: importlib.import_module(m)\n"
            "print(json.dumps(sorted(m.__file__ for n, m in sys.modules.items() "
            "if n.startswith('edge_eas') and getattr(m, '__file__', None))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    files = [Path(f) for f in json.loads(out.stdout)]
    assert not any("supernet" in f.parts or f.name == "train.py" for f in files)  # the torch side stays out
    return files


def test_device_modules_need_nothing_newer_than_python_38() -> None:
    vermin = shutil.which("vermin") or str(Path(sys.executable).parent / "vermin")
    assert Path(vermin).exists(), "vermin is a dev dependency (pip install 'edge-eas[dev]')"
    files = device_modules()
    assert len(files) > 20
    res = subprocess.run([vermin, "--no-tips", "--violations", "-t=3.8-", "--no-eval-annotations",
                          "--backport", "dataclasses", *map(str, files)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def older_pythons() -> list[str]:
    found = []
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    for minor in (8, 9):
        exe = shutil.which(f"python3.{minor}")
        cands = sorted(pyenv.glob(f"3.{minor}.*/bin/python3.{minor}")) if pyenv.is_dir() else []
        real = [str(c) for c in cands] + ([exe] if exe else [])
        for c in real:  # pyenv's shims on PATH fail when that version is not installed: run it to be sure
            if subprocess.run([c, "-c", "import venv"], capture_output=True).returncode == 0:
                found.append(c)
                break
    return found


@pytest.mark.slow
@pytest.mark.parametrize("python", older_pythons() or [pytest.param(None, marks=pytest.mark.skip(
    reason="no python3.8 / python3.9 on this machine (in CI, test_arm64.py's bullseye device runs 3.9)"))])
def test_the_agent_measures_a_bundle_under_an_older_python(python: str, tiny_bundle: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    res = subprocess.run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check", f"{REPO}[runtime]"],
                         capture_output=True, text=True, timeout=900)
    if res.returncode != 0 and "No matching distribution" in res.stderr:
        pytest.skip(f"no wheels for {python} from the package index: {res.stderr.strip()[-200:]}")
    assert res.returncode == 0, res.stderr[-2000:]
    scen = tmp_path / "s.json"
    scen.write_text(json.dumps([{"id": "a", "classes": [1, 2, 3], "budget_mflops": 1.0}]))
    out = subprocess.run([py, "-W", "ignore", "-m", "edge_eas.runtime", "--bundle", str(tiny_bundle), "--scenarios",
                          str(scen), "--runs", "30", "--warmup", "2", "--engine", "numpy", "--threads", "1"],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    hello = lines[0]["environment"]
    meas = next(d for d in lines if d["type"] == "measurement")
    assert hello["python"].startswith(Path(python).name.replace("python", "")) and meas["mflops"] <= 1.0
    assert meas["threads"] == 1 and meas["warnings"] == []  # threadpoolctl came with the runtime extra
