"""Analytic MACs and parameter counts of a sub-network, no framework needed.

"MFLOPs" in edge_eas means millions of multiply-accumulates (MAdds) of convs and the
classifier for one image — what `torch.utils.flop_counter` counts, divided by two.
BatchNorm, activations, pooling and residual adds are not counted (the usual convention).
"""

from __future__ import annotations

from typing import Any, Sequence

from ..space import Arch, BlockConfig, SearchSpace

DEFAULT_NUM_CLASSES = 10


def block_macs(cfg: BlockConfig) -> int:
    hidden, out = cfg.hidden, cfg.out_size
    return (cfg.in_size ** 2 * cfg.in_channels * hidden          # expand 1x1
            + out ** 2 * hidden * cfg.kernel ** 2                 # depthwise kxk
            + out ** 2 * hidden * cfg.out_channels)               # project 1x1


def block_params(cfg: BlockConfig) -> int:
    hidden = cfg.hidden
    return (cfg.in_channels * hidden + hidden * cfg.kernel ** 2 + hidden * cfg.out_channels
            + 2 * (hidden + hidden + cfg.out_channels))          # BN weight + bias


def fixed_macs(space: SearchSpace, num_classes: int = DEFAULT_NUM_CLASSES) -> int:
    """Stem + head + classifier: the part every arch pays."""
    stem = space.stem_out_size ** 2 * space.stem_channels * space.in_channels * 9
    head = space.final_size() ** 2 * space.last_channels * space.head_channels
    return stem + head + space.head_channels * num_classes


def fixed_params(space: SearchSpace, num_classes: int = DEFAULT_NUM_CLASSES) -> int:
    stem = space.stem_channels * space.in_channels * 9 + 2 * space.stem_channels
    head = space.last_channels * space.head_channels + 2 * space.head_channels
    return stem + head + space.head_channels * num_classes + num_classes


def macs(space: SearchSpace, arch: Arch, num_classes: int = DEFAULT_NUM_CLASSES) -> int:
    return fixed_macs(space, num_classes) + sum(block_macs(b) for b in space.active_blocks(arch))


def params(space: SearchSpace, arch: Arch, num_classes: int = DEFAULT_NUM_CLASSES) -> int:
    return fixed_params(space, num_classes) + sum(block_params(b) for b in space.active_blocks(arch))


def mflops(space: SearchSpace, arch: Arch, num_classes: int = DEFAULT_NUM_CLASSES) -> float:
    return macs(space, arch, num_classes) / 1e6


def expected_macs(space: SearchSpace, depth_probs: Sequence[Any], kernel_probs: Any, expand_probs: Any,
                  num_classes: int = DEFAULT_NUM_CLASSES) -> Any:
    """Expected MACs under independent per-decision distributions — exact, and differentiable
    when given torch tensors (works unchanged on numpy arrays).

    depth_probs: per stage (n_depth_choices,); kernel_probs: (max_blocks, n_kernels);
    expand_probs: (max_blocks, n_expands). A block slot b of a stage is active with
    probability P(depth > b); its dw cost is linear in E[expand] * E[kernel^2].
    """
    k2 = [k * k for k in space.kernel_choices]
    ex = list(space.expand_choices)
    total: Any = float(fixed_macs(space, num_classes))
    size = space.stem_out_size
    slot = 0
    for s, stage in enumerate(space.stages):
        for b in range(stage.max_depth):
            cin = space.stem_channels if (s == 0 and b == 0) else (
                space.stages[s - 1].out_channels if b == 0 else stage.out_channels)
            stride = stage.stride if b == 0 else 1
            out = (size - 1) // stride + 1
            p_active = sum(depth_probs[s][i] for i, d in enumerate(stage.depth_choices) if d > b)
            e_exp = sum(expand_probs[slot][i] * ex[i] for i in range(len(ex)))
            e_k2 = sum(kernel_probs[slot][i] * k2[i] for i in range(len(k2)))
            hidden = e_exp * cin
            cost = hidden * (size ** 2 * cin + out ** 2 * stage.out_channels) + hidden * e_k2 * out ** 2
            total = total + p_active * cost
            size = out
            slot += 1
    return total
