"""The written architecture (.importlinter) holds, and it would catch the import cycles that a
review found hidden behind lazy imports: each is put back into a copy of the package and
`lint-imports` must fail on it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT = Path(sys.executable).with_name("lint-imports")

# (module file, the import that once closed a cycle)
CYCLES = [
    ("format/bundle_reader.py", "from edge_eas.generator import load"),               # generator <-> format
    ("remote/wheels.py", "from edge_eas.remote.deploy import deploy"),                # deploy <-> wheels
    ("cost/calibration.py", "from edge_eas.runtime.api import Runtime"),              # cost <-> runtime (was: signing)
    ("devices/hardware.py", "from edge_eas.devices.targets import load_target"),      # targets <-> Hardware
]


def lint(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LINT), "--no-cache", "--config", str(root / ".importlinter")], cwd=root,
                          env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def lint_available() -> None:
    if not LINT.exists():
        pytest.fail(f"{LINT} missing: install the dev extra (import-linter)")


def test_the_contracts_hold(lint_available: None) -> None:
    res = lint(ROOT)
    assert res.returncode == 0, res.stdout[-3000:]


@pytest.mark.parametrize("path,line", CYCLES, ids=[c[0] for c in CYCLES])
def test_a_reintroduced_cycle_breaks_a_contract(lint_available: None, tmp_path: Path, path: str, line: str) -> None:
    shutil.copytree(ROOT / "edge_eas", tmp_path / "edge_eas", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".importlinter", tmp_path / ".importlinter")
    target = tmp_path / "edge_eas" / path
    target.write_text(target.read_text() + f"\n\ndef _cycle():  # put back by the test\n    {line}\n")
    res = lint(tmp_path)
    assert res.returncode != 0 and "BROKEN" in res.stdout, res.stdout[-2000:]
