"""Elastic search space: MBConv stages with elastic depth, kernel, expand ratio and, where a
preset offers them, stage width and input resolution.

Presets: `digits`, `fashion`, `cifar` (MobileNetV2-like, ReLU6), and `mbv3`, the Once-for-All
MobileNetV3 space (h-swish in the later stages, squeeze-excite where MobileNetV3 has it, a
fixed first block and a feature-mix layer after the pool) at ImageNet resolutions.

Pure Python + numpy so that both the host and the torch-free device runtime can use it.
An `Arch` names only the *active* blocks, so two different `Arch` values are always two
different networks; `encode()` pads inactive block slots with 0 to a fixed-length vector.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from functools import cached_property, lru_cache
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from edge_eas.net.activations import ACTIVATIONS  # re-exported: the names a layer's `act` may take
from edge_eas.net.arch import Arch, DecisionLayout
from edge_eas.net.block import BlockConfig, SlotConfigs, conv_out_size, make_divisible, se_channels
from edge_eas.net.stage import StageSpec, elastic_stage

Pick = Callable[[Sequence[int]], int]
"""A rule that picks one of a decision's choices (min, max, the middle one)."""

__all__ = ["ACTIVATIONS", "Arch", "BlockConfig", "DecisionLayout", "PRESETS", "SearchSpace", "SlotConfigs",
           "StageSpec", "conv_out_size", "make_divisible", "se_channels"]


