"""Every inference engine must reproduce the torch SubNet's logits (BN folded, same padding)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Optional

import numpy as np
import pytest
import torch

from edge_eas.runtime.engines import (ENGINE_NAMES, EngineUnavailable, available_engines, create_engine,
                                      engine_available)
from edge_eas.net.folded import FoldedBlock, FoldedNet, fold_bn
from edge_eas.net.space import Arch, SearchSpace
from edge_eas.supernet import Supernet

from .strategies import perturbed_supernet

TOL = 1e-4
PRESETS = ["digits", "cifar", "mbv3"]
CLASSES = [1, 4, 7]


def _perturbed_supernet(preset: str) -> Supernet:
    # logits of order 1, so an absolute 1e-4 is a real bound
    return perturbed_supernet(preset, seed=1, logit_scale=8.0)


def _strided_kernels_arch(space: SearchSpace) -> Arch:
    """Largest depths, the stride-2 first blocks cycling through every kernel size (3, 5, 7, ...),
    the other blocks the reverse order; mixed expand ratios."""
    kc, ec = space.kernel_choices, space.expand_choices
    depths, kernels, expands, strided = [], [], [], 0
    for stage in space.stages:
        d = stage.max_depth
        ks = [kc[::-1][b % len(kc)] for b in range(d)]
        if stage.stride > 1:
            ks[0] = kc[strided % len(kc)]
            strided += 1
        depths.append(d)
        kernels.append(tuple(ks))
        expands.append(tuple(ec[(b + len(depths)) % len(ec)] for b in range(d)))
    return Arch(tuple(depths), tuple(kernels), tuple(expands))


def _archs(space: SearchSpace) -> dict[str, Arch]:
    return {"smallest": space.smallest(), "largest": space.largest(),
            "random": space.sample(np.random.default_rng(7)), "strided_kernels": _strided_kernels_arch(space)}


_NETS: dict[str, Supernet] = {}


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():  # type: ignore[no-untyped-def]
    """Tiny tensors: one intra-op thread avoids oversubscription stalls when the machine is busy."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _net(preset: str) -> Supernet:
    if preset not in _NETS:
        _NETS[preset] = _perturbed_supernet(preset)
    return _NETS[preset]


def _case(preset: str, arch_name: str, classes: Optional[list[int]] = CLASSES
          ) -> tuple[FoldedNet, torch.nn.Module, np.ndarray]:
    net = _net(preset)
    arch = _archs(net.space)[arch_name]
    folded = fold_bn(net.extract_weights(arch, classes), net.space, arch)
    reference = net.extract(arch, classes).eval()
    x = np.random.default_rng(3).normal(0.5, 1.0, size=(4, *net.space.input_shape)).astype(np.float32)
    return folded, reference, x


def _require(name: str) -> None:
    if not engine_available(name):
        pytest.skip(f"engine {name!r} unavailable: its library is not installed")


def _check_engine(name: str, preset: str, arch_name: str, batches: tuple[int, ...] = (1, 4)) -> None:
    _require(name)
    folded, reference, x = _case(preset, arch_name)
    engine = create_engine(name, folded, batch_size=batches[0])  # default threads: no global side effects
    assert engine.name == name
    for batch in batches:
        with torch.no_grad():
            want = reference(torch.from_numpy(x[:batch])).numpy()
        got = engine.run(x[:batch])
        assert got.shape == (batch, len(CLASSES)) and got.dtype == np.float32
        err = float(np.abs(got - want).max())
        assert err < TOL, f"{name} {preset}/{arch_name} batch {batch}: max abs diff {err:.2e}"
    assert float(np.abs(want).max()) > 0.1  # the bound is meaningful, logits are not all ~0


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("arch_name", ["smallest", "largest", "random", "strided_kernels"])
@pytest.mark.parametrize("engine", ["numpy", "tflite", "torch"])
def test_engine_matches_torch_subnet(engine: str, preset: str, arch_name: str) -> None:
    _check_engine(engine, preset, arch_name)


@pytest.mark.parametrize("preset,arch_name", [("digits", "strided_kernels"), ("cifar", "smallest"),
                                              ("mbv3", "random")])
def test_executorch_matches_torch_subnet(preset: str, arch_name: str) -> None:
    # lowering takes seconds: two archs, each lowered for batch 1 and (on demand) batch 4
    _check_engine("executorch", preset, arch_name)


