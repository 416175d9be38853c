"""`edge_eas export-subnet`: standalone .tflite / .pte files that match the host sub-network."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from edge_eas.data import load_dataset
from edge_eas.evaluate import TaskEvaluator
from edge_eas.rundir import RunDir, load_supernet
from edge_eas.space import Arch
from edge_eas.supernet import recalibrate_bn

CLI = [sys.executable, "-m", "edge_eas.cli"]


def _reference(run: Path, doc: dict, x: np.ndarray) -> np.ndarray:
    net, meta = load_supernet(RunDir(run))
    data = load_dataset(meta["data"], seed=meta["config"]["seed"])
    sub = net.extract(Arch.from_dict(doc["arch"]), classes=doc["classes"])
    recalibrate_bn(sub, TaskEvaluator(net, data).calibration_batches())
    with torch.no_grad():
        return sub.eval()(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("fmt, module", [("tflite", "ai_edge_litert"), ("pte", "executorch")])
def test_export_subnet_matches_host(tiny_run: Path, tmp_path: Path, fmt: str, module: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed")
    out = tmp_path / f"sub.{fmt}"
    res = subprocess.run([*CLI, "export-subnet", str(tiny_run), "--classes", "2,5,8", "--budget-mflops", "1.0",
                          "--format", fmt, "--out", str(out), "--json"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    doc = json.loads(res.stdout)
    assert doc["mflops"] <= 1.0 and doc["classes"] == [2, 5, 8]
    x = np.random.default_rng(0).standard_normal((1, 1, 8, 8)).astype(np.float32)
    if fmt == "tflite":
        from ai_edge_litert.interpreter import Interpreter
        it = Interpreter(model_content=out.read_bytes())
        it.allocate_tensors()
        it.set_tensor(it.get_input_details()[0]["index"], x.transpose(0, 2, 3, 1).copy())  # NHWC
        it.invoke()
        got = it.get_tensor(it.get_output_details()[0]["index"])
    else:
        from executorch.runtime import Runtime
        program = Runtime.get().load_program(out.read_bytes())
        got = program.load_method("forward").execute([torch.from_numpy(x)])[0].numpy()
    assert np.abs(got - _reference(tiny_run, doc, x)).max() < 1e-4