@dataclass(frozen=True)
class SearchSpace:
    """The elastic space: fixed stem/head, elastic stages. Choices are configurable."""

    name: str
    in_channels: int
    resolution: int
    stem_channels: int
    stem_stride: int
    stages: tuple[StageSpec, ...]
    head_channels: int
    kernel_choices: tuple[int, ...] = (3, 5, 7)
    expand_choices: tuple[int, ...] = (3, 4, 6)
    stem_act: str = "relu6"
    first_block: bool = False   # a fixed 3x3 depthwise block (expand 1, ReLU) right after the stem
    head_act: str = "relu6"
    mix_channels: int = 0       # a feature-mix layer after the pool (h-swish), 0 for none
    # input sides an arch may run at (increasing, the last `resolution`, the native input every
    # arch takes and resizes itself); () is no choice, and leaves `to_dict` as it was before
    resolution_choices: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        for label, act in [("stem_act", self.stem_act), ("head_act", self.head_act)] + [
                (f"stages[{i}].act", st.act) for i, st in enumerate(self.stages)]:
            if act not in ACTIVATIONS:
                raise ValueError(f"{label} {act!r} is not one of {', '.join(ACTIVATIONS)}")
        # Budget repair steps a decision to its next lower choice, which must be the cheaper one.
        for label, choices in [("kernel_choices", self.kernel_choices), ("expand_choices", self.expand_choices)] + [
                (f"stages[{i}].depth_choices", s.depth_choices) for i, s in enumerate(self.stages)] + [
                (f"stages[{i}].width_choices", s.widths) for i, s in enumerate(self.stages)]:
            if not choices or list(choices) != sorted(set(choices)) or min(choices) < 1:
                raise ValueError(f"{label} must be distinct positive integers in increasing order, got {list(choices)}")
        for i, st in enumerate(self.stages):
            if st.widths[-1] != st.out_channels:
                raise ValueError(f"stages[{i}].width_choices must end at out_channels {st.out_channels}")
        res = self.resolutions
        if list(res) != sorted(set(res)) or res[0] < 4 or res[-1] != self.resolution:
            raise ValueError(f"resolution_choices must be distinct sides >= 4 in increasing order ending at "
                             f"resolution {self.resolution}, got {list(self.resolution_choices)}")

    # ---- construction -------------------------------------------------------------------
    @staticmethod
    def preset(name: str) -> "SearchSpace":
        if name not in PRESETS:
            raise ValueError(f"unknown search-space preset {name!r}; choose from {', '.join(sorted(PRESETS))}")
        return PRESETS[name]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for stage in d["stages"]:
            if not stage["width_choices"]:  # no choice: the dict (and digest) spaces had before widths
                del stage["width_choices"]
        if not d["resolution_choices"]:
            del d["resolution_choices"]
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SearchSpace":
        # fields added with the mbv3 space default to what older runs and bundles were built with
        stages = tuple(StageSpec(int(s["out_channels"]), int(s["stride"]), tuple(s["depth_choices"]),
                                 str(s.get("act", "relu6")), bool(s.get("se", False)),
                                 tuple(int(w) for w in s.get("width_choices", ())))
                       for s in data["stages"])
        return cls(name=data["name"], in_channels=int(data["in_channels"]), resolution=int(data["resolution"]),
                   stem_channels=int(data["stem_channels"]), stem_stride=int(data["stem_stride"]),
                   stages=stages, head_channels=int(data["head_channels"]),
                   kernel_choices=tuple(data["kernel_choices"]), expand_choices=tuple(data["expand_choices"]),
                   stem_act=str(data.get("stem_act", "relu6")), first_block=bool(data.get("first_block", False)),
                   head_act=str(data.get("head_act", "relu6")), mix_channels=int(data.get("mix_channels", 0)),
                   resolution_choices=tuple(int(r) for r in data.get("resolution_choices", ())))

    def digest(self) -> str:
        """A short fingerprint of the space: what latency models and block profiles are filed
        under, so one fitted for another space (digits vs mbv3, or mbv3 at another resolution)
        is never used for this one."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def at_resolution(self, resolution: int) -> "SearchSpace":
        """The same space for another input size (mbv3 is defined at 224 and runs at 128-224);
        resolution choices scale with it (fashion's 16-28 become 18-32 at 32 px)."""
        if resolution < 8:
            raise ValueError(f"resolution must be at least 8, got {resolution}")
        scaled = tuple(sorted({max(8, round(r * resolution / self.resolution)) for r in self.resolution_choices[:-1]}
                              - {resolution})) + (int(resolution),) if self.resolution_choices else ()
        return replace(self, resolution=int(resolution), resolution_choices=scaled)

    @property
    def resolutions(self) -> tuple[int, ...]:
        """The input sides an arch may run at; the last is the native one."""
        return self.resolution_choices or (self.resolution,)

    @property
    def has_widths(self) -> bool:
        return any(stage.width_choices for stage in self.stages)

    def arch_resolution(self, arch: Arch) -> int:
        """The side `arch` runs at (its own, or the native one)."""
        return arch.resolution or self.resolution

    def geometry(self, resolution: int = 0) -> "SearchSpace":
        """This space with the sizes an arch running at `resolution` (0: the native one) has:
        every layer's input size follows from it. Such an arch resizes its input from
        `self.resolution` first (`net/subnet.py`)."""
        return _geometry(self, resolution or self.resolution)

    # ---- shape facts --------------------------------------------------------------------
    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.in_channels, self.resolution, self.resolution)

    @property
    def max_kernel(self) -> int:
        return max(self.kernel_choices)

    @property
    def max_expand(self) -> int:
        return max(self.expand_choices)

    @property
    def max_blocks(self) -> int:
        return sum(s.max_depth for s in self.stages)

    @property
    def stem_out_size(self) -> int:
        return conv_out_size(self.resolution, 3, self.stem_stride)

    @property
    def last_channels(self) -> int:
        return self.stages[-1].out_channels

    def block_slots(self) -> Iterator[tuple[int, int, int, int, int]]:
        """(stage, index in stage, in_channels, out_channels, stride) for every possible block."""
        in_ch = self.stem_channels
        for s, stage in enumerate(self.stages):
            for b in range(stage.max_depth):
                yield s, b, in_ch, stage.out_channels, (stage.stride if b == 0 else 1)
                in_ch = stage.out_channels

    def block_config(self, stage: int, cin: int, cout: int, kernel: int, expand: int, stride: int,
                     in_size: int) -> BlockConfig:
        """A block of `stage` with these choices (the stage sets its activation and SE)."""
        spec = self.stages[stage]
        return BlockConfig(cin, cout, kernel, expand, stride, in_size, spec.act, spec.se)

    def first_block_config(self) -> BlockConfig | None:
        """The fixed first block (mbv3): 3x3 depthwise, expand 1, ReLU, residual; else None."""
        if not self.first_block:
            return None
        return BlockConfig(self.stem_channels, self.stem_channels, 3, 1, 1, self.stem_out_size, "relu", False)

    def slot_configs(self) -> tuple[SlotConfigs, ...]:
        """Every block slot with each config it may run, built once per space: the one walk the
        cost tables, block profiling and the supernet's construction share."""
        return self._slot_configs

    @cached_property
    def _slot_configs(self) -> tuple[SlotConfigs, ...]:
        out, size = [], self.stem_out_size
        for slot, (s, b, cin, cout, stride) in enumerate(self.block_slots()):
            configs = tuple(tuple(self.block_config(s, cin, cout, k, e, stride, size) for e in self.expand_choices)
                            for k in self.kernel_choices)
            out.append(SlotConfigs(slot, s, b, size, configs))
            size = configs[0][0].out_size
        return tuple(out)

    def stage_widths(self, arch: Arch) -> tuple[int, ...]:
        """Each stage's output width in `arch` (the full `out_channels` when it picks none)."""
        return arch.widths or tuple(s.out_channels for s in self.stages)

    def slots(self, arch: Arch) -> Iterator[tuple[int, int, BlockConfig]]:
        """(supernet slot, index among active blocks, config) for every block `arch` runs, in
        order: the one walk from an arch to its blocks that extraction and layouts share."""
        return iter(_arch_slots(self, arch))

    def active_blocks(self, arch: Arch) -> list[BlockConfig]:
        """The configs of the blocks an arch runs, in order, with their input sizes."""
        return [cfg for _, _, cfg in self.slots(arch)]

    def final_size(self) -> int:
        """Spatial size entering the head (independent of the arch: kernels keep size, strides fixed)."""
        size = self.stem_out_size
        for stage in self.stages:
            size = conv_out_size(size, 3, stage.stride)
        return size

    # ---- validation ---------------------------------------------------------------------
    def validate(self, arch: Arch) -> Arch:
        """Raise ValueError naming the first field that does not belong to this space."""
        if arch.resolution and arch.resolution not in self.resolutions:
            raise ValueError(f"resolution {arch.resolution} is not one of {list(self.resolutions)}")
        if arch.widths:
            if len(arch.widths) != len(self.stages):
                raise ValueError(f"widths has {len(arch.widths)} stages, space {self.name!r} has {len(self.stages)}")
            for s, (w, stage) in enumerate(zip(arch.widths, self.stages)):
                if w not in stage.widths:
                    raise ValueError(f"widths[{s}]={w} is not one of {list(stage.widths)}")
        if len(arch.depths) != len(self.stages):
            raise ValueError(f"depths has {len(arch.depths)} stages, space {self.name!r} has {len(self.stages)}")
        for field_name, values, choices in (("kernels", arch.kernels, self.kernel_choices),
                                            ("expands", arch.expands, self.expand_choices)):
            if len(values) != len(self.stages):
                raise ValueError(f"{field_name} has {len(values)} stages, space {self.name!r} has {len(self.stages)}")
        for s, stage in enumerate(self.stages):
            d = arch.depths[s]
            if d not in stage.depth_choices:
                raise ValueError(f"depths[{s}]={d} is not one of {list(stage.depth_choices)}")
            for field_name, values, choices in (("kernels", arch.kernels, self.kernel_choices),
                                                ("expands", arch.expands, self.expand_choices)):
                if len(values[s]) != d:
                    raise ValueError(f"{field_name}[{s}] has {len(values[s])} blocks but depths[{s}]={d}")
                for b, v in enumerate(values[s]):
                    if v not in choices:
                        raise ValueError(f"{field_name}[{s}][{b}]={v} is not one of {list(choices)}")
        return arch

    def contains(self, arch: Arch) -> bool:
        try:
            self.validate(arch)
        except ValueError:
            return False
        return True

    # ---- flat encoding ------------------------------------------------------------------
    @cached_property
    def decisions(self) -> DecisionLayout:
        """Built once per space (the space is frozen): the generator's budget repair reads it in
        its inner loop, and rebuilding it there took a third of `generate`'s time."""
        return DecisionLayout(tuple(s.depth_choices for s in self.stages), self.kernel_choices, self.expand_choices,
                              tuple(s.widths for s in self.stages) if self.has_widths else (),
                              self.resolution_choices)

    @cached_property
    def depth_values(self) -> np.ndarray:
        """(n_stages, most depth choices) the depth each stage's choice index means, 0-padded."""
        width = max(len(s.depth_choices) for s in self.stages)
        values = np.array([list(s.depth_choices) + [0] * (width - len(s.depth_choices)) for s in self.stages])
        values.flags.writeable = False
        return values

    def decision_sizes(self) -> list[int]:
        """Number of choices per decision (`DecisionLayout.sizes`)."""
        return self.decisions.sizes

    def encode(self, arch: Arch) -> np.ndarray:
        """Arch -> flat int vector of choice indices; inactive block slots are 0."""
        arch = self.validate(arch)
        return self.decisions.encode(arch, self.stage_widths(arch), self.arch_resolution(arch))

    def decode(self, vec: Sequence[int]) -> Arch:
        """Flat choice-index vector -> Arch; choices of inactive block slots are ignored."""
        return self.decisions.decode(vec, self.name)

    # ---- sampling and extremes ----------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> Arch:
        """A uniformly random arch: each decision's choice drawn uniformly (OFA's sampling)."""
        depths, kernels, expands = [], [], []
        for stage in self.stages:
            d = int(rng.choice(stage.depth_choices))
            depths.append(d)
            kernels.append(tuple(int(k) for k in rng.choice(self.kernel_choices, size=d)))
            expands.append(tuple(int(e) for e in rng.choice(self.expand_choices, size=d)))
        widths = tuple(int(rng.choice(s.widths)) for s in self.stages) if self.has_widths else ()
        res = int(rng.choice(self.resolution_choices)) if self.resolution_choices else 0
        return Arch(tuple(depths), tuple(kernels), tuple(expands), widths, res)

    def uniform(self, depth: Pick, kernel: Pick | None = None, expand: Pick | None = None,
                width: Pick | None = None, resolution: Pick | None = None) -> Arch:
        """The arch whose every stage picks its depth with `depth` (e.g. min), every block its
        kernel and expand, every stage its width and the arch its resolution with the others
        (each defaulting to `depth`'s rule). Width and resolution are explicit where the space
        offers them."""
        kernel, expand = kernel or depth, expand or depth
        width, resolution = width or depth, resolution or depth
        depths = tuple(depth(s.depth_choices) for s in self.stages)
        return Arch(depths, tuple((kernel(self.kernel_choices),) * d for d in depths),
                    tuple((expand(self.expand_choices),) * d for d in depths),
                    tuple(width(s.widths) for s in self.stages) if self.has_widths else (),
                    resolution(self.resolution_choices) if self.resolution_choices else 0)

    def smallest(self) -> Arch:
        return self.uniform(min)

    def largest(self) -> Arch:
        return self.uniform(max)

    def size(self) -> int:
        """Number of distinct architectures (exact integer)."""
        per_block = len(self.kernel_choices) * len(self.expand_choices)
        total = len(self.resolutions)
        for stage in self.stages:
            total *= sum(per_block ** d for d in stage.depth_choices) * len(stage.widths)
        return total


