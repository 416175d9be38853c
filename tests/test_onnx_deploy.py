"""Deploying a target whose engine is onnxruntime (the Jetson Orin profile's) to a simulated device
over real SSH: the wheel is installed offline, the report names the execution providers and the
one that ran, bench files rows under it, and a device without an onnxruntime wheel falls back to
TFLite with one warning that says so."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .labs.ssh_lab import FaultLab, leftovers

paramiko = pytest.importorskip("paramiko")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    lab = FaultLab(tmp_path_factory.mktemp("lab"), ["ort-dev"]).start()
    yield lab
    lab.close()
    assert leftovers(lab) == {"netns": [], "links": [], "processes": []}


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge_eas.cli", *args], capture_output=True, text=True, env=env,
                          timeout=900)


def onnx_target(lab: FaultLab, path: Path, runtime_dir: str) -> Path:
    dev = lab.devices[0]
    target = lab.write_target(dev, path)
    text = target.read_text().replace('engine = "numpy"', 'engine = "onnxruntime"')
    target.write_text(text.replace(json.dumps(dev.remote_runtime_dir), json.dumps(runtime_dir)))
    return target


def deploy(env: dict[str, str], target: Path, bundle: Path, *extra: str) -> dict[str, Any]:
    res = cli(env, "deploy", "--target", str(target), "--bundle", str(bundle), "--allow-unsigned", "--json", *extra)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)  # type: ignore[no-any-return]


def test_an_onnxruntime_target_deploys_names_its_provider_and_benches_under_it(
        lab: FaultLab, env: dict[str, str], tiny_bundle: Path, tmp_path: Path) -> None:
    dev = lab.devices[0]
    target = onnx_target(lab, tmp_path / "ort.toml", dev.remote_runtime_dir + "-ort")
    rep = deploy(env, target, tiny_bundle)
    assert rep["engine_package"] == "onnxruntime" and "CPUExecutionProvider" in rep["providers"], rep
    assert rep["smoke"]["engine"] == "onnxruntime:cpu" and "onnxruntime" in rep["smoke"]["versions"]
    assert not [w for w in rep["warnings"] if "onnxruntime" in w or "numpy engine" in w], rep["warnings"]
    text = cli(env, "deploy", "--target", str(target), "--bundle", str(tiny_bundle), "--allow-unsigned")
    assert text.returncode == 0 and "execution providers: " in text.stdout and "(onnxruntime:cpu)" in text.stdout

    store = tmp_path / "store.sqlite"
    bench = cli(env, "bench", "--target", str(target), "--bundle", str(tiny_bundle), "--scenarios", "3", "--runs",
                "30", "--warmup", "2", "--store", str(store), "--json")
    assert bench.returncode == 0, bench.stderr
    db = sqlite3.connect(store)
    try:
        assert {e for (e,) in db.execute("SELECT engine FROM measurements")} == {"onnxruntime:cpu"}
        assert db.execute("SELECT COUNT(*) FROM measurements").fetchone()[0] == 3
    finally:
        db.close()


def test_without_an_onnxruntime_wheel_the_device_runs_tflite_and_says_so(
        lab: FaultLab, env: dict[str, str], tiny_bundle: Path, tmp_path: Path) -> None:
    """--wheels DIR with the runtime's dependencies and LiteRT but no onnxruntime: one warning
    naming why, and the smoke runs TFLite."""
    from edge_eas.remote.install_plan import plan_runtime, runtime_wheel
    from edge_eas.remote.wheels import DevicePlatform
    dev = lab.devices[0]
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    plan = plan_runtime(DevicePlatform.host(), "tflite")  # what a tflite target gets: deps + LiteRT
    assert plan.engines.candidates[0].package == "ai-edge-litert"
    for w in [runtime_wheel(), *plan.wheels, *plan.engines.candidates[0].wheels]:
        assert not w.name.startswith("onnxruntime")
        shutil.copy(w, wheels / w.name)
    target = onnx_target(lab, tmp_path / "fallback.toml", dev.remote_runtime_dir + "-fallback")
    rep = deploy(env, target, tiny_bundle, "--wheels", str(wheels))
    assert rep["engine_package"] == "ai-edge-litert" and rep["providers"] is None
    assert rep["smoke"]["engine"] == "tflite"
    (warning,) = [w for w in rep["warnings"] if "onnxruntime" in w]
    assert warning.startswith("no onnxruntime for this device (no onnxruntime-gpu wheel in")
    assert warning.endswith("it runs the tflite engine instead")
