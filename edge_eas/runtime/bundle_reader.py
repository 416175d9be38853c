"""Open and verify a `.eas` bundle on the device (numpy only).

A bundle is a zip archive: manifest.json (+ manifest.sig), supernet.safetensors,
generator.safetensors, calibration.safetensors. Every member's SHA-256 is checked against
the manifest, and the signature against trusted keys when given, before any weight is used.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from . import safetensors_io
from .quant import decompress
from .signing import KeyLike, SignatureError, verify

FORMAT = "edge-eas-bundle"
FORMAT_VERSION = 1
MANIFEST, SIGNATURE = "manifest.json", "manifest.sig"
MANIFEST_DIGEST_PREFIX = b"edge-eas manifest sha256 "
REQUIRED = ("supernet.safetensors", "generator.safetensors", "calibration.safetensors")


class BundleError(ValueError):
    """The bundle is corrupt, truncated, tampered with, or not trusted."""


@dataclass
class Bundle:
    path: Path
    manifest: dict[str, Any]
    members: dict[str, bytes]
    signed_by: str | None = None
    sha256: str = ""
    _cache: dict[str, dict[str, np.ndarray]] = field(default_factory=dict, repr=False)

    def tensors(self, member: str) -> dict[str, np.ndarray]:
        if member not in self._cache:
            try:
                self._cache[member] = safetensors_io.loads(self.members[member])
            except safetensors_io.SafetensorsError as exc:
                raise BundleError(f"{self.path}: member {member}: {exc}") from None
        return self._cache[member]

    def supernet_state(self) -> dict[str, np.ndarray]:
        """Supernet weights as float32 (int8/fp16 dequantised)."""
        return decompress(self.tensors("supernet.safetensors"))

    def calibration(self) -> tuple[np.ndarray, np.ndarray]:
        t = self.tensors("calibration.safetensors")
        return t["images"], t["labels"]

    def generator(self):  # type: ignore[no-untyped-def]
        from ..generator import from_meta
        m = self.manifest
        return from_meta(m["space"], len(m["class_names"]), self.tensors("generator.safetensors"), m["generator"])


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def open_bundle(path: str | Path, trusted_keys: Iterable[KeyLike] | None = None) -> Bundle:
    """Read and fully verify a bundle; raise BundleError with a clear message otherwise."""
    p = Path(path)
    if not p.is_file():
        raise BundleError(f"bundle {p} does not exist")
    raw = p.read_bytes()
    try:
        with zipfile.ZipFile(p) as zf:
            names = zf.namelist()
            if len(set(names)) != len(names):
                raise BundleError(f"{p}: duplicate member names (tampered bundle)")
            members = {n: zf.read(n) for n in names}
            comment = zf.comment
    except zipfile.BadZipFile as exc:
        raise BundleError(f"{p} is not a readable bundle (truncated or corrupt): {exc}") from None
    except (zipfile.LargeZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
        raise BundleError(f"{p}: cannot read bundle member: {exc}") from None
    except Exception as exc:  # zlib.error and CRC mismatches surface as various types
        raise BundleError(f"{p}: corrupt bundle member ({type(exc).__name__}: {exc})") from None
    if MANIFEST not in members:
        raise BundleError(f"{p} has no {MANIFEST}: not an edge_eas bundle")
    if comment != MANIFEST_DIGEST_PREFIX + _sha256(members[MANIFEST]).encode():
        raise BundleError(f"{p}: {MANIFEST} does not match its recorded SHA-256 (tampered or corrupt)")
    try:
        manifest = json.loads(members[MANIFEST].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise BundleError(f"{p}: {MANIFEST} is not valid JSON (corrupt or tampered)") from None
    if manifest.get("format") != FORMAT:
        raise BundleError(f"{p} is not an edge_eas bundle (format {manifest.get('format')!r})")
    if int(manifest.get("version", 0)) > FORMAT_VERSION:
        raise BundleError(f"{p} uses bundle format {manifest.get('version')}, newer than this runtime's "
                          f"{FORMAT_VERSION}: upgrade edge_eas on the device")
    declared = manifest.get("members", {})
    expected = set(declared) | {MANIFEST} | ({SIGNATURE} if SIGNATURE in members else set())
    if set(members) != expected:
        extra, missing = sorted(set(members) - expected), sorted(expected - set(members))
        raise BundleError(f"{p}: members do not match the manifest (unexpected {extra}, missing {missing})")
    for name in REQUIRED:
        if name not in declared:
            raise BundleError(f"{p}: manifest lists no {name}")
    for name, info in declared.items():
        if _sha256(members[name]) != info.get("sha256"):
            raise BundleError(f"{p}: member {name} does not match its SHA-256 in the manifest (tampered or corrupt)")
    signature = None
    if SIGNATURE in members:
        try:
            signature = json.loads(members[SIGNATURE].decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise BundleError(f"{p}: {SIGNATURE} is not valid JSON (tampered)") from None
    signed_by = None
    keys = list(trusted_keys or [])
    if keys:
        try:
            signed_by = verify(members[MANIFEST], signature, keys)
        except SignatureError as exc:
            raise BundleError(f"{p}: {exc}") from None
    return Bundle(p, manifest, members, signed_by, _sha256(raw))
