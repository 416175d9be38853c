"""Open and verify a `.eas` bundle on the device (numpy only).

A bundle is a zip archive: manifest.json (format/manifest.py; + manifest.sig), supernet.safetensors,
generator.safetensors, calibration.safetensors. Reading is bounded (archive.py): the archive's
directory is checked before anything is inflated, the manifest and its signature (against
trusted keys when given) are verified before any payload is decompressed, and each payload is
streamed against its manifest-declared size and SHA-256 before any weight is used.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from edge_eas.format import safetensors_io
from edge_eas.format.archive import MiB, ArchiveError, BoundedArchive, Limits
from edge_eas.format.manifest import MANIFEST, MANIFEST_DIGEST_PREFIX, SIGNATURE, BundleError, Manifest
from edge_eas.format.quant import decompress
from edge_eas.format.signing import KeyLike, SignatureError, verify

MANIFEST_MAX_BYTES = 4 * MiB
SIGNATURE_MAX_BYTES = 64 * 1024


@dataclass
class Bundle:
    path: Path
    manifest: Manifest
    members: dict[str, bytes]
    signed_by: str | None = None       # key id, when verified against trusted keys
    sha256: str = ""
    signature: dict[str, Any] | None = None  # manifest.sig as found (unverified without trusted keys)
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


def open_bundle(path: str | Path, trusted_keys: Iterable[KeyLike] | None = None,
                limits: Limits = Limits(), allow_unsigned: frozenset[str] = frozenset()) -> Bundle:
    """Read and fully verify a bundle, within `limits`; raise BundleError with a clear message.
    With trusted keys an unsigned bundle is refused, unless its SHA-256 is in `allow_unsigned`
    (a device trust store's pin for a bundle deployed with --allow-unsigned)."""
    p = Path(path)
    if not p.is_file():
        raise BundleError(f"bundle {p} does not exist")
    try:
        with BoundedArchive(p, limits) as ar:
            return _verified(p, ar, list(trusted_keys or []), limits, allow_unsigned)
    except ArchiveError as exc:
        raise BundleError(str(exc)) from None


def _verified(p: Path, ar: BoundedArchive, keys: list[KeyLike], limits: Limits,
              allow_unsigned: frozenset[str]) -> Bundle:
    if MANIFEST not in ar.names:
        raise BundleError(f"{p} has no {MANIFEST}: not an edge_eas bundle")
    manifest_bytes, manifest_sha = ar.read(MANIFEST, MANIFEST_MAX_BYTES)
    if ar.comment != MANIFEST_DIGEST_PREFIX + manifest_sha.encode():
        raise BundleError(f"{p}: {MANIFEST} does not match its recorded SHA-256 (tampered or corrupt)")
    manifest = Manifest.from_json(manifest_bytes, str(p))
    declared = manifest.members
    has_sig = SIGNATURE in ar.names
    expected = set(declared) | {MANIFEST} | ({SIGNATURE} if has_sig else set())
    if set(ar.names) != expected:
        extra, missing = sorted(set(ar.names) - expected), sorted(expected - set(ar.names))
        raise BundleError(f"{p}: members do not match the manifest (unexpected {extra}, missing {missing})")
    signature = None
    if has_sig:
        sig_bytes, _ = ar.read(SIGNATURE, SIGNATURE_MAX_BYTES)
        try:
            signature = json.loads(sig_bytes.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise BundleError(f"{p}: {SIGNATURE} is not valid JSON (tampered)") from None
    signed_by = None
    file_sha = _file_sha256(p)
    pinned = signature is None and file_sha in allow_unsigned
    if keys and not pinned:  # before any payload is inflated: an untrusted bundle costs only its manifest
        try:
            signed_by = verify(manifest_bytes, signature, keys)
        except SignatureError as exc:
            raise BundleError(f"{p}: {exc}") from None
    members = {MANIFEST: manifest_bytes}
    for name, info in declared.items():
        data, sha = ar.read(name, limits.max_member_bytes, expected_size=info.size)
        if sha != info.sha256:
            raise BundleError(f"{p}: member {name} does not match its SHA-256 in the manifest (tampered or corrupt)")
        members[name] = data
    return Bundle(p, manifest, members, signed_by, file_sha, signature)


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(MiB), b""):
            h.update(block)
    return h.hexdigest()
