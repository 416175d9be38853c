"""A bundle's manifest.json as one typed value, with the bundle's constants beside it.

The writer (host/bundle.py) builds a `Manifest` and stores `to_bytes()`; the reader
(format/bundle_reader.py) turns the stored bytes back with `from_json`, the one place that
validates them. Every field is one some reader uses or one a person reads (provenance); fields
found in older bundles that no reader uses (`generator.decision_sizes`) are skipped, so those
bundles still load. numpy-free and torch-free: the device reads it too.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

FORMAT = "edge-eas-bundle"
FORMAT_VERSION = 1
MANIFEST, SIGNATURE = "manifest.json", "manifest.sig"
MANIFEST_DIGEST_PREFIX = b"edge-eas manifest sha256 "
REQUIRED = ("supernet.safetensors", "generator.safetensors", "calibration.safetensors")


class BundleError(ValueError):
    """The bundle is corrupt, truncated, tampered with, or not trusted."""


@dataclass(frozen=True)
class Member:
    """One payload file of the bundle, as the manifest declares it."""
    sha256: str
    size: int

    @classmethod
    def of(cls, data: bytes) -> "Member":
        return cls(hashlib.sha256(data).hexdigest(), len(data))


@dataclass(frozen=True)
class GeneratorMeta:
    """What the numpy generator needs beside its weights: per-kind cost tables (SlotCostTable
    dicts) and the budget range of each kind it was trained on."""
    cost_tables: dict[str, Any]
    budget_bounds: dict[str, Any]


@dataclass(frozen=True)
class AccuracyMeta:
    """What the numpy accuracy predictor needs beside its weights (accuracy.safetensors): how far
    off it is, in binomial standard errors of the task's validation images (archgen/accuracy.py)."""
    images_per_class: float            # validation images per class the predictor was fitted on
    se_residual_p10: float             # held-out archs' (measured - predicted) / SE: 10th percentile
    se_residual_p90: float             # ... and 90th
    margin_se: float | None = None     # calibrated on answers (host/accuracy_margin.py); None: from the residuals


@dataclass(frozen=True)
class Created:
    time: str
    edge_eas: str


@dataclass(frozen=True)
class Weights:
    dtype: str
    quantization: str | None


@dataclass(frozen=True)
class CalibrationInfo:
    images_per_class: int
    images: int


# The JSON kind a field must have, by its dotted name; records are checked field by field.
_KINDS: dict[str, type] = {"space": dict, "class_names": list, "preprocess": dict, "cost_models": dict,
                           "untrained": bool, "generator.cost_tables": dict, "generator.budget_bounds": dict}
_RECORDS: dict[str, Any] = {"generator": GeneratorMeta, "created": Created, "weights": Weights,
                            "calibration": CalibrationInfo, "accuracy": AccuracyMeta}
_OMITTED_WHEN_NONE = ("accuracy",)  # later optional fields: a bundle without one keeps its earlier bytes


@dataclass(frozen=True)
class Manifest:
    """The bundle's description: the search space (a SearchSpace dict: format/ does not import
    net/), the classes, the input preprocessing, the generator's cost tables, the members'
    digests, per-target latency models (`cost_models`: target -> engine/threads -> model)."""
    space: dict[str, Any]
    class_names: list[str]
    preprocess: dict[str, Any]
    generator: GeneratorMeta
    members: dict[str, Member]
    created: Created | None = None
    data: str | None = None              # the data set's label, never a path of the training machine
    weights: Weights | None = None
    calibration: CalibrationInfo | None = None
    cost_models: dict[str, Any] = field(default_factory=dict)
    untrained: bool = False              # an `edge_eas init` run: latency work only
    accuracy: AccuracyMeta | None = None  # the accuracy predictor, where the run has one (accuracy.safetensors)
    format: str = FORMAT
    version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        for name in _OMITTED_WHEN_NONE:
            if doc[name] is None:
                del doc[name]
        return doc

    def to_bytes(self) -> bytes:
        """The manifest.json bytes the bundle stores (and a signature covers)."""
        return (json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes, where: str = MANIFEST) -> "Manifest":
        """Parse and validate stored bytes; `where` (the bundle's path) starts every error."""
        try:
            doc = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise BundleError(f"{where}: {MANIFEST} is not valid JSON (corrupt or tampered)") from None
        return cls.from_dict(doc, where)

    @classmethod
    def from_dict(cls, doc: Any, where: str = MANIFEST) -> "Manifest":
        _check_format(doc, where)
        members = _members(doc.get("members"), where)
        values = _pick(cls, doc, where)
        for key, record in _RECORDS.items():
            if values.get(key) is not None:
                values[key] = record(**_pick(record, values[key], where, f"{key}."))
        return cls(**{**values, "members": members})


def _check_format(doc: Any, where: str) -> None:
    found = doc.get("format") if isinstance(doc, dict) else None
    if found != FORMAT:
        raise BundleError(f"{where} is not an edge_eas bundle (format {found!r})")
    try:
        newer = int(doc.get("version", 0)) > FORMAT_VERSION
    except (TypeError, ValueError):
        newer = True
    if newer:
        raise BundleError(f"{where} uses bundle format {doc.get('version')}, newer than this runtime's "
                          f"{FORMAT_VERSION}: upgrade edge_eas on the device")


def _pick(cls: Any, doc: Any, where: str, prefix: str = "") -> dict[str, Any]:
    """The values of `cls`'s fields found in `doc`, each of its JSON kind. Keys that name no
    field are skipped: older bundles may carry them."""
    if not isinstance(doc, dict):
        raise BundleError(f"{where}: manifest field {prefix.rstrip('.')} is not a JSON object (tampered)")
    values = {}
    for f in fields(cls):
        name = prefix + f.name
        if f.name not in doc:
            if f.default is MISSING and f.default_factory is MISSING:
                raise BundleError(f"{where}: manifest has no {name} (an old or tampered bundle: re-export it)")
        elif name in _KINDS and not isinstance(doc[f.name], _KINDS[name]):
            raise BundleError(f"{where}: manifest field {name} has the wrong type (tampered)")
        else:
            values[f.name] = doc[f.name]
    return values


def _members(declared: Any, where: str) -> dict[str, Member]:
    declared = declared if isinstance(declared, dict) else {}
    for name in REQUIRED:
        if name not in declared:
            raise BundleError(f"{where}: manifest lists no {name}")
    for name, info in declared.items():
        if not (isinstance(info, dict) and isinstance(info.get("size"), int) and isinstance(info.get("sha256"), str)):
            raise BundleError(f"{where}: manifest entry for {name} has no size and SHA-256 (an old or tampered bundle: "
                              f"re-export it)")
    return {name: Member(info["sha256"], info["size"]) for name, info in declared.items()}