def test_torch_engine_sets_thread_count() -> None:
    _require("torch")
    folded, _, _ = _case("digits", "smallest")
    before = torch.get_num_threads()
    try:
        assert create_engine("torch", folded, threads=2).threads == 2
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_strided_kernels_arch_covers_every_kernel_on_a_stride_2_block() -> None:
    space = SearchSpace.preset("cifar")
    blocks = space.active_blocks(_strided_kernels_arch(space))
    assert {b.kernel for b in blocks if b.stride == 2} == set(space.kernel_choices)


def test_fold_bn_matches_conv_then_batchnorm() -> None:
    folded, reference, _ = _case("digits", "random")
    x = torch.randn(2, *folded.input_shape)
    stem, folded_stem = reference.stem, folded.ops[0]
    want = torch.nn.functional.relu6(stem.bn(stem.conv(x)))
    got = torch.nn.functional.relu6(torch.nn.functional.conv2d(
        x, torch.from_numpy(folded_stem.weight), torch.from_numpy(folded_stem.bias), stride=folded_stem.stride,
        padding=folded_stem.padding))
    assert torch.allclose(got, want, atol=1e-5)
    blocks = [op for op in folded.ops if isinstance(op, FoldedBlock)]
    assert [b.residual for b in blocks] == [b.residual for b in reference.space.active_blocks(reference.arch)]
    assert all(c.weight.dtype == np.float32 and c.bias.dtype == np.float32 for c in folded.convs())


def test_fold_bn_rejects_weights_of_another_arch() -> None:
    net = _net("digits")
    space = net.space
    weights = net.extract_weights(space.largest())
    with pytest.raises(ValueError, match="blocks|shape|kernel"):
        fold_bn(weights, space, space.smallest())
    del weights["blocks.0.dw.bn.running_var"]
    with pytest.raises(ValueError, match="blocks.0.dw.bn.running_var"):
        fold_bn(weights, space, space.largest())


def test_numpy_engine_rejects_wrong_input_shape() -> None:
    folded, _, x = _case("digits", "smallest")
    engine = create_engine("numpy", folded)
    with pytest.raises(ValueError, match="NCHW"):
        engine.run(x[:, :, :4])
    assert engine.run(x[0]).shape == (1, len(CLASSES))  # a single CHW image is a batch of one


