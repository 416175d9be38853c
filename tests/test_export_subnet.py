"""`edge_eas export-subnet`: standalone .tflite / .pte files an app can load as they are: uint8
NHWC image in, softmax probabilities out, labels beside them, matching the host sub-network."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from edge_eas.data import run_dataset
from edge_eas.host.evaluate import TaskEvaluator
from edge_eas.net.preprocess import Preprocess
from edge_eas.host.rundir import RunDir, load_supernet
from edge_eas.net.space import Arch
from edge_eas.supernet import recalibrate_bn

CLI = [sys.executable, "-m", "edge_eas.cli"]


def _export(run: Path, out: Path, fmt: str, classes: str = "2,5,8") -> dict:
    res = subprocess.run([*CLI, "export-subnet", str(run), "--classes", classes, "--budget-mflops", "1.0",
                          "--format", fmt, "--out", str(out), "--json"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout)


def _reference(run: Path, doc: dict, images_nchw: np.ndarray) -> np.ndarray:
    """Softmax of the host sub-network on the images, preprocessed as training did."""
    net, meta = load_supernet(RunDir(run))
    data = run_dataset(meta)
    sub = net.extract(Arch.from_dict(doc["arch"]), classes=doc["class_ids"])
    recalibrate_bn(sub, TaskEvaluator(net, data).calibration_batches())
    x = Preprocess.from_dict(meta["preprocess"])(images_nchw)
    with torch.no_grad():
        return torch.softmax(sub.eval()(torch.from_numpy(x)), 1).numpy()


@pytest.mark.parametrize("fmt, module", [("tflite", "ai_edge_litert"), ("pte", "executorch"), ("onnx", "onnxruntime")])
def test_export_subnet_takes_uint8_nhwc_and_gives_probabilities(tiny_run: Path, tmp_path: Path, fmt: str,
                                                                module: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.fail(f"{module} is not installed (CI installs every engine)")
    out = tmp_path / f"sub.{fmt}"
    doc = _export(tiny_run, out, fmt)
    assert doc["mflops"] <= 1.0 and doc["class_ids"] == [2, 5, 8] and doc["labels"] == ["2", "5", "8"]
    side = json.loads((tmp_path / "sub.json").read_text())
    batch = "N" if fmt == "onnx" else 1  # an .onnx takes any batch
    assert side["input"] == {**side["input"], "dtype": "uint8", "layout": "NHWC", "shape": [batch, 8, 8, 1]}
    assert side["normalisation"]["inside_graph"] and side["output"]["shape"] == [batch, 3]
    images = np.random.default_rng(0).integers(0, 256, size=(1, 1, 8, 8), dtype=np.uint8)
    nhwc = images.transpose(0, 2, 3, 1).copy()
    if fmt == "tflite":
        from ai_edge_litert.interpreter import Interpreter
        it = Interpreter(model_content=out.read_bytes())
        got = it.get_signature_runner(side["signature"])(**{side["input"]["name"]: nhwc})[side["output"]["name"]]
    elif fmt == "onnx":
        import onnxruntime
        session = onnxruntime.InferenceSession(out.read_bytes(), providers=["CPUExecutionProvider"])
        assert json.loads(session.get_modelmeta().custom_metadata_map["edge_eas"])["labels"] == side["labels"]
        got = session.run([side["output"]["name"]], {side["input"]["name"]: nhwc})[0]
    else:
        from executorch.runtime import Runtime
        program = Runtime.get().load_program(out.read_bytes())
        got = program.load_method("forward").execute([torch.from_numpy(nhwc)])[0].numpy()
    assert got.shape == (1, 3) and abs(float(got.sum()) - 1.0) < 1e-5
    assert np.abs(got - _reference(tiny_run, doc, images)).max() < 1e-4


# An app's own code: LiteRT and numpy only, the image as the app holds it, the labels from the sidecar.
PLAIN_LITERT_APP = """
import json, sys
import numpy as np
from ai_edge_litert.interpreter import Interpreter
model, images, labels = sys.argv[1], np.load(sys.argv[2]), json.load(open(sys.argv[3]))
run = Interpreter(model_path=model).get_signature_runner(labels["signature"])
hits = 0
for img, truth in zip(images["x"], images["y"]):
    probs = run(**{labels["input"]["name"]: img[None]})[labels["output"]["name"]][0]
    hits += labels["class_ids"][int(np.argmax(probs))] == truth
