"""Integer execution: the tflite-int8 engine runs a full-integer graph (int8 weights per channel,
int8 activations at calibrated ranges) inside one XNNPACK partition, agrees with fp32 on top-1,
and `export-subnet --int8` writes the same graph for a plain LiteRT app (uint8 image in)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_eas.net.folded import fold_bn
from edge_eas.net.space import Arch
from edge_eas.runtime import Runtime
from edge_eas.runtime.engines import Calibration, create_engine
from edge_eas.runtime.engines.tflite_quant import activation_params, bias_int32, bias_scale_floor, symmetric_weight

from .strategies import perturbed_supernet

CLI = [sys.executable, "-m", "edge_eas.cli"]
LOGIT_TOLERANCE = 0.08  # |int8 - fp32| logits, as a share of the largest fp32 logit (measured: 0.01-0.05)


@pytest.fixture(autouse=True)
def _litert() -> None:
    if importlib.util.find_spec("ai_edge_litert") is None:
        pytest.fail("ai_edge_litert is not installed (CI installs every engine)")


def test_quantisation_parameters_follow_the_tflite_spec() -> None:
    p = activation_params(0.5, 6.0)  # widened to hold 0: zero padding and ReLU's floor stay exact
    assert p.zero_point[0] == -128 and p.scale[0] == pytest.approx(6.0 / 255)
    p = activation_params(-1.0, 3.0)
    assert -128 <= p.zero_point[0] <= 127 and abs(p.scale[0] * (0 - p.zero_point[0]) - 1.0) < p.scale[0]
    w = np.random.default_rng(0).normal(size=(4, 3, 3, 2)).astype(np.float32)
    q, wp = symmetric_weight(w, axis=3)  # depthwise layout: channels last
    assert q.dtype == np.int8 and len(wp.scale) == 2 and wp.axis == 3 and not wp.zero_point.any()
    assert np.abs(q).max() == 127 and np.abs(q * wp.scale - w).max() <= wp.scale.max() / 2 + 1e-7
    b, bp = bias_int32(np.array([0.3, -0.2], np.float32), 0.05, wp)
    assert b.dtype == np.int32 and np.allclose(b * bp.scale, [0.3, -0.2], atol=float(bp.scale.max()))
    # a channel whose weights are all zero (untrained or pruned) still gets a bias that fits int32
    w[..., 1] = 0.0
    bias = np.array([0.3, 5.0], np.float32)
    _, wp = symmetric_weight(w, axis=3, floor=bias_scale_floor(bias, 0.01))
    b, bp = bias_int32(bias, 0.01, wp)
    assert np.all(np.abs(b * bp.scale - bias) <= bp.scale)


@pytest.mark.parametrize("preset", ["digits", "fashion", "mbv3"])
def test_int8_graph_is_integer_in_one_partition_and_agrees_with_fp32(preset: str) -> None:
    net = perturbed_supernet(preset, seed=1, logit_scale=8.0)
    space = net.space
    rng = np.random.default_rng(3)
    for arch in (space.smallest(), space.largest(), space.sample(np.random.default_rng(7))):
        folded = fold_bn(net.extract_weights(arch, [1, 4, 7]), space, arch)
        x = rng.normal(0.5, 1.0, size=(96, *space.input_shape)).astype(np.float32)
        int8 = create_engine("tflite-int8", folded, batch_size=16, calibration=Calibration(x[:64]))
        fp32 = create_engine("tflite", folded, batch_size=16)
        interp = int8._interpreters[16][0]
        floats = [d["name"] for d in interp.get_tensor_details() if d["dtype"] == np.float32]
        assert floats == ["input", "logits"], floats  # everything between QUANTIZE and DEQUANTIZE is integer
        ops = [o["op_name"] for o in interp._get_ops_details()]
        assert ops.count("DELEGATE") == 1 and "HARD_SWISH" not in ops  # XNNPACK takes the whole graph
        want, got = fp32.run(x[64:]), int8.run(x[64:])
        err = float(np.abs(got - want).max() / np.abs(want).max())
        assert err < LOGIT_TOLERANCE, f"{preset}: int8 logits off by {err:.3f} of the largest"
        assert (got.argmax(1) == want.argmax(1)).mean() >= 0.9


def test_runtime_int8_agrees_with_fp32_on_real_digits(tiny_bundle: Path, digits_uint8) -> None:  # type: ignore[no-untyped-def]
    x, y = digits_uint8
    rt = Runtime.load(tiny_bundle)
    fp32 = rt.specialize(classes=list(range(10)), arch=rt.space.largest(), engine="tflite")
    int8 = rt.specialize(classes=list(range(10)), arch=rt.space.largest(), engine="tflite-int8")
    assert int8.engine == "tflite-int8" and int8.calibration is not None and not int8.calibration.synthetic
    a, b = fp32.predict_classes(x), int8.predict_classes(x)
    assert (a == b).mean() >= 0.99  # the bar, on all 1,797 images
    assert abs((a == y).mean() - (b == y).mean()) <= 0.01
    # a second engine instance (benchmarks time two) reuses the ranges instead of calibrating again
    assert np.array_equal(int8.new_engine(1).run(int8.preprocess(x[:1])), int8.logits(x[:1]))


# An app's own code: LiteRT and numpy only, the image as the app holds it.
PLAIN_LITERT_APP = """
import json, sys
import numpy as np
from ai_edge_litert.interpreter import Interpreter
model, images, side = sys.argv[1], np.load(sys.argv[2]), json.load(open(sys.argv[3]))
run = Interpreter(model_path=model).get_signature_runner(side["signature"])
probs = [run(**{side["input"]["name"]: img[None]})[side["output"]["name"]][0] for img in images]
print(json.dumps([side["class_ids"][int(np.argmax(p))] for p in probs]))
"""


def test_exported_int8_tflite_runs_uint8_in_plain_litert_as_the_runtime_does(
        tiny_run: Path, tiny_bundle: Path, tmp_path: Path, digits_uint8) -> None:  # type: ignore[no-untyped-def]
    x, y = digits_uint8
    out = tmp_path / "digits-int8.tflite"
    res = subprocess.run([*CLI, "export-subnet", str(tiny_run), "--classes", "0,3,7,9", "--budget-mflops", "1.0",
                          "--format", "tflite", "--int8", "--out", str(out), "--json"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    doc = json.loads(res.stdout)
    assert doc["precision"] == "int8" and doc["input"]["dtype"] == "uint8"
    pick = np.isin(y, doc["class_ids"])
    np.save(tmp_path / "images.npy", x[pick].transpose(0, 2, 3, 1))
    app = subprocess.run([sys.executable, "-c", PLAIN_LITERT_APP, str(out), str(tmp_path / "images.npy"),
                          doc["sidecar"]], capture_output=True, text=True, timeout=300)
    assert app.returncode == 0, app.stderr[-2000:]
    from_app = np.array(json.loads(app.stdout))
    rt = Runtime.load(tiny_bundle)
    on_device = rt.specialize(classes=doc["class_ids"], arch=Arch.from_dict(doc["arch"]), engine="tflite-int8")
    agree = float((from_app == on_device.predict_classes(x[pick])).mean())
    assert agree >= 0.98, f"the exported int8 graph and the runtime's agree on {agree:.1%} of {pick.sum()} images"
    assert (from_app == y[pick]).mean() >= 0.8


def test_int8_engine_without_images_says_what_it_needs() -> None:
    net = perturbed_supernet("digits", seed=1, logit_scale=8.0)
    folded = fold_bn(net.extract_weights(net.space.smallest(), [1, 4]), net.space, net.space.smallest())
    with pytest.raises(ValueError, match="calibration images"):
        create_engine("tflite-int8", folded)


def test_executorch_int8_runs_xnnpack_qs8_and_agrees_with_fp32() -> None:
    if importlib.util.find_spec("executorch") is None:
        pytest.fail("executorch is not installed (CI installs every engine)")
    net = perturbed_supernet("digits", seed=1, logit_scale=8.0)
    arch = net.space.sample(np.random.default_rng(7))
    folded = fold_bn(net.extract_weights(arch, [1, 4, 7]), net.space, arch)
    x = np.random.default_rng(3).normal(0.5, 1.0, size=(96, *net.space.input_shape)).astype(np.float32)
    int8 = create_engine("executorch-int8", folded, batch_size=16, calibration=Calibration(x[:64]))
    want, got = create_engine("tflite", folded, batch_size=16).run(x[64:80]), int8.run(x[64:80])
    assert float(np.abs(got - want).max() / np.abs(want).max()) < LOGIT_TOLERANCE
    assert (got.argmax(1) == want.argmax(1)).mean() >= 0.9
    fp32_program = create_engine("executorch", folded, batch_size=16).model_bytes
    assert len(int8.model_bytes) < 0.6 * len(fp32_program)  # int8 weights inside, not float ones
