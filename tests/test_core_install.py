"""Commands after a partial install: a venv with only `pip install -e .` (numpy), as a user who
skipped the extras has. Each command that needs more answers in one line naming the extra to
install, exits 2, and creates nothing (no SSH key, no run folder, nothing under HOME) before it
says so. And after the README's own install (the host venv these tests run in), `deploy` gets as
far as the SSH connection."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # builds a venv


@pytest.fixture(scope="module")
def core_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("core") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    res = subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-e", str(REPO)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    have = subprocess.run([str(py), "-c", "import importlib.util as u; print([m for m in ('torch', 'paramiko', "
                           "'serial', 'scipy', 'cryptography', 'ai_edge_litert') if u.find_spec(m)])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert have == "[]", f"the core install pulled in optional packages: {have}"
    return py


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _run_clean(python: Path, args: list[str], tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run `python -m edge_eas.cli ARGS` with an empty HOME and working folder; return what it
    printed and every file it left in either."""
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_EAS_")}
    env.update(HOME=str(home), PYTHONNOUSERSITE="1")
    res = subprocess.run([str(python), "-m", "edge_eas.cli", *args], capture_output=True, text=True, env=env,
                         cwd=work, timeout=300)
    return res, [f"HOME/{f}" for f in _files(home)] + [f"cwd/{f}" for f in _files(work)]


def _one_line(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr and res.stdout == "", res.stderr
    return lines[0]


@pytest.mark.parametrize("args,extra", [
    (["deploy", "--target", "arm64-emu", "--bundle", "model.eas"], "remote"),
    (["bench", "--target", "arm64-emu", "--bundle", "model.eas", "--scenarios", "2"], "remote"),
    (["bench", "--target", "local", "--bundle", "model.eas", "--calibrate"], "host"),
    (["calibrate", "--target", "local"], "host"),
    (["provision", "--target", "raspberry-pi-4", "--serial", "/dev/ttyUSB9"], "remote,serial"),
    (["export-subnet", "runs/r", "--classes", "1,2", "--budget-mflops", "1", "--format", "pte", "--out", "s.pte"],
     "executorch,host"),
    (["export-subnet", "runs/r", "--classes", "1,2", "--budget-mflops", "1", "--format", "tflite", "--out",
      "s.tflite"], "host,tflite"),
    (["quickstart", "--out", "runs/quickstart", "--ssh-demo"], "host"),
    (["quickstart", "--out", "runs/quickstart"], "host"),
    (["train", "--data", "digits", "--out", "runs/d"], "host"),
    (["keygen", "--out", "keys/release"], "runtime"),
], ids=lambda v: "-".join(v[:2]) if isinstance(v, list) else v)
def test_missing_extra_is_one_line_before_any_work(core_python: Path, tmp_path: Path, args: list[str],
                                                    extra: str) -> None:
    res, left = _run_clean(core_python, args, tmp_path)
    line = _one_line(res)
    assert f"pip install 'edge-eas[{extra}]'" in line and line.startswith(f"edge_eas {args[0]}: error: "), line
    assert left == [], f"{args[0]} touched files before refusing: {left}"


def test_missing_engine_names_its_extra_in_the_runtime(core_python: Path, tiny_bundle: Path) -> None:
    code = ("import sys\nfrom edge_eas.runtime import Runtime, EngineUnavailable\n"
            "rt = Runtime.load(sys.argv[1])\n"
            "print(rt.specialize(classes=[1, 2], budget_mflops=1.0, engine='numpy').engine)\n"
            "try:\n    rt.specialize(classes=[1, 2], budget_mflops=1.0, engine='tflite')\n"
            "except EngineUnavailable as exc:\n    print(exc)\n")
    res = subprocess.run([str(core_python), "-c", code, str(tiny_bundle)], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    numpy_engine, refusal = res.stdout.strip().splitlines()
    assert numpy_engine == "numpy" and "pip install 'edge-eas[tflite]'" in refusal


def test_readme_install_deploy_fails_on_the_unreachable_device(tiny_bundle: Path, tmp_path: Path) -> None:
    """The host venv has what the README's first command installs: deploy must fail on the
    unreachable device, not on an import or on an SSH key the user has not made yet."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    res, left = _run_clean(Path(sys.executable), ["deploy", "--target", "arm64-emu", "--bundle", str(tiny_bundle), "--allow-unsigned",
                                                  "--host", f"root@127.0.0.1:{port}"], tmp_path)
    line = _one_line(res)
    assert "cannot reach root@127.0.0.1" in line and "connection refused" in line, line
    assert left == []