assert not any(m.startswith("edge_eas") for m in sys.modules), "the app imported edge_eas"
print(hits / len(images["y"]))
"""


def test_exported_tflite_in_a_plain_litert_app_scores_what_eval_says(tiny_run: Path, tmp_path: Path) -> None:
    if importlib.util.find_spec("ai_edge_litert") is None:
        pytest.fail("ai_edge_litert is not installed (CI installs every engine)")
    out = tmp_path / "digits.tflite"
    doc = _export(tiny_run, out, "tflite", classes="0,3,7,9")
    _, meta = load_supernet(RunDir(tiny_run))
    data = run_dataset(meta)
    pick = np.isin(data.y_test, doc["class_ids"])
    np.savez(tmp_path / "images.npz", x=data.x_test[pick].transpose(0, 2, 3, 1), y=data.y_test[pick])
    app = subprocess.run([sys.executable, "-c", PLAIN_LITERT_APP, str(out), str(tmp_path / "images.npz"),
                          doc["sidecar"]], capture_output=True, text=True, timeout=300)
    assert app.returncode == 0, app.stderr[-2000:]
    ev = subprocess.run([*CLI, "eval", str(tiny_run), "--classes", "0,3,7,9", "--arch", json.dumps(doc["arch"]),
                         "--json"], capture_output=True, text=True, timeout=300)
    assert ev.returncode == 0, ev.stderr[-2000:]
    assert int(pick.sum()) >= 100
    assert abs(float(app.stdout) - json.loads(ev.stdout)["accuracy"]) <= 0.005


# The same app with plain onnxruntime: any batch, so all the images in one call.
PLAIN_ONNXRUNTIME_APP = """
import json, sys
import numpy as np
import onnxruntime
model, images, labels = sys.argv[1], np.load(sys.argv[2]), json.load(open(sys.argv[3]))
session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
probs = session.run([labels["output"]["name"]], {labels["input"]["name"]: images["x"]})[0]
assert not any(m.startswith("edge_eas") for m in sys.modules), "the app imported edge_eas"
np.save(sys.argv[4], np.asarray(labels["class_ids"])[probs.argmax(1)])
"""


def test_an_onnx_export_of_a_bundle_answers_as_the_runtime_on_every_test_image(tiny_run: Path, tiny_bundle: Path,
                                                                               tmp_path: Path) -> None:
    """From a bundle, export-subnet writes the network Runtime.specialize gives (no torch on this
    path); a plain onnxruntime app fed uint8 NHWC images gets the runtime's top-1 on every one."""
    from edge_eas.runtime import Runtime
    out = tmp_path / "digits.onnx"
    res = subprocess.run([*CLI, "export-subnet", str(tiny_bundle), "--classes", "0,3,7,9", "--budget", "mflops=1.0",
                          "--format", "onnx", "--out", str(out), "--json"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    doc = json.loads(res.stdout)
    _, meta = load_supernet(RunDir(tiny_run))
    data = run_dataset(meta)
    np.savez(tmp_path / "images.npz", x=data.x_test.transpose(0, 2, 3, 1), y=data.y_test)  # every test image
    app = subprocess.run([sys.executable, "-c", PLAIN_ONNXRUNTIME_APP, str(out), str(tmp_path / "images.npz"),
                          doc["sidecar"], str(tmp_path / "top1.npy")], capture_output=True, text=True, timeout=300)
    assert app.returncode == 0, app.stderr[-2000:]
    m = Runtime.load(tiny_bundle).specialize([0, 3, 7, 9], "mflops=1.0", engine="numpy")
    assert m.arch.to_dict() == doc["arch"] and len(data.y_test) >= 300
    assert np.array_equal(np.load(tmp_path / "top1.npy"), m.predict_classes(data.x_test))


@pytest.mark.parametrize("heading, fmt", [("With plain LiteRT:", "tflite"), ("With plain ONNX Runtime", "onnx")])
def test_the_readme_examples_classify_an_image_file(tiny_run: Path, tmp_path: Path, heading: str, fmt: str) -> None:
    """The README's plain-runtime examples, as written, on a PNG of a test digit."""
    from PIL import Image
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    example = readme.split(heading, 1)[1].split("```python", 1)[1].split("```", 1)[0]
    assert len(example.strip().splitlines()) <= 12
    doc = _export(tiny_run, tmp_path / f"subnet.{fmt}", fmt, classes="0,3,7")
    _, meta = load_supernet(RunDir(tiny_run))
    data = run_dataset(meta)
    i = int(np.flatnonzero(data.y_test == 7)[0])
    Image.fromarray(data.x_test[i, 0]).save(tmp_path / "digit.png")
    res = subprocess.run([sys.executable, "-c", example], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    label, prob = res.stdout.split()
    assert label in doc["labels"] and 0 < float(prob) <= 1
