"""One block's configuration (`BlockConfig`) and the size rules it obeys. Pure Python: the
search space, the cost model and the device runtime all describe blocks with it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

__all__ = ["BlockConfig", "SlotConfigs", "conv_out_size", "make_divisible", "se_channels"]


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round to the nearest multiple of `divisor`, never below 90 % of `value` (MobileNet's rule,
    which sizes the squeeze-excite bottleneck)."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new


def se_channels(hidden: int) -> int:
    """Squeeze-excite bottleneck width for a block of `hidden` channels (OFA: reduction 4)."""
    return make_divisible(hidden // 4)


def conv_out_size(size: int, kernel: int, stride: int) -> int:
    """Spatial output size of a conv with 'same'-style padding k//2 (what the supernet uses)."""
    return (size + 2 * (kernel // 2) - kernel) // stride + 1


@dataclass(frozen=True)
class BlockConfig:
    """Everything that determines one active block's cost: used by the cost model and runtime."""

    in_channels: int
    out_channels: int
    kernel: int
    expand: int
    stride: int
    in_size: int
    act: str = "relu6"
    se: bool = False

    @property
    def hidden(self) -> int:
        return self.in_channels * self.expand

    @property
    def se_channels(self) -> int:
        return se_channels(self.hidden) if self.se else 0

    @property
    def out_size(self) -> int:
        return conv_out_size(self.in_size, self.kernel, self.stride)

    @property
    def residual(self) -> bool:
        return self.stride == 1 and self.in_channels == self.out_channels


@dataclass(frozen=True)
class SlotConfigs:
    """One block slot of the supernet and every block it may run: its stage, its index in the
    stage, its input size (the same in every arch: kernels keep sizes, strides are fixed) and
    the block's config for each (kernel, expand) choice, at the stages' full widths."""

    slot: int
    stage: int
    pos: int
    in_size: int
    configs: tuple[tuple[BlockConfig, ...], ...]   # [kernel choice][expand choice]

    @property
    def largest(self) -> BlockConfig:
        """The largest kernel and expand: what the supernet's elastic block is built as."""
        return self.configs[-1][-1]

    def choices(self) -> Iterator[tuple[int, int, BlockConfig]]:
        """(kernel choice index, expand choice index, config), kernel-major."""
        for i, row in enumerate(self.configs):
            for j, cfg in enumerate(row):
                yield i, j, cfg
