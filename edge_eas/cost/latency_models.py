"""One target's calibrated latency models, and the one reader and writer of their files.

Where they are kept (one format for all three, `LatencyModels.to_dict`):

- on the host, `models_file(TARGET)` in common/paths.py: what `edge_eas calibrate` writes and
  deploy pushes (host only: it depends on the user's home);
- in a run, `RUN/latency_models.json` (`run_path`): `{target: {engine/tN: model}}`, one entry
  per target, exported into the bundle's `cost_models`;
- on the device, `latency_models.json` beside the bundle (`beside`), as deploy ships it.

A model is filed under `engine/tN` (`model_key`), both as the latest fit and under the digest
of the search space it was fitted for: a model fitted for another space predicts wrongly, so
`for_space(space).get(engine, threads)` never returns one.

numpy only: the device runtime reads these files too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Sequence

from edge_eas.common.fileio import atomic_write_json
from edge_eas.cost.latency import LatencyModel, model_key
from edge_eas.net.space import SearchSpace

FILE_NAME = "latency_models.json"
ModelDicts = Dict[str, Dict[str, Any]]  # engine/tN -> LatencyModel.to_dict()


@dataclass
class LatencyModels:
    """`latest`: the last fit per engine/tN, whatever its space; `by_space`: per space digest."""

    target: str | None = None
    latest: ModelDicts = field(default_factory=dict)
    by_space: Dict[str, ModelDicts] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any] | None) -> "LatencyModels":
        """A models file (`{"target", "models", "by_space"}`) or a run's per-target entry
        (`{engine/tN: model}`, as in a bundle's `cost_models`)."""
        doc = dict(doc or {})
        if "models" not in doc and "by_space" not in doc:
            return cls(latest=doc)
        return cls(doc.get("target"), dict(doc.get("models") or {}),
                   {d: dict(m) for d, m in (doc.get("by_space") or {}).items()})

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "models": self.latest, "by_space": self.by_space}

    @classmethod
    def read(cls, path: Path) -> "LatencyModels":
        """The file at `path`; empty when there is none."""
        p = Path(path)
        return cls.from_dict(json.loads(p.read_text())) if p.is_file() else cls()

    def write(self, path: Path) -> None:
        atomic_write_json(Path(path), self.to_dict())

    def add(self, models: ModelDicts, space_digest: str, target: str | None = None) -> None:
        """Newly fitted models of one space: they become the latest and are filed under it."""
        self.target = target or self.target
        self.latest.update(models)
        self.by_space.setdefault(space_digest, {}).update(models)

    def merge(self, other: "LatencyModels") -> None:
        """`other`'s models over these (pushed to the device after the bundle: newer)."""
        self.target = other.target or self.target
        self.latest.update(other.latest)
        for digest, models in other.by_space.items():
            self.by_space.setdefault(digest, {}).update(models)

    def __bool__(self) -> bool:
        return bool(self.latest or self.by_space)

    def __contains__(self, key: object) -> bool:
        """Whether a model is filed under `key` (engine/tN), for any space."""
        return key in self.latest or any(key in m for m in self.by_space.values())

    def for_space(self, space: SearchSpace) -> "SpaceModels":
        return SpaceModels(self, space)

    # ---- where they are kept (the host's file: common/paths.models_file) --------------------
    @staticmethod
    def run_path(run_dir: Path) -> Path:
        return Path(run_dir) / FILE_NAME

    @staticmethod
    def beside(bundle: Path) -> Path:
        """Where deploy puts the target's models on the device: next to the deployed bundle."""
        return Path(bundle).parent / FILE_NAME

    @classmethod
    def run_document(cls, run_dir: Path) -> dict[str, ModelDicts]:
        """A run's `{target: {engine/tN: model}}` (empty before any calibration): what an
        exported bundle carries as its `cost_models`."""
        p = cls.run_path(run_dir)
        return json.loads(p.read_text()) if p.is_file() else {}

    @classmethod
    def of_run(cls, run_dir: Path, target: str) -> "LatencyModels":
        return cls.from_dict(cls.run_document(run_dir).get(target, {}))

    @classmethod
    def save_to_run(cls, run_dir: Path, target: str, models: ModelDicts) -> None:
        doc = cls.run_document(run_dir)
        doc.setdefault(target, {}).update(models)
        atomic_write_json(cls.run_path(run_dir), doc)


@dataclass(frozen=True)
class SpaceModels:
    """The models of one target usable for one search space."""

    models: LatencyModels
    space: SearchSpace

    def get(self, engine: str, threads: int | None) -> LatencyModel | None:
        """The model for engine/threads fitted for this space (the one filed under its digest,
        else the latest if it was made for it); None when there is none."""
        key = model_key(engine, threads)
        for source in (self.models.by_space.get(self.space.digest(), {}), self.models.latest):
            data = source.get(key)
            if isinstance(data, dict) and "target" in data:
                model = LatencyModel.from_dict(data)
                if model.made_for(self.space):
                    return model
        return None

    def first(self, engines: Sequence[str], threads: int | None) -> LatencyModel | None:
        """The model of the first of `engines` that has one (engine "auto": whichever the device
        would pick that was calibrated)."""
        return next((m for m in (self.get(e, threads) for e in engines) if m is not None), None)
