"""Cut one sub-network's weights out of the supernet's state, in numpy.

Mirrors `Supernet.extract_weights` (host, torch) exactly — same slices, same output names —
so the device needs no torch; a test checks the two agree bit for bit.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..space import Arch, SearchSpace

BN_KEYS = ("weight", "bias", "running_mean", "running_var")


def _centre(w: np.ndarray, k: int) -> np.ndarray:
    start = (w.shape[-1] - k) // 2
    return w[..., start:start + k, start:start + k]


def slice_subnet(state: dict[str, np.ndarray], space: SearchSpace, arch: Arch,
                 classes: Sequence[int] | None = None) -> dict[str, np.ndarray]:
    space.validate(arch)
    out: dict[str, np.ndarray] = {}

    def bn(dst: str, src: str, c: int) -> None:
        for key in BN_KEYS:
            full = state.get(f"{src}.{key}")
            if full is None and key.startswith("running_"):
                # bundles omit the supernet's shared BN statistics: every extracted sub-network
                # gets its own from `recalibrate` on the device
                full = np.zeros(c, np.float32) if key == "running_mean" else np.ones(c, np.float32)
            out[f"{dst}.bn.{key}"] = full[:c]

    out["stem.conv.weight"] = state["stem.weight"]
    bn("stem", "stem_bn", space.stem_channels)
    i = 0
    slot = 0
    for s, stage in enumerate(space.stages):
        for b in range(stage.max_depth):
            if b < arch.depths[s]:
                k, e = arch.kernels[s][b], arch.expands[s][b]
                src = f"blocks.{slot + b}"
                w_expand = state[f"{src}.expand.weight"]
                cin = w_expand.shape[1]
                hidden = cin * e
                dst = f"blocks.{i}"
                out[f"{dst}.expand.conv.weight"] = w_expand[:hidden]
                bn(f"{dst}.expand", f"{src}.expand_bn.bn", hidden)
                out[f"{dst}.dw.conv.weight"] = _centre(state[f"{src}.dw.weight"][:hidden], k)
                bn(f"{dst}.dw", f"{src}.dw_bn.bn", hidden)
                out[f"{dst}.project.conv.weight"] = state[f"{src}.project.weight"][:, :hidden]
                bn(f"{dst}.project", f"{src}.project_bn.bn", stage.out_channels)
                i += 1
        slot += stage.max_depth
    out["head.conv.weight"] = state["head.weight"]
    bn("head", "head_bn", space.head_channels)
    rows = slice(None) if classes is None else list(classes)
    out["classifier.weight"] = state["classifier.weight"][rows]
    out["classifier.bias"] = state["classifier.bias"][rows]
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}
