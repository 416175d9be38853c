"""A task head fitted on the device, saved beside its bundle so that it outlives a restart.

One small safetensors file (`weight`, `bias`) whose metadata holds everything else as JSON: the
labels, which of them are the bundle's classes, the arch, the task vector it was generated for,
the bundle's SHA-256 (a head only fits the supernet it was fitted on), the examples' hashes and
the fit's settings. Files live in `<bundle stem>.heads/NAME.safetensors` next to the bundle.
No pickle: the device loads it with the numpy safetensors reader.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_eas.format import safetensors_io
from edge_eas.net.space import Arch

FORMAT = 1
SUFFIX = ".safetensors"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class AdaptedHead:
    """The fitted classifier rows and what they belong to."""

    name: str
    labels: tuple[str, ...]
    class_ids: tuple[int | None, ...]     # the bundle's class per label; None: a new class
    weight: np.ndarray                    # (labels, features) float32
    bias: np.ndarray                      # (labels,)
    arch: Arch
    task_classes: tuple[int, ...]         # the task vector the arch was generated for
    bundle_sha256: str
    example_hashes: tuple[tuple[str, ...], ...]
    fit: dict[str, Any] = field(default_factory=dict)  # settings and how it went
    budget: dict[str, Any] | None = None

    def to_bytes(self) -> bytes:
        meta = {"format": FORMAT, "name": self.name, "labels": list(self.labels),
                "class_ids": list(self.class_ids), "arch": self.arch.to_dict(),
                "task_classes": list(self.task_classes), "bundle_sha256": self.bundle_sha256,
                "example_hashes": [list(h) for h in self.example_hashes], "fit": self.fit, "budget": self.budget}
        return safetensors_io.dumps({"weight": np.asarray(self.weight, np.float32),
                                     "bias": np.asarray(self.bias, np.float32)},
                                    {"edge_eas_head": json.dumps(meta)})

    @classmethod
    def from_bytes(cls, data: bytes, where: str = "head") -> "AdaptedHead":
        try:
            tensors = safetensors_io.loads(data)
            meta = json.loads(_metadata(data).get("edge_eas_head", "null"))
        except (ValueError, json.JSONDecodeError) as exc:
            raise ValueError(f"{where}: not an adapted head file ({exc})") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT or set(tensors) != {"weight", "bias"}:
            raise ValueError(f"{where}: not an adapted head file of format {FORMAT}")
        head = cls(meta["name"], tuple(meta["labels"]), tuple(meta["class_ids"]), tensors["weight"],
                   tensors["bias"], Arch.from_dict(meta["arch"]), tuple(meta["task_classes"]),
                   meta["bundle_sha256"], tuple(tuple(h) for h in meta["example_hashes"]), meta.get("fit") or {},
                   meta.get("budget"))
        if head.weight.shape[0] != len(head.labels) or head.bias.shape != (len(head.labels),):
            raise ValueError(f"{where}: {head.weight.shape[0]} rows for {len(head.labels)} labels")
        return head

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "labels": list(self.labels), "class_ids": list(self.class_ids),
                "arch": self.arch.to_dict(), "task_classes": list(self.task_classes),
                "examples": [len(h) for h in self.example_hashes], "fit": self.fit, "budget": self.budget}


def heads_dir(bundle_path: Path) -> Path:
    """Where a bundle's adapted heads live: `model.eas` -> `model.heads/` beside it."""
    return bundle_path.with_name(bundle_path.stem + ".heads")


def head_path(bundle_path: Path, name: str) -> Path:
    check_name(name)
    return heads_dir(bundle_path) / f"{name}{SUFFIX}"


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise ValueError(f"head name {name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter "
                         f"or digit")
    return name


def default_name(labels: tuple[str, ...]) -> str:
    """A readable name from the labels: 'cat-dog-mug', shortened, unsafe characters dropped."""
    parts = [re.sub(r"[^A-Za-z0-9]+", "", lab.lower()) or "x" for lab in labels]
    name = "-".join(parts)
    return name[:48].rstrip("-") if len(name) > 48 else name


def list_heads(bundle_path: Path) -> list[str]:
    folder = heads_dir(bundle_path)
    return sorted(p.stem for p in folder.glob(f"*{SUFFIX}")) if folder.is_dir() else []


def _metadata(data: bytes) -> dict[str, str]:
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n].decode("utf-8"))
    meta = header.get("__metadata__") or {}
    return meta if isinstance(meta, dict) else {}