@lru_cache(maxsize=256)
def _arch_slots(space: SearchSpace, arch: Arch) -> tuple[tuple[int, int, BlockConfig], ...]:
    """`SearchSpace.slots`, kept per (space, arch): one specialisation walks the same arch's
    blocks for slicing, folding and its costs."""
    space.validate(arch)
    widths = space.stage_widths(arch)
    out: list[tuple[int, int, BlockConfig]] = []
    geo = space.geometry(arch.resolution)
    cin, size = geo.stem_channels, geo.stem_out_size
    for slot, (s, b, _, _, stride) in enumerate(geo.block_slots()):
        if b < arch.depths[s]:
            cfg = geo.block_config(s, cin, widths[s], arch.kernels[s][b], arch.expands[s][b], stride, size)
            out.append((slot, len(out), cfg))
            cin, size = cfg.out_channels, cfg.out_size
    return tuple(out)


@lru_cache(maxsize=64)
def _geometry(space: SearchSpace, resolution: int) -> SearchSpace:
    """`SearchSpace.geometry`, one copy per (space, side) so its cached layouts are built once."""
    return space if resolution == space.resolution else replace(space, resolution=resolution, resolution_choices=())


PRESETS: dict[str, SearchSpace] = {
    # sklearn digits are 8x8 grey images: keep the native resolution, two downsamplings.
    "digits": SearchSpace(
        name="digits", in_channels=1, resolution=8, stem_channels=16, stem_stride=1,
        stages=(StageSpec(16, 1, (1, 2)), StageSpec(24, 2, (1, 2, 3)), StageSpec(40, 2, (1, 2, 3))),
        head_channels=96),
    # Fashion-MNIST, 28x28 grey, sized so supernet + generator train in <= 45 min on 2 CPU cores:
    # stride-2 stem, kernels 3/5 (7x7 depthwise costs far more than its MACs on CPU), expand
    # 2/3/4, each stage 0.5/0.75/1x wide and the input resized to 16-28 px. About 0.2-5.8 M MACs
    # (28x); before widths and resolutions (depth, kernel, expand only) 1.7-5.9 M (3.4x).
    "fashion": SearchSpace(
        name="fashion", in_channels=1, resolution=28, stem_channels=16, stem_stride=2,
        stages=(elastic_stage(16, 1, (1, 2)), elastic_stage(24, 2, (2, 3)), elastic_stage(40, 2, (2, 3)),
                elastic_stage(80, 1, (2, 3))),
        head_channels=256, kernel_choices=(3, 5), expand_choices=(2, 3, 4), resolution_choices=(16, 20, 24, 28)),
    # CIFAR-10/100 at 32x32, a compact MobileNetV2/OFA-like layout, widths and input sides as fashion's.
    "cifar": SearchSpace(
        name="cifar", in_channels=3, resolution=32, stem_channels=24, stem_stride=1,
        stages=(elastic_stage(24, 1, (1, 2)), elastic_stage(32, 2, (2, 3, 4)), elastic_stage(48, 2, (2, 3, 4)),
                elastic_stage(96, 2, (2, 3, 4)), elastic_stage(128, 1, (2, 3, 4))),
        head_channels=512, resolution_choices=(24, 28, 32)),
    # Once-for-All's MobileNetV3 space (ofa_mbv3_d234_e346_k357_w1.0) at ImageNet's 224 px: stem 16
    # stride 2 (h-swish), a fixed first block, five elastic stages, a 960-wide head and a 1280-wide
    # feature mix. About 100-600 M MACs at 224; `edge_eas init --resolution` runs it at 128-224.
    "mbv3": SearchSpace(
        name="mbv3", in_channels=3, resolution=224, stem_channels=16, stem_stride=2,
        stages=(StageSpec(24, 2, (2, 3, 4), "relu", False), StageSpec(40, 2, (2, 3, 4), "relu", True),
                StageSpec(80, 2, (2, 3, 4), "hswish", False), StageSpec(112, 1, (2, 3, 4), "hswish", True),
                StageSpec(160, 2, (2, 3, 4), "hswish", True)),
        head_channels=960, kernel_choices=(3, 5, 7), expand_choices=(3, 4, 6), stem_act="hswish",
        first_block=True, head_act="hswish", mix_channels=1280),
}
