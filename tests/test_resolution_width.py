"""Elastic width and input resolution (issue #31). An arch that runs below the native input side
starts with a bilinear resize of the native image (`net/subnet.py` `ResizeLayer`, folded to
`Resize`), so every arch, and every exported file, takes the native image. Every engine, the
host's static SubNet, the device's numpy BN recalibration and the standalone export run such a
sub-network as the supernet does, at every resolution and width; the analytic MACs count what
the static network runs."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from edge_eas.cost.flops import macs
from edge_eas.net.folded import FoldedConv, FoldedNet, GlobalAvgPool, Linear, Resize, bilinear_resize, fold_bn
from edge_eas.net.preprocess import Preprocess
from edge_eas.net.space import Arch, SearchSpace, StageSpec
from edge_eas.net.subnet import ResizeLayer, subnet_layers
from edge_eas.runtime.model import SpecializedModel
from edge_eas.runtime.app_io import INPUT_NAME, OUTPUT_NAME, SIGNATURE, AppIO
from edge_eas.runtime.engines import create_engine, engine_available
from edge_eas.runtime.recalibrate import recalibrate
from edge_eas.supernet import Supernet, recalibrate_bn
from edge_eas.supernet.static import DenseAct

from .strategies import every_side_and_width, perturbed_supernet

TOL = 1e-4
CLASSES = [1, 4, 7]
# native 16 px; an arch runs at 10, 13 (a scale that is no simple fraction) or 16. Squeeze-excite,
# h-swish, the fixed first block and the feature mix are in, so every op meets a resized input.
SPACE = SearchSpace(
    name="res-width", in_channels=3, resolution=16, stem_channels=8, stem_stride=2,
    stages=(StageSpec(8, 1, (1, 2)), StageSpec(16, 2, (1, 2), act="hswish", se=True, width_choices=(8, 16)),
            StageSpec(24, 2, (1, 2, 3), width_choices=(16, 24))),
    head_channels=32, kernel_choices=(3, 5, 7), expand_choices=(3, 6), first_block=True, head_act="hswish",
    mix_channels=24, resolution_choices=(10, 13, 16))
PREPROCESS = Preprocess(channels=3, resolution=16, mean=(0.45, 0.5, 0.55), std=(0.2, 0.25, 0.3))


ARCHS = every_side_and_width(SPACE, seed=5)
BELOW_NATIVE = [name for name, arch in ARCHS.items() if SPACE.arch_resolution(arch) < SPACE.resolution]


@pytest.fixture(scope="module")
def supernet() -> Supernet:
    return perturbed_supernet(SPACE, seed=2, logit_scale=8.0)


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return np.random.default_rng(3).normal(0.5, 1.0, size=(4, *SPACE.input_shape)).astype(np.float32)


@pytest.fixture(scope="module")
def reference(supernet: Supernet, x: np.ndarray) -> dict[str, np.ndarray]:
    """The supernet's eval logits of each arch on the task's classes."""
    with torch.no_grad():
        return {name: supernet(torch.from_numpy(x), arch)[:, CLASSES].numpy() for name, arch in ARCHS.items()}


def _folded(net: Supernet, arch: Arch) -> FoldedNet:
    return fold_bn(net.extract_weights(arch, CLASSES), SPACE, arch)


def test_the_archs_cover_every_resolution_and_width(supernet: Supernet) -> None:
    assert {a.resolution for a in ARCHS.values()} == set(SPACE.resolutions)
    for s, stage in enumerate(SPACE.stages):
        for side in SPACE.resolutions:
            got = {a.widths[s] for a in ARCHS.values() if SPACE.arch_resolution(a) == side}
            assert got == set(stage.widths), (s, side)
    for name, arch in ARCHS.items():
        layers = subnet_layers(SPACE, arch)
        resizes = [layer for layer in layers if isinstance(layer, ResizeLayer)]
        side = SPACE.arch_resolution(arch)
        # only an arch below the native side resizes, and it does so first, from the native side
        assert resizes == ([ResizeLayer(3, 16, side)] if side < 16 else []), name
        assert not resizes or layers[0] == resizes[0]
        first = _folded(supernet, arch).ops[0]  # the op list engines see
        assert isinstance(first, Resize) == (side < 16)
        assert side == 16 or (first.in_size, first.out_size) == (16, side)


def test_extraction_is_exact_at_every_resolution_and_width(supernet: Supernet, x: np.ndarray) -> None:
    for name, arch in ARCHS.items():
        with torch.no_grad():
            want = supernet(torch.from_numpy(x), arch).numpy()
            got = supernet.extract(arch).eval()(torch.from_numpy(x)).numpy()
        assert float(np.abs(want).max()) > 0.1, name  # the bound is meaningful, logits are not all ~0
        assert float(np.abs(got - want).max()) < 1e-5, name


def test_torch_bilinear_is_the_numpy_reference(x: np.ndarray) -> None:
    """torch's bilinear (align_corners=False) is `bilinear_resize`, the engines' reference."""
    for side in SPACE.resolutions[:-1]:
        want = torch.nn.functional.interpolate(torch.from_numpy(x), size=(side, side), mode="bilinear",
                                               align_corners=False).numpy()
        assert float(np.abs(bilinear_resize(x, side) - want).max()) < 1e-5


@pytest.mark.parametrize("engine", ["numpy", "tflite", "executorch", "torch", "onnxruntime"])
def test_every_engine_runs_every_resolution_and_width(supernet: Supernet, x: np.ndarray,
                                                      reference: dict[str, np.ndarray], engine: str) -> None:
    # the test venv (tests/run.sh) installs every engine: a missing one is a broken setup, not a skip
    assert engine_available(engine), f"engine {engine!r} is not installed in this venv"
    # lowering takes seconds: ExecuTorch runs the smallest here, test_executorch_* below another
    names = ["smallest"] if engine == "executorch" else list(ARCHS)
    for name in names:
        got = create_engine(engine, _folded(supernet, ARCHS[name]), batch_size=4).run(x)
        err = float(np.abs(got - reference[name]).max())
        assert err < TOL, f"{engine} {name}: max abs diff {err:.2e}"


def _readout_net(side: int, rng: np.random.Generator) -> tuple[FoldedNet, torch.Tensor, torch.Tensor]:
    """Resize 16 -> side, then one dense conv whose single output pixel reads every pixel of the
    resized map with its own random weight (kernel 2 * side + 1, padding side, stride the kernel):
    the logits see the resize itself, which a network's pooling would average away. Also the
    conv's torch weight and bias."""
    k = 2 * side + 1
    w = rng.normal(0.0, 0.1, size=(6, 3, k, k)).astype(np.float32)
    b = rng.normal(0.0, 0.1, size=6).astype(np.float32)
    ops = (Resize(16, side), FoldedConv(w, b, stride=k, act="none", name="readout"), GlobalAvgPool(),
           Linear(np.eye(6, dtype=np.float32), np.zeros(6, np.float32)))
    return FoldedNet((3, 16, 16), ops), torch.from_numpy(w), torch.from_numpy(b)


