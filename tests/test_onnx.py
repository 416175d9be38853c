"""The onnxruntime engine: the .onnx graphs written without the `onnx` package are valid ONNX, run
every preset at every resolution and width as the numpy engine does, and the execution provider
is chosen, read back and filed as threads are."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import onnx
import onnxruntime
import pytest

from edge_eas.cost.latency import LatencyModel
from edge_eas.cost.latency_models import LatencyModels
from edge_eas.cost.store import Measurement, MeasurementStore
from edge_eas.net.folded import fold_bn
from edge_eas.net.space import PRESETS, SearchSpace
from edge_eas.runtime import Runtime
from edge_eas.runtime.agent.main import AgentSettings, run_group
from edge_eas.runtime.agent.messages import MeasurementLine, to_dict
from edge_eas.runtime.engines import create_engine, engine_candidates, engine_choices, pick_engine
from edge_eas.runtime.engines.onnx_engine import LOGITS, RAW_INPUT, build_onnx
from edge_eas.runtime.engines.onnx_providers import PROVIDERS, choose_provider, provider_chain

from .strategies import every_side_and_width, perturbed_supernet

TOL = 1e-4
CLASSES = [1, 4, 7]
TRT, CUDA, CPU = PROVIDERS["tensorrt"], PROVIDERS["cuda"], PROVIDERS["cpu"]


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_onnxruntime_agrees_with_numpy_on_every_preset_resolution_and_width(preset: str) -> None:
    net = perturbed_supernet(preset, seed=1, logit_scale=8.0)
    space = net.space
    x = np.random.default_rng(3).normal(0.5, 1.0, size=(2, *space.input_shape)).astype(np.float32)
    archs = every_side_and_width(space, seed=11)
    assert {a.resolution or space.resolution for a in archs.values()} == set(space.resolutions)
    for name, arch in archs.items():
        folded = fold_bn(net.extract_weights(arch, CLASSES), space, arch)
        want = create_engine("numpy", folded).run(x)
        engine = create_engine("onnxruntime:cpu", folded, threads=1)
        got = engine.run(x)
        assert engine.name == "onnxruntime:cpu" and got.shape == (2, 3) and got.dtype == np.float32
        assert float(np.abs(want).max()) > 0.1  # the bound is meaningful, logits are not all ~0
        err = float(np.abs(got - want).max())
        assert err < TOL, f"{preset} {name}: max abs diff {err:.2e}"
        if name == "largest":  # the hand-written protobuf is valid ONNX, types and shapes inferred
            model = onnx.load_from_string(engine.model_bytes)
            onnx.checker.check_model(model, full_check=True)
            assert [i.name for i in model.graph.input] == [RAW_INPUT]
            assert [o.name for o in model.graph.output] == [LOGITS]
            assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"  # one session, any batch
    assert float(np.abs(engine.run(x[:1]) - got[:1]).max()) < 1e-5


def test_an_engine_without_its_provider_names_the_choices() -> None:
    assert {"onnxruntime", "onnxruntime:tensorrt", "onnxruntime:cuda", "onnxruntime:cpu"} <= set(engine_choices())
    with pytest.raises(ValueError, match="unknown engine onnxruntime:npu; choose from onnxruntime:tensorrt"):
        pick_engine("onnxruntime:npu")
    with pytest.raises(ValueError, match="tflite:cuda"):
        pick_engine("tflite:cuda")
    assert engine_candidates("onnxruntime") == ("onnxruntime:tensorrt", "onnxruntime:cuda", "onnxruntime:cpu")
    assert engine_candidates("onnxruntime:cuda") == ("onnxruntime:cuda",)


@pytest.mark.parametrize("asked,available,chosen,warns", [
    (None, [TRT, CUDA, CPU], "tensorrt", False),    # a Jetson's onnxruntime-gpu: TensorRT first
    (None, [CUDA, CPU], "cuda", False),
    (None, ["AzureExecutionProvider", CPU], "cpu", False),  # PyPI's CPU wheel
    ("cuda", [TRT, CUDA, CPU], "cuda", False),      # pinned
    ("cpu", [TRT, CUDA, CPU], "cpu", False),
    ("tensorrt", [CUDA, CPU], "cuda", True),        # missing: the next one down, with a warning
    ("cuda", [CPU], "cpu", True),
])
def test_the_provider_follows_the_preference_and_what_is_offered(asked, available, chosen, warns) -> None:  # type: ignore[no-untyped-def]
    choice = choose_provider(asked, available)
    assert choice.chosen == chosen
    assert (choice.warning is not None) == warns
    if warns:
        assert f"asked for the {asked} provider, ran on {chosen}" in choice.warning
        assert f"filed under onnxruntime:{chosen}" in choice.warning
    assert provider_chain(chosen)[0] == PROVIDERS[chosen] and provider_chain(chosen)[-1] == CPU


def test_a_listed_provider_that_cannot_run_is_filed_under_what_ran(tiny_bundle, tmp_path,  # type: ignore[no-untyped-def]
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A GPU build lists TensorRT and CUDA even where their libraries do not load; here a fake
    list says so on this CPU-only onnxruntime. The session reads back what ran (the CPU): the
    model, its warning and the stored measurement say onnxruntime:cpu, never tensorrt."""
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: [TRT, CUDA, CPU])
    assert pick_engine("onnxruntime") == "onnxruntime:tensorrt"  # what the list promises
    rt = Runtime.load(tiny_bundle)
    with pytest.warns(UserWarning, match="asked for the tensorrt provider, ran on cpu"):
        m = rt.specialize([1, 2, 3], budget="mflops=1.0", engine="onnxruntime")
    assert m.engine == "onnxruntime:cpu"

    settings = AgentSettings(engine="onnxruntime:cuda", threads=1, warmup=2, runs=30)
    with pytest.warns(UserWarning):
        (line,) = run_group(rt, [{"id": "s0", "classes": [1, 2, 3], "budget": {"mflops": 1.0}}], settings)
    assert isinstance(line, MeasurementLine)
    assert line.engine == "onnxruntime:cpu" and line.threads == 1
    assert any("onnxruntime:cuda is not available here: ran onnxruntime:cpu" in w for w in line.warnings)
    store = MeasurementStore(tmp_path / "m.sqlite")
    assert store.insert(Measurement.from_agent(to_dict(line), "dev", "local", "b0"))
    assert [r["engine"] for r in store.measurements(target="local")] == ["onnxruntime:cpu"]
    assert store.measurements(target="local", engine="onnxruntime:cuda") == []
    store.close()


