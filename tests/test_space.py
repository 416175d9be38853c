import json
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, strategies as st

from edge_eas.cost.flops import macs, params
from edge_eas.net.space import Arch, SearchSpace

from .strategies import archs

PRESETS = ["digits", "cifar"]


@pytest.mark.parametrize("preset", PRESETS)
def test_extremes_and_size(preset: str) -> None:
    space = SearchSpace.preset(preset)
    assert macs(space, space.smallest()) < macs(space, space.largest())
    assert params(space, space.smallest()) < params(space, space.largest())
    assert space.size() > 1000
    assert space.input_shape[0] == (1 if preset == "digits" else 3)


def test_size_counts_distinct_archs_exactly() -> None:
    from edge_eas.net.space import StageSpec
    tiny = SearchSpace("tiny", 1, 8, 4, 1, (StageSpec(4, 1, (1, 2)),), 8, kernel_choices=(3, 5), expand_choices=(3,))
    rng = np.random.default_rng(0)
    seen = {tiny.sample(rng) for _ in range(2000)}
    assert len(seen) == tiny.size() == 2 + 4


@pytest.mark.parametrize("preset", PRESETS)
@given(data=st.data())
def test_json_and_encode_round_trip(preset: str, data: st.DataObject) -> None:
    space = SearchSpace.preset(preset)
    arch = data.draw(archs(space))
    assert Arch.from_json(arch.to_json()) == arch
    vec = space.encode(arch)
    assert vec.shape == (len(space.decision_sizes()),)
    assert space.decode(vec) == arch
    assert json.loads(arch.to_json())["depths"] == list(arch.depths)


@pytest.mark.parametrize("preset", PRESETS)
@given(data=st.data())
def test_sampled_between_extremes(preset: str, data: st.DataObject) -> None:
    space = SearchSpace.preset(preset)
    arch = data.draw(archs(space))
    assert macs(space, space.smallest()) <= macs(space, arch) <= macs(space, space.largest())
    assert params(space, space.smallest()) <= params(space, arch) <= params(space, space.largest())


def test_sample_uses_generator_deterministically() -> None:
    space = SearchSpace.preset("digits")
    a = [space.sample(np.random.default_rng(3)) for _ in range(2)]
    assert a[0] == a[1] and space.contains(a[0])


@pytest.mark.parametrize("bad, field", [
    ({"depths": [1, 2], "kernels": [[3], [3, 3]], "expands": [[3], [3, 3]]}, "depths"),
    ({"depths": [1, 1, 1], "kernels": [[4], [3], [3]], "expands": [[3], [3], [3]]}, "kernels[0][0]"),
    ({"depths": [-1, 1, 1], "kernels": [[3], [3], [3]], "expands": [[3], [3], [3]]}, "depths[0]"),
    ({"depths": [1, 1, 1], "kernels": [[3], [3, 3], [3]], "expands": [[3], [3], [3]]}, "kernels[1]"),
    ({"depths": [1, 1, 1], "kernels": [[3], [3], [3]], "expands": [[3], [3], [5]]}, "expands[2][0]"),
])
def test_validation_names_the_bad_field(bad: dict, field: str) -> None:
    space = SearchSpace.preset("digits")
    with pytest.raises(ValueError, match=field.replace("[", r"\[").replace("]", r"\]")):
        space.validate(Arch.from_dict(bad))


def test_from_json_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="not valid JSON"):
        Arch.from_json("{depths")
    with pytest.raises(ValueError, match="missing"):
        Arch.from_json('{"depths": [1]}')


def test_decode_rejects_out_of_range_choice() -> None:
    space = SearchSpace.preset("digits")
    vec = space.encode(space.smallest())
    vec[0] = 9
    with pytest.raises(ValueError, match="entry 0"):
        space.decode(vec)


def test_slot_configs_are_every_slots_choices_once() -> None:
    """The one walk the cost tables, block profiling and the supernet share: each slot's stage,
    position, input size and config per (kernel, expand), the same blocks an arch's `slots` run."""
    space = SearchSpace.preset("cifar")
    slots = space.slot_configs()
    assert slots is space.slot_configs() and len(slots) == space.max_blocks
    assert [(s.stage, s.pos) for s in slots] == [(st, b) for st, b, *_ in space.block_slots()]
    for s in slots:
        assert len(s.configs) == len(space.kernel_choices) and s.largest.kernel == space.max_kernel
        assert all(cfg.in_size == s.in_size for _, _, cfg in s.choices())
    # slot configs are at the stages' full widths and the native side: an arch at those
    arch = replace(space.sample(np.random.default_rng(5)), widths=space.largest().widths, resolution=0)
    for slot, _, cfg in space.slots(arch):
        k, e = space.kernel_choices.index(cfg.kernel), space.expand_choices.index(cfg.expand)
        assert slots[slot].configs[k][e] == cfg


def test_one_specialisation_describes_its_arch_once() -> None:
    """Slicing, folding and the costs of one arch share one build of its blocks and layers (and
    of the supernet-named twin slicing reads its sources through)."""
    from edge_eas.net.folded import fold_bn
    from edge_eas.net.slicing import slice_subnet
    from edge_eas.net.subnet import subnet_layers, weight_names

    space = SearchSpace.preset("digits")
    arch = space.sample(np.random.default_rng(9))
    state = {name: np.ones(shape, np.float32) for name, shape in _supernet_shapes(space).items()}
    before = subnet_layers.cache_info().misses
    fold_bn(slice_subnet(state, space, arch, [0, 1]), space, arch)
    macs(space, arch), params(space, arch), space.active_blocks(arch)
    assert subnet_layers.cache_info().misses - before <= 2
    assert subnet_layers(space, arch) is subnet_layers(space, arch)
    assert list(space.slots(arch)) == list(space.slots(arch)) and weight_names(subnet_layers(space, arch))


def _supernet_shapes(space: SearchSpace) -> dict:
    from edge_eas.supernet import Supernet
    return {k: tuple(v.shape) for k, v in Supernet(space, 10).state_dict().items()}