@pytest.mark.parametrize("engine", ["numpy", "tflite", "executorch", "torch", "onnxruntime"])
def test_every_engine_resizes_as_torch_does(x: np.ndarray, engine: str) -> None:
    """Each engine's resize alone against torch's F.interpolate(bilinear, align_corners=False):
    a resize off by a sub-pixel shift (align_corners, TFLite's legacy centres) fails here by ~0.1."""
    assert engine_available(engine), f"engine {engine!r} is not installed in this venv"
    rng = np.random.default_rng(8)
    for side in (13,) if engine == "executorch" else SPACE.resolutions[:-1]:
        folded, w, b = _readout_net(side, rng)
        resized = torch.nn.functional.interpolate(torch.from_numpy(x), size=(side, side), mode="bilinear",
                                                  align_corners=False)
        want = torch.nn.functional.conv2d(resized, w, b, stride=w.shape[-1], padding=side).flatten(1).numpy()
        got = create_engine(engine, folded, batch_size=4).run(x)
        assert float(np.abs(want).max()) > 0.5
        err = float(np.abs(got - want).max())
        assert err < TOL, f"{engine} at {side}: max abs diff {err:.2e}"


def test_executorch_lowers_the_resize_into_the_xnnpack_delegate(supernet: Supernet, x: np.ndarray,
                                                                reference: dict[str, np.ndarray]) -> None:
    """The whole graph, resize included, lands in XNNPACK (no portable op left outside it)."""
    assert engine_available("executorch"), "engine 'executorch' is not installed in this venv"
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    from edge_eas.runtime.engines.executorch_engine import ExecuTorchEngine
    from edge_eas.torchnet.folded import build_module

    name = "r13-1"
    folded = _folded(supernet, ARCHS[name])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exported = torch.export.export(build_module(folded, xnnpack=True), (torch.zeros(4, *SPACE.input_shape),))
        lowered = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()])
    calls = [str(n.target) for n in lowered.exported_program().graph_module.graph.nodes if n.op == "call_function"]
    assert [c for c in calls if "executorch_call_delegate" not in c and "getitem" not in c] == []
    got = ExecuTorchEngine(folded, batch_size=4, program=bytes(lowered.to_executorch().buffer)).run(x)
    assert float(np.abs(got - reference[name]).max()) < TOL


