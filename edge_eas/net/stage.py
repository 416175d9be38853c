"""One stage of a search space (`StageSpec`) and the rule that gives a stage its elastic widths.
Pure Python: the host and the torch-free device both describe spaces with it."""

from __future__ import annotations

from dataclasses import dataclass

from edge_eas.net.block import make_divisible


@dataclass(frozen=True)
class StageSpec:
    """One stage of inverted-residual blocks; only the first block strides."""

    out_channels: int
    stride: int
    depth_choices: tuple[int, ...]
    act: str = "relu6"
    se: bool = False
    # output widths an arch may pick (increasing, the last `out_channels`); () is no choice, and
    # leaves `to_dict` and so every preset's digest as they were before widths existed
    width_choices: tuple[int, ...] = ()

    @property
    def max_depth(self) -> int:
        return max(self.depth_choices)

    @property
    def widths(self) -> tuple[int, ...]:
        """The output widths an arch may pick; the supernet is built at the largest."""
        return self.width_choices or (self.out_channels,)


WIDTH_MULTIPLIERS = (0.5, 0.75, 1.0)
"""A stage's elastic widths, as multiples of its channels (MobileNet's width multipliers)."""


def elastic_stage(channels: int, stride: int, depths: tuple[int, ...], act: str = "relu6", se: bool = False,
                  multipliers: tuple[float, ...] = WIDTH_MULTIPLIERS, divisor: int = 4) -> StageSpec:
    """A stage whose output width is a choice of `multipliers` x `channels`, each rounded as
    MobileNet rounds (`make_divisible`; to multiples of 4, since these stages are 16-128 wide)."""
    widths = tuple(sorted({min(channels, make_divisible(channels * m, divisor)) for m in multipliers}))
    return StageSpec(channels, stride, depths, act, se, widths)
