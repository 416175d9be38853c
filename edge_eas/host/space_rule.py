"""Which search space a data set gets: the documented rule (README "Data").

Named data sets map to their preset (digits -> `digits`, fashion-mnist -> `fashion`,
cifar10/cifar100 -> `cifar`). Any other source (IDX files, image folders) gets the preset
whose native resolution is closest to its images' side. Then, whatever the preset (including
one chosen with `--space`), the space takes the data's channels and network input
resolution, so a folder of 28 px grey images trains at 28 px on 1 channel, never silently
shrunk to 8 px or fed to a 3-channel stem.
"""

from __future__ import annotations

from dataclasses import replace

from edge_eas.data import Dataset
from edge_eas.net.space import PRESETS, SearchSpace

NAMED = {"digits": "digits", "fashion-mnist": "fashion", "cifar10": "cifar", "cifar100": "cifar"}
BY_SIZE = ("digits", "fashion", "cifar")  # candidates for other sources, by native resolution


def default_preset(data: Dataset) -> str:
    if data.name in NAMED:
        return NAMED[data.name]
    side = data.preprocess.resolution
    return min(BY_SIZE, key=lambda n: (abs(PRESETS[n].resolution - side), -PRESETS[n].resolution))


def space_for(data: Dataset, preset: str | None) -> SearchSpace:
    base = SearchSpace.preset(preset or default_preset(data))
    # at_resolution scales the preset's resolution choices with the data's side
    return replace(base.at_resolution(data.preprocess.resolution), in_channels=data.preprocess.channels)