def test_device_recalibration_resizes_as_the_host_does(supernet: Supernet) -> None:
    images = np.random.default_rng(4).normal(0.3, 1.2, size=(16, *SPACE.input_shape)).astype(np.float32)
    for name in BELOW_NATIVE[:3]:
        arch = ARCHS[name]
        sub = supernet.extract(arch)
        recalibrate_bn(sub, [torch.from_numpy(images)])
        want = {k: v.numpy() for k, v in sub.state_dict().items() if "running" in k}
        got = recalibrate(supernet.extract_weights(arch), SPACE, arch, images)
        for k in want:
            assert np.allclose(want[k], got[k], rtol=1e-4, atol=1e-5), (name, k)


@pytest.mark.parametrize("fmt", ["tflite", "pte", "onnx"])
def test_standalone_export_takes_the_native_image_and_answers_as_predict(supernet: Supernet, fmt: str,
                                                                         tmp_path) -> None:  # type: ignore[no-untyped-def]
    arch = ARCHS[{"tflite": "r13-0", "pte": "r10-1", "onnx": "r13-1"}[fmt]]
    folded = _folded(supernet, arch)
    app = AppIO(mean=PREPROCESS.mean, std=PREPROCESS.std)
    images = np.random.default_rng(6).integers(0, 256, size=(1, 3, 16, 16), dtype=np.uint8)  # NCHW, native side
    nhwc = images.transpose(0, 2, 3, 1).copy()
    if fmt == "tflite":
        from ai_edge_litert.interpreter import Interpreter

        from edge_eas.runtime.engines.tflite_engine import build_tflite
        interp = Interpreter(model_content=build_tflite(folded, 1, app=app))
        assert list(interp.get_input_details()[0]["shape"]) == [1, 16, 16, 3]
        got = interp.get_signature_runner(SIGNATURE)(**{INPUT_NAME: nhwc})[OUTPUT_NAME]
    elif fmt == "onnx":
        import onnx
        import onnxruntime

        from edge_eas.runtime.engines.onnx_engine import build_onnx
        data = build_onnx(folded, app=app, metadata='{"labels": []}')
        onnx.checker.check_model(onnx.load_from_string(data), full_check=True)  # the writer's protobuf is valid ONNX
        session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
        assert [i.name for i in session.get_inputs()] == [INPUT_NAME]
        assert session.get_modelmeta().custom_metadata_map == {"edge_eas": '{"labels": []}'}
        got = session.run([OUTPUT_NAME], {INPUT_NAME: nhwc})[0]
    else:
        from executorch.runtime import Runtime

        from edge_eas.runtime.engines.executorch_engine import export_pte
        path = export_pte(folded, tmp_path / "sub.pte", batch_size=1, app=app)
        program = Runtime.get().load_program(path.read_bytes())
        got = program.load_method("forward").execute([torch.from_numpy(nhwc)])[0].numpy()
    model = SpecializedModel(arch=arch, classes=tuple(CLASSES), class_names=[str(c) for c in CLASSES], mflops=0.0,
                             params=0, predicted_ms=None, engine="numpy", threads=None, folded=folded,
                             preprocess=PREPROCESS)
    want = model.predict(images)  # what Runtime.specialize(...).predict answers
    assert got.shape == want.shape == (1, 3) and float(want.max()) < 0.999  # not saturated
    assert float(np.abs(got - want).max()) < TOL


def _hooked_macs(sub: nn.Module, x: torch.Tensor) -> int:
    """MACs every Conv2d / Linear (squeeze-excite's included) / feature-mix forward performs."""
    total = [0]

    def count(module: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            total[0] += out.shape[2] * out.shape[3] * module.out_channels * module.in_channels // module.groups * k
        else:
            total[0] += int(module.weight.shape[0] * module.weight.shape[1])

    hooks = [m.register_forward_hook(count) for m in sub.modules() if isinstance(m, (nn.Conv2d, nn.Linear, DenseAct))]
    with torch.no_grad():
        sub(x)
    for hook in hooks:
        hook.remove()
    return total[0]


def test_macs_equal_what_the_static_network_runs() -> None:
    net = Supernet(SPACE, 10).eval()
    rng = np.random.default_rng(7)
    pool = sorted({a for a in (SPACE.sample(rng) for _ in range(300))}, key=lambda a: (macs(SPACE, a), a.to_json()))
    archs = [pool[int(i)] for i in np.linspace(0, len(pool) - 1, 20)]
    assert {a.resolution for a in archs} == set(SPACE.resolutions)
    assert all({a.widths[s] for a in archs} == set(st.widths) for s, st in enumerate(SPACE.stages))
    x = torch.zeros(1, *SPACE.input_shape)
    for arch in archs + [SPACE.largest(), SPACE.smallest()]:
        assert macs(SPACE, arch) == _hooked_macs(net.extract(arch).eval(), x), arch.to_dict()
    assert macs(SPACE, archs[0]) < macs(SPACE, archs[-1])
