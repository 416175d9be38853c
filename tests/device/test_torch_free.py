"""Runs in a virtual environment with `pip install .[runtime]` only (no torch): the device's
view. Needs EDGE_EAS_DEVICE_BUNDLE_DIR from tests/device/make_bundle.py; skipped otherwise."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BUNDLE_DIR = os.environ.get("EDGE_EAS_DEVICE_BUNDLE_DIR")
pytestmark = pytest.mark.skipif(not BUNDLE_DIR, reason="set by tests/run.sh for the torch-free venv")


@pytest.fixture(scope="module")
def bundle_dir() -> Path:
    return Path(BUNDLE_DIR or "")


def test_torch_is_absent_and_not_imported(bundle_dir: Path) -> None:
    code = ("import importlib.util, sys; assert importlib.util.find_spec('torch') is None, 'torch installed'; "
            "from edge_eas.runtime import Runtime; import edge_eas.generator; "
            f"rt = Runtime.load({str(bundle_dir / 'model.eas')!r}); rt.specialize([1, 2], budget_mflops=1.0); "
            "assert 'torch' not in sys.modules; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr


def test_signed_bundle_specialise_predict(bundle_dir: Path) -> None:
    from edge_eas.runtime import BundleError, Runtime
    d = np.load(bundle_dir / "digits.npz")
    x, y = d["x"], d["y"]
    rt = Runtime.load(bundle_dir / "model.eas", trusted_keys=[bundle_dir / "key.pub"])
    assert rt.bundle.signed_by
    m = rt.specialize(classes=[0, 5, 9], budget_mflops=2.0)
    sel = np.isin(y, [0, 5, 9])
    assert (m.predict_classes(x[sel]) == y[sel]).mean() > 0.8
    with pytest.raises(BundleError, match="does not match any trusted key"):
        other = bundle_dir / "other"
        if not other.exists():
            from edge_eas.format.signing import generate_keypair
            generate_keypair(other)
        Runtime.load(bundle_dir / "model.eas", trusted_keys=[Path(str(other) + ".pub")])


def test_engines_available_here_agree_with_numpy(bundle_dir: Path) -> None:
    from edge_eas.runtime import Runtime
    from edge_eas.runtime.engines import available_engines, engine_spec
    d = np.load(bundle_dir / "digits.npz")
    rt = Runtime.load(bundle_dir / "model.eas")
    ref = rt.specialize(classes=[1, 2, 3, 4], budget_mflops=2.0, engine="numpy")
    engines = available_engines()
    assert "torch" not in engines and "executorch" not in engines
    want = ref.logits(d["x"])
    for name in engines:
        got = rt.specialize(classes=[1, 2, 3, 4], arch=ref.arch, engine=name).logits(d["x"])
        if engine_spec(name).calibrated:  # int8: the same answers, logits within its quantisation error
            assert (got.argmax(1) == want.argmax(1)).mean() >= 0.97, name
            # clipped at its calibrated ranges, an image unlike the 32 per class calibrated on is off more
            assert np.percentile(np.abs(got - want).max(1), 99) < 0.1 * np.abs(want).max(), name
        else:
            assert np.abs(got[:8] - want[:8]).max() < 1e-4, name


def test_agent_streams_json_lines(bundle_dir: Path, tmp_path: Path) -> None:
    import json
    scen = tmp_path / "s.json"
    scen.write_text(json.dumps([{"id": "a", "classes": [1, 2], "budget_mflops": 1.0},
                                {"id": "b", "classes": [1, 99], "budget_mflops": 1.0}]))
    out = subprocess.run([sys.executable, "-m", "edge_eas.runtime", "--bundle", str(bundle_dir / "model.eas"),
                          "--scenarios", str(scen), "--runs", "30", "--warmup", "2", "--engine", "numpy"],
                         capture_output=True, text=True, timeout=120)
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [entry["type"] for entry in lines] == ["hello", "measurement", "error", "done"]
    assert out.returncode == 3 and "out of range" in lines[2]["error"]
    # at least --runs samples, more when the protocol's window needs them (runtime/timing.py)
    assert lines[1]["stats"]["runs"] >= 30 and lines[1]["mflops"] <= 1.0
    assert lines[1]["stats"]["latency_ms"] == lines[1]["stats"]["min_ms"] and lines[1]["stats"]["reference_ms"] > 0


def test_agent_heartbeat_fills_silence_from_its_first_moment(bundle_dir: Path, tmp_path: Path) -> None:
    """With --heartbeat the agent speaks first, before loading the bundle, and keeps speaking
    through a long scenario, so the host never mistakes a slow device for a dead link."""
    import json
    scen = tmp_path / "s.json"
    scen.write_text(json.dumps([{"id": "long", "classes": [1, 2], "budget_mflops": 1.0}]))
    out = subprocess.run([sys.executable, "-m", "edge_eas.runtime", "--bundle", str(bundle_dir / "model.eas"),
                          "--scenarios", str(scen), "--runs", "2000", "--warmup", "2", "--engine", "numpy",
                          "--heartbeat", "0.01"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    kinds = [entry["type"] for entry in lines]
    assert kinds[0] == "heartbeat" and lines[0]["phase"] == "starting"
    assert [k for k in kinds if k != "heartbeat"] == ["hello", "measurement", "done"]
    during = [e for e in lines[kinds.index("hello"):kinds.index("measurement")] if e["type"] == "heartbeat"]
    phases = {e["phase"] for e in during}  # the speed reference is timed first, then the scenario
    assert during and "scenario long" in phases and phases <= {"timing the speed reference", "scenario long"}
    bad = subprocess.run([sys.executable, "-m", "edge_eas.runtime", "--bundle", "x", "--heartbeat", "0"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "must be positive" in bad.stderr


def _agent_threads(bundle_dir: Path, tmp_path: Path, threads: int, env: dict[str, str]) -> dict:
    import json
    scen = tmp_path / "t.json"
    scen.write_text(json.dumps([{"id": "a", "classes": [1, 2], "budget_mflops": 1.0}]))
    out = subprocess.run([sys.executable, "-m", "edge_eas.runtime", "--bundle", str(bundle_dir / "model.eas"),
                          "--scenarios", str(scen), "--runs", "30", "--warmup", "2", "--engine", "numpy",
                          "--threads", str(threads)], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    return next(d for d in map(json.loads, out.stdout.splitlines()) if d["type"] == "measurement")


def test_numpy_threads_are_applied_read_back_and_filed_under_what_ran(bundle_dir: Path, tmp_path: Path) -> None:
    """The runtime extra brings threadpoolctl: --threads 1 is applied to the BLAS pool and read back."""
    from threadpoolctl import threadpool_info  # part of edge_eas[runtime]
    assert any(p["user_api"] == "blas" for p in threadpool_info()), "numpy here has no BLAS pool to limit"
    line = _agent_threads(bundle_dir, tmp_path, 1, dict(os.environ))
    assert line["threads"] == 1 and line["threads_requested"] == 1 and line["warnings"] == []
    assert line["environment"]["threads_read_back"] == 1 and "threadpoolctl" in line["environment"]["versions"]


def test_numpy_threads_that_cannot_be_applied_are_filed_as_the_default_with_a_warning(
        bundle_dir: Path, tmp_path: Path) -> None:
    """A device without threadpoolctl (a module of that name that fails to import shadows it):
    the request is not silently filed as honoured."""
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "threadpoolctl.py").write_text("raise ImportError('threadpoolctl is not installed here')\n")
    line = _agent_threads(bundle_dir, tmp_path, 1, {**os.environ, "PYTHONPATH": str(shadow)})
    assert line["threads"] is None and line["threads_requested"] == 1
    assert line["environment"]["threads_read_back"] is None
    assert len(line["warnings"]) == 1 and "asked for 1 threads, ran with the library default" in line["warnings"][0]
    assert "install threadpoolctl" in line["warnings"][0]
