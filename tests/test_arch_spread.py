"""Archs spread over the MACs range: what cost-model benchmarks score on."""

from __future__ import annotations

import numpy as np
import pytest

from edge_eas.host.arch_spread import arch_key, spread_archs
from edge_eas.cost.flops import macs
from edge_eas.net.space import SearchSpace


@pytest.mark.parametrize("preset", ["digits", "mbv3"])
def test_spread_archs_cover_the_range_distinct_and_outside_the_excluded(preset: str) -> None:
    space = SearchSpace.preset(preset)
    excluded = [space.smallest(), space.largest()]
    archs = spread_archs(space, 30, seed=0, exclude=excluded)
    assert len({arch_key(a) for a in archs}) == 30
    assert not {arch_key(a) for a in archs} & {arch_key(a) for a in excluded}
    lo, hi = macs(space, space.smallest()), macs(space, space.largest())
    m = np.array([macs(space, a) for a in archs])
    assert list(m) == sorted(m)
    # every tenth of the range holds some archs; uniform sampling leaves the ends empty
    counts = np.histogram(m, bins=10, range=(lo, hi))[0]
    assert (counts >= 1).all(), counts
    uniform = np.array([macs(space, space.sample(np.random.default_rng(i))) for i in range(30)])
    assert m.min() < uniform.min() and m.max() > uniform.max()


def test_spread_archs_are_reproducible() -> None:
    space = SearchSpace.preset("digits")
    assert spread_archs(space, 10, seed=3) == spread_archs(space, 10, seed=3)