def test_nhwc_conv_kernels_match_torch_conv2d() -> None:
    from edge_eas.runtime.engines.numpy_engine import nhwc_conv
    from edge_eas.net.folded import FoldedConv
    rng = np.random.default_rng(5)
    for cin, cout, k, stride, groups, size in [(3, 8, 3, 2, 1, 9), (6, 6, 7, 2, 6, 4), (6, 6, 7, 1, 6, 2),
                                               (6, 6, 5, 2, 6, 8), (4, 10, 1, 1, 1, 5)]:
        conv = FoldedConv(rng.normal(size=(cout, cin // groups, k, k)).astype(np.float32),
                          rng.normal(size=cout).astype(np.float32), stride, groups, act="none")
        x = rng.normal(size=(2, cin, size, size)).astype(np.float32)
        want = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(conv.weight),
                                          torch.from_numpy(conv.bias), stride, k // 2, 1, groups).numpy()
        got = nhwc_conv(conv, size)(np.ascontiguousarray(x.transpose(0, 2, 3, 1))).transpose(0, 3, 1, 2)
        assert got.shape == want.shape and float(np.abs(got - want).max()) < 1e-4, (k, stride, groups, size)


def test_create_engine_unknown_name() -> None:
    folded, _, _ = _case("digits", "smallest")
    with pytest.raises(ValueError, match="unknown engine 'onnx'.*numpy"):
        create_engine("onnx", folded)


def test_available_engines_lists_numpy_first() -> None:
    names = available_engines()
    assert names[0] == "numpy" and set(names) <= set(ENGINE_NAMES)


@pytest.mark.parametrize("engine,hidden,hint", [
    ("tflite", ["ai_edge_litert", "ai_edge_litert.interpreter", "ai_edge_litert.schema_py_generated",
                "tflite_runtime", "tflite_runtime.interpreter", "tensorflow",
                "tensorflow.lite.python.schema_py_generated"], r"pip install 'edge-eas\[tflite\]'"),
    ("executorch", ["executorch", "executorch.runtime", "executorch.exir",
                    "executorch.backends.xnnpack.partition.xnnpack_partitioner"], r"pip install 'edge-eas\[executorch\]'"),
])
def test_missing_library_raises_engine_unavailable(monkeypatch: pytest.MonkeyPatch, engine: str,
                                                   hidden: list[str], hint: str) -> None:
    for module in hidden:
        monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    folded, _, _ = _case("digits", "smallest")
    with pytest.raises(EngineUnavailable, match=hint) as info:
        create_engine(engine, folded)
    assert isinstance(info.value, RuntimeError)


def test_tflite_model_is_a_tflite_flatbuffer() -> None:
    _require("tflite")
    folded, _, _ = _case("cifar", "strided_kernels")
    engine = create_engine("tflite", folded, batch_size=2)
    assert engine.model_bytes[4:8] == b"TFL3"
    from ai_edge_litert import schema_py_generated as schema
    model = schema.Model.GetRootAs(engine.model_bytes, 0)
    ops = {model.OperatorCodes(i).BuiltinCode() for i in range(model.OperatorCodesLength())}
    B = schema.BuiltinOperator
    # SLICE: the 7x7 depthwise kernels are split into <= 25-tap row bands for XNNPACK
    assert ops == {B.PAD, B.SLICE, B.CONV_2D, B.DEPTHWISE_CONV_2D, B.ADD, B.MEAN, B.FULLY_CONNECTED}
    assert list(model.Subgraphs(0).Tensors(0).ShapeAsNumpy()) == [2, 32, 32, 3]


def test_export_pte_writes_a_loadable_program(tmp_path) -> None:  # type: ignore[no-untyped-def]
    _require("executorch")
    from executorch.runtime import Runtime

    from edge_eas.runtime.engines.executorch_engine import export_pte
    folded, reference, x = _case("digits", "smallest")
    path = export_pte(folded, tmp_path / "subnet.pte", batch_size=2)
    program = Runtime.get().load_program(path)  # keep the Program referenced while its Method runs
    method = program.load_method("forward")
    (got,) = method.execute([torch.from_numpy(x[:2])])
    with torch.no_grad():
        want = reference(torch.from_numpy(x[:2]))
    assert float((got - want).abs().max()) < TOL
    assert not list(tmp_path.glob("*.tmp"))


def test_runtime_engines_import_and_numpy_run_without_torch() -> None:
    code = textwrap.dedent("""
        import sys
        import numpy as np
        from edge_eas.runtime import engines
        from edge_eas.net.folded import fold_bn
        from edge_eas.runtime.engines import available_engines, create_engine
        from edge_eas.net.space import SearchSpace
        for module in ("numpy_engine", "tflite_engine", "torch_engine", "executorch_engine"):
            __import__("edge_eas.runtime.engines." + module)
        space = SearchSpace.preset("digits")
        arch = space.smallest()
        rng = np.random.default_rng(0)
        weights = {}
        def conv_bn(prefix, cout, cin, k):
            weights[prefix + ".conv.weight"] = rng.normal(size=(cout, cin, k, k)).astype(np.float32)
            for name, value in (("weight", 1.0), ("bias", 0.0), ("running_mean", 0.0), ("running_var", 1.0)):
                weights[prefix + ".bn." + name] = np.full(cout, value, np.float32)
        conv_bn("stem", space.stem_channels, space.in_channels, 3)
        for i, b in enumerate(space.active_blocks(arch)):
            conv_bn(f"blocks.{i}.expand", b.hidden, b.in_channels, 1)
            conv_bn(f"blocks.{i}.dw", b.hidden, 1, b.kernel)
            conv_bn(f"blocks.{i}.project", b.out_channels, b.hidden, 1)
        conv_bn("head", space.head_channels, space.last_channels, 1)
        weights["classifier.weight"] = rng.normal(size=(3, space.head_channels)).astype(np.float32)
        weights["classifier.bias"] = np.zeros(3, np.float32)
        engine = create_engine("numpy", fold_bn(weights, space, arch))
        out = engine.run(np.ones((2, *space.input_shape), np.float32))
        assert out.shape == (2, 3) and np.isfinite(out).all()
        available_engines()
        assert "torch" not in sys.modules, "torch was imported"
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("ok")
