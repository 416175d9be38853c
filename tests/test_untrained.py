"""`edge_eas init`: an untrained mbv3 run is usable for latency work and refused for accuracy work."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_eas.cost.flops import macs
from edge_eas.runtime import Runtime
from edge_eas.net.space import SearchSpace

CLI = [sys.executable, "-m", "edge_eas.cli"]


@pytest.fixture(scope="module")
def mbv3_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("init") / "mbv3"
    out = subprocess.run([*CLI, "init", "--space", "mbv3", "--resolution", "128", "--num-classes", "10",
                          "--out", str(run), "--json"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["untrained"] and doc["resolution"] == 128
    return run


def test_mbv3_macs_span_mobilenet_scale_at_224() -> None:
    space = SearchSpace.preset("mbv3")
    lo, hi = (macs(space, a, 1000) / 1e6 for a in (space.smallest(), space.largest()))
    assert 60 <= lo <= 200 and 400 <= hi <= 800, (lo, hi)


def test_accuracy_commands_refuse_an_untrained_run_in_one_line(mbv3_run: Path) -> None:
    for argv in (["eval", str(mbv3_run), "--classes", "0,1"], ["train-generator", str(mbv3_run)]):
        out = subprocess.run([*CLI, *argv], capture_output=True, text=True, timeout=300)
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
        assert len(out.stderr.strip().splitlines()) == 1 and "untrained" in out.stderr


def test_untrained_bundle_specialises_across_budgets_and_says_untrained(mbv3_run: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "mbv3.eas"
    out = subprocess.run([*CLI, "export", str(mbv3_run), "--out", str(bundle), "--json"], capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["untrained"] is True
    rt = Runtime.load(bundle)
    assert rt.untrained and rt.bundle.manifest.untrained is True
    lo, hi = rt.generator.bounds("mflops")
    archs = {rt.specialize(classes=[0, 1, 2], budget_mflops=float(b), engine="numpy").arch
             for b in np.geomspace(lo * 1.05, hi, 6)}
    assert len(archs) >= 4  # the untrained generator still spreads archs over the budgets
    m = rt.specialize(classes=[0, 1, 2], budget_mflops=hi, engine="numpy")
    probs = m.predict(np.zeros((2, 3, 128, 128), np.uint8))
    assert np.asarray(probs).shape[0] == 2
    spec = subprocess.run([*CLI, "specialize", str(mbv3_run), "--classes", "0,1", "--budget-mflops", str(hi),
                           "--json"], capture_output=True, text=True, timeout=300)
    assert spec.returncode == 0, spec.stderr
    doc = json.loads(spec.stdout)
    assert doc["untrained"] is True and doc["accuracy"] is None
