"""Adding a choice dimension: a stage whose output width is a choice (`StageSpec.width_choices`,
`Arch.widths`) took a change to net/space.py and net/subnet.py only (see "Adding a dimension"
in edge_eas/runtime/README.md). Every engine runs such a sub-network as the supernet does, and
the presets, which have no width choice, keep their dicts and digests."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from edge_eas.cost.flops import layer_macs, macs
from edge_eas.net.folded import FoldedBlock, fold_bn
from edge_eas.net.space import PRESETS, Arch, SearchSpace, StageSpec
from edge_eas.net.subnet import subnet_layers
from edge_eas.runtime.engines import create_engine, engine_available
from edge_eas.supernet import Supernet

from .strategies import perturbed_supernet

# SearchSpace.digest() of every preset: latency models and block profiles are filed under these,
# so a new field must leave a space that does not use it as it was. digits and mbv3 are as they
# were before widths existed; fashion and cifar gained width and resolution choices (issue #31).
PRESET_DIGESTS = {"digits": "952dd38d64caa758", "fashion": "22ab65bf7be9fb14", "cifar": "f05343921e6356dc",
                  "mbv3": "8cc8a9c950299336"}
TOL = 1e-4


def _width_space() -> SearchSpace:
    """digits with a width choice in a middle stage and in the last (whose width the head reads)."""
    digits = SearchSpace.preset("digits")
    stages = (digits.stages[0], StageSpec(24, 2, (1, 2, 3), width_choices=(16, 24)),
              StageSpec(40, 2, (1, 2, 3), width_choices=(24, 32, 40)))
    return replace(digits, name="digits-width", stages=stages)


ARCHS = {"narrow": Arch((2, 2, 3), ((3, 5), (5, 3), (3, 3, 5)), ((3, 6), (4, 3), (6, 3, 4)), (16, 16, 24)),
         "mixed": Arch((1, 3, 2), ((5,), (3, 5, 3), (5, 3)), ((4,), (6, 3, 4), (3, 6)), (16, 24, 32))}


def test_presets_keep_their_dicts_and_digests() -> None:
    assert {name: space.digest() for name, space in PRESETS.items()} == PRESET_DIGESTS
    assert PRESETS["mbv3"].at_resolution(160).digest() == "065415f70b689f7a"
    for name, space in PRESETS.items():
        elastic = name in ("fashion", "cifar")
        assert all(("width_choices" in stage) == elastic for stage in space.to_dict()["stages"])
        assert ("resolution_choices" in space.to_dict()) == elastic
        assert SearchSpace.from_dict(space.to_dict()) == space
    assert "widths" not in PRESETS["digits"].largest().to_dict()
    assert PRESETS["fashion"].largest().to_dict()["widths"] == [16, 24, 40, 80]


def test_width_choice_round_trips_and_is_validated() -> None:
    space = _width_space()
    assert SearchSpace.from_dict(space.to_dict()) == space and space.digest() not in PRESET_DIGESTS.values()
    arch = ARCHS["mixed"]
    assert Arch.from_dict(arch.to_dict()) == arch and arch.to_dict()["widths"] == [16, 24, 32]
    with pytest.raises(ValueError, match=r"widths\[2\]=48"):
        space.validate(replace(arch, widths=(16, 24, 48)))
    with pytest.raises(ValueError, match="must end at out_channels"):
        replace(space, stages=(StageSpec(24, 2, (1,), width_choices=(16, 32)),))


def test_width_choice_shapes_the_layers_and_costs() -> None:
    space = _width_space()
    arch = ARCHS["narrow"]
    blocks = space.active_blocks(arch)
    assert [b.out_channels for b in blocks] == [16, 16, 16, 16, 24, 24, 24]
    assert [b.residual for b in blocks] == [True, True, False, True, False, True, True]
    head = [layer for layer in subnet_layers(space, arch) if getattr(layer, "name", "") == "head"][0]
    assert head.in_channels == 24
    assert macs(space, arch) == sum(layer_macs(layer) for layer in subnet_layers(space, arch))
    assert macs(space, arch) < macs(space, replace(arch, widths=()))


@pytest.fixture(scope="module")
def supernet() -> Supernet:
    return perturbed_supernet(_width_space(), seed=2, logit_scale=8.0)


def _reference(net: Supernet, arch: Arch, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        want = net(torch.from_numpy(x), arch)[:, [1, 4, 7]].numpy()
        sub = net.extract(arch, [1, 4, 7]).eval()(torch.from_numpy(x)).numpy()
    assert float(np.abs(sub - want).max()) < TOL  # the host's SubNet agrees with the supernet
    assert float(np.abs(want).max()) > 0.1  # the bound is meaningful, logits are not all ~0
    return want


@pytest.mark.parametrize("engine", ["numpy", "tflite", "executorch", "torch"])
def test_every_engine_runs_a_width_choice(supernet: Supernet, engine: str) -> None:
    # the test venv (tests/run.sh) installs every engine: a missing one is a broken setup, not a skip
    assert engine_available(engine), f"engine {engine!r} is not installed in this venv"
    x = np.random.default_rng(3).normal(0.5, 1.0, size=(4, *supernet.space.input_shape)).astype(np.float32)
    archs = ["mixed"] if engine == "executorch" else list(ARCHS)  # lowering takes seconds
    for name in archs:
        arch = ARCHS[name]
        folded = fold_bn(supernet.extract_weights(arch, [1, 4, 7]), supernet.space, arch)
        projects = [op.ops[-1].out_channels for op in folded.ops if isinstance(op, FoldedBlock)]
        assert projects == [b.out_channels for b in supernet.space.active_blocks(arch)]
        got = create_engine(engine, folded, batch_size=4).run(x)
        err = float(np.abs(got - _reference(supernet, arch, x)).max())
        assert err < TOL, f"{engine} {name}: max abs diff {err:.2e}"