def test_the_standalone_graph_takes_uint8_nhwc_and_carries_its_labels() -> None:
    net = perturbed_supernet("digits", seed=1, logit_scale=8.0)
    arch = net.space.smallest()
    folded = fold_bn(net.extract_weights(arch, CLASSES), net.space, arch)
    from edge_eas.runtime.app_io import INPUT_NAME, OUTPUT_NAME, AppIO
    app = AppIO(mean=(0.3,), std=(0.2,))
    data = build_onnx(folded, app=app, metadata='{"labels": ["a", "b", "c"]}')
    onnx.checker.check_model(onnx.load_from_string(data), full_check=True)
    session = onnxruntime.InferenceSession(data, providers=[CPU])
    (inp,) = session.get_inputs()
    assert (inp.name, inp.type, inp.shape) == (INPUT_NAME, "tensor(uint8)", ["N", 8, 8, 1])
    assert session.get_modelmeta().custom_metadata_map == {"edge_eas": '{"labels": ["a", "b", "c"]}'}
    images = np.random.default_rng(0).integers(0, 256, size=(5, 8, 8, 1), dtype=np.uint8)
    probs = session.run([OUTPUT_NAME], {INPUT_NAME: images})[0]
    scale, shift = app.scale_and_shift()
    logits = create_engine("numpy", folded).run((images * scale + shift).transpose(0, 3, 1, 2))
    want = np.exp(logits - logits.max(1, keepdims=True))
    want /= want.sum(1, keepdims=True)
    assert float(np.abs(probs - want).max()) < TOL


def test_ms_budgets_find_the_latency_model_filed_under_the_provider(tiny_run, tiny_bundle, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Calibration files onnxruntime's models under the provider that ran: the device picks the one
    for the provider it resolves to; the host, which cannot know the device's provider, asked for
    "onnxruntime" takes whichever provider was calibrated (TensorRT, CUDA, then CPU)."""
    space = SearchSpace.preset("digits")
    model = LatencyModel("local", "onnxruntime:cpu", 1, space_digest=space.digest())
    cheap = model.predict(space, space.smallest())
    models = LatencyModels()
    models.add({"onnxruntime:cpu/t1": model.to_dict()}, space.digest(), "local")
    rt = Runtime.load(tiny_bundle)
    rt.add_latency_models(models)  # as the agent does with the models deploy pushed beside the bundle
    m = rt.specialize([1, 2, 3], budget=f"ms={cheap * 3}", engine="onnxruntime", threads=1)
    assert m.engine == "onnxruntime:cpu" and m.predicted_ms is not None and m.predicted_ms <= cheap * 3

    home = tmp_path / "home"
    host = LatencyModels()  # a Jetson's calibration, say: CUDA
    host.add({"onnxruntime:cuda/t1": replace(model, engine="onnxruntime:cuda").to_dict()}, space.digest(), "local")
    host.write(home / "latency-models" / "local.json")
    cli = [sys.executable, "-m", "edge_eas.cli", "specialize", str(tiny_run), "--classes", "1,2,3", "--target", "local",
           "--engine", "onnxruntime", "--threads", "1", "--no-eval", "--json", "--budget", f"ms={cheap * 3}"]
    out = subprocess.run(cli, capture_output=True, text=True, env=dict(os.environ, EDGE_EAS_HOME=str(home)), timeout=300)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["predicted_ms"] <= cheap * 3
