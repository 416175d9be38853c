import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st
from torch.utils.flop_counter import FlopCounterMode

from edge_eas.cost.flops import expected_macs, macs, params
from edge_eas.net.space import SearchSpace
from edge_eas.supernet import SoftArch, Supernet

from .strategies import archs, perturbed_supernet

PRESETS = ["digits", "cifar", "mbv3"]


NETS = {p: perturbed_supernet(p) for p in PRESETS}


@pytest.mark.parametrize("preset", PRESETS)
@given(data=st.data())
def test_extract_equals_supernet(preset: str, data: st.DataObject) -> None:
    net = NETS[preset]
    arch = data.draw(archs(net.space))
    x = torch.randn(2, *net.space.input_shape)
    with torch.no_grad():
        ref = net(x, arch)
        out = net.extract(arch).eval()(x)
    assert (ref - out).abs().max().item() <= 1e-5


@pytest.mark.parametrize("preset", PRESETS)
@given(data=st.data())
def test_analytic_macs_and_params_match_counted(preset: str, data: st.DataObject) -> None:
    net = NETS[preset]
    arch = data.draw(archs(net.space))
    sub = net.extract(arch).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        sub(torch.randn(1, *net.space.input_shape))
    counted = counter.get_total_flops() / 2
    assert abs(macs(net.space, arch) - counted) / counted <= 0.01
    assert params(net.space, arch) == sum(p.numel() for p in sub.parameters())


@pytest.mark.parametrize("preset", PRESETS)
@given(data=st.data())
def test_soft_mode_with_one_hot_equals_hard(preset: str, data: st.DataObject) -> None:
    net = NETS[preset]
    arch = data.draw(archs(net.space))
    x = torch.randn(2, *net.space.input_shape)
    soft = SoftArch.from_arch(net.space, arch)
    with torch.no_grad():
        assert (net(x, arch) - net.forward_soft(x, soft)).abs().max().item() <= 1e-5
    expected = expected_macs(net.space, soft.depth, soft.kernel, soft.expand, width_probs=soft.width,
                             resolution_probs=soft.resolution)
    assert abs(float(expected) - macs(net.space, arch)) < 1e-3


def test_expected_macs_is_differentiable_and_exact_in_expectation() -> None:
    space = SearchSpace.preset("digits")
    sizes = space.decision_sizes()
    n, nb = len(space.stages), space.max_blocks
    logits = [torch.randn(k, requires_grad=True) for k in sizes]
    probs = [torch.softmax(l, 0) for l in logits]
    e = expected_macs(space, probs[:n], torch.stack(probs[n:n + nb]), torch.stack(probs[n + nb:]))
    e.backward()
    assert all(l.grad is not None and torch.isfinite(l.grad).all() for l in logits)
    # Monte-Carlo check of the expectation.
    rng = np.random.default_rng(0)
    p_np = [p.detach().numpy() for p in probs]
    total = 0.0
    samples = 4000
    for _ in range(samples):
        vec = [rng.choice(len(p), p=p / p.sum()) for p in p_np]
        total += macs(space, space.decode(vec))
    assert abs(total / samples - e.item()) / e.item() < 0.02


def test_extract_with_task_classes_slices_logits() -> None:
    net = NETS["digits"]
    arch = net.space.largest()
    x = torch.randn(3, *net.space.input_shape)
    with torch.no_grad():
        full = net(x, arch)
        part = net.extract(arch, classes=[1, 4, 7]).eval()(x)
    assert torch.allclose(full[:, [1, 4, 7]], part, atol=1e-5)


def test_extract_weights_are_numpy_copies() -> None:
    net = NETS["digits"]
    w = net.extract_weights(net.space.smallest())
    assert all(isinstance(v, np.ndarray) for v in w.values())
    w["stem.conv.weight"][:] = 0
    assert net.stem.weight.abs().sum() > 0
