"""Architectures spread evenly over a space's MACs range.

Uniform sampling of depth, kernel, expand (width, resolution) piles archs up in the middle of the MACs range
(a sum of many independent choices), so a cost model scored on random archs is hardly tested
on the smallest and largest networks users deploy. Here each candidate first draws a "size"
t in [0, 1] and then picks every choice near t's position in its list, which reaches the ends;
then, for each of n equal-width MACs bins, the unused candidate nearest its centre is taken.
"""

from __future__ import annotations

import json
from typing import Iterable

import numpy as np

from edge_eas.net.arch import Arch
from edge_eas.cost.flops import macs
from edge_eas.net.space import SearchSpace

CANDIDATES_PER_ARCH = 40


def arch_key(arch: Arch) -> str:
    """What makes two archs the same one (sets of archs are compared by it)."""
    return json.dumps(arch.to_dict(), sort_keys=True)


def _pick(choices: tuple[int, ...], t: float, rng: np.random.Generator) -> int:
    pos = t * (len(choices) - 1) + rng.normal(0.0, 0.6)
    return int(sorted(choices)[int(np.clip(round(pos), 0, len(choices) - 1))])


def sized_arch(space: SearchSpace, t: float, rng: np.random.Generator) -> Arch:
    """A random arch whose choices sit around position t (0 smallest .. 1 largest) of each list."""
    depths, kernels, expands = [], [], []
    for stage in space.stages:
        d = _pick(stage.depth_choices, t, rng)
        depths.append(d)
        kernels.append(tuple(_pick(space.kernel_choices, t, rng) for _ in range(d)))
        expands.append(tuple(_pick(space.expand_choices, t, rng) for _ in range(d)))
    widths = tuple(_pick(stage.widths, t, rng) for stage in space.stages) if space.has_widths else ()
    side = _pick(space.resolution_choices, t, rng) if space.resolution_choices else 0
    return Arch(tuple(depths), tuple(kernels), tuple(expands), widths, side)


def spread_archs(space: SearchSpace, n: int, seed: int, exclude: Iterable[Arch] = ()) -> list[Arch]:
    """`n` distinct archs, none in `exclude`, one per equal-width MACs bin between the space's
    smallest and largest arch (the unused candidate nearest the bin's centre), in order of MACs."""
    rng = np.random.default_rng(seed)
    taken = {arch_key(a) for a in exclude}
    pool: dict[str, tuple[Arch, int]] = {}
    for _ in range(CANDIDATES_PER_ARCH * n):
        a = sized_arch(space, float(rng.uniform()), rng)
        k = arch_key(a)
        if k not in taken and k not in pool:
            pool[k] = (a, macs(space, a))
    if len(pool) < n:
        raise ValueError(f"the space yielded only {len(pool)} distinct archs outside the excluded ones, {n} asked")
    lo, hi = macs(space, space.smallest()), macs(space, space.largest())
    centres = lo + (np.arange(n) + 0.5) * (hi - lo) / n
    keys = list(pool)
    values = np.array([pool[k][1] for k in keys], dtype=np.float64)
    order = rng.permutation(n)  # which bin picks first does not favour one end
    used: set[int] = set()
    out: list[Arch | None] = [None] * n
    for b in order:
        dist = np.abs(values - centres[b])
        dist[list(used)] = np.inf
        i = int(np.argmin(dist))
        used.add(i)
        out[b] = pool[keys[i]][0]
    return sorted((a for a in out if a is not None), key=lambda a: macs(space, a))
