"""The device's trust store: which keys may sign what this device runs.

`edge_eas deploy` installs it under the target's runtime_dir as `trust/` (a symlink to an
immutable `trust-<hash>/` directory, switched atomically): `trust.json` plus one PEM public
key per trusted signer. While a store is present, the device agent and `Runtime.load` without
explicit keys refuse bundles and latency models that are unsigned or signed by no key in it.
The only exception is a bundle deployed with `--allow-unsigned`, pinned by its SHA-256 in
`trust.json`, so a file swapped in behind deploy's back is still refused.

The store is found through `$EDGE_EAS_TRUST_DIR`, else next to the runtime's venv
(`<runtime_dir>/venv` -> `<runtime_dir>/trust`), which is where deploy puts both.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from edge_eas.format.signing import SignatureError, verify

TRUST_ENV = "EDGE_EAS_TRUST_DIR"
STORE_FILE = "trust.json"
STORE_FORMAT = "edge-eas-trust"


class TrustError(ValueError):
    """Refused by the trust store: unsigned, wrongly signed, or the store itself is broken."""


@dataclass(frozen=True)
class TrustStore:
    path: Path
    keys: tuple[Path, ...]
    allow_unsigned: frozenset[str]  # SHA-256 of bundles deployed with --allow-unsigned

    @classmethod
    def find(cls) -> Optional["TrustStore"]:
        """The store this runtime answers to, or None where there is none (a host, an old device)."""
        env = os.environ.get(TRUST_ENV)
        where = Path(env) if env else Path(sys.prefix).parent / "trust"
        if not (where / STORE_FILE).is_file():
            if env:
                raise TrustError(f"${TRUST_ENV} points at {where}, which holds no {STORE_FILE}")
            return None
        return cls.load(where)

    @classmethod
    def load(cls, path: Path) -> "TrustStore":
        try:
            doc = json.loads((path / STORE_FILE).read_text())
        except (OSError, ValueError) as exc:
            raise TrustError(f"trust store {path} is unreadable ({exc}): refusing everything until deploy "
                             f"reinstalls it") from None
        if not isinstance(doc, dict) or doc.get("format") != STORE_FORMAT:
            raise TrustError(f"trust store {path}: {STORE_FILE} is not an edge_eas trust store")
        keys = tuple(path / name for name in doc.get("keys", {}).values())
        missing = [k for k in keys if not k.is_file()]
        if missing:
            raise TrustError(f"trust store {path}: key file {missing[0].name} is missing")
        return cls(path, keys, frozenset(doc.get("allow_unsigned", [])))

    def check_bundle(self, signed: bool, bundle_sha256: str) -> None:
        """Called with what open_bundle verified (signature against `self.keys` when signed)."""
        if not signed and bundle_sha256 not in self.allow_unsigned:
            raise TrustError(f"refused: the bundle is unsigned and this device's trust store ({self.path}) accepts "
                             f"only bundles signed by its keys (deploy with --allow-unsigned to pin one)")

    def verify_document(self, data: bytes, signature: dict[str, Any] | None, what: str) -> str:
        """Key id that signed `data`, or TrustError (unsigned, or no key of the store matches)."""
        if signature is None:
            raise TrustError(f"refused: {what} is unsigned and this device has a trust store ({self.path})")
        try:
            return verify(data, signature, self.keys)
        except SignatureError as exc:
            raise TrustError(f"refused: {what}: {exc}") from None


def store_document(key_files: dict[str, str], allow_unsigned: list[str]) -> bytes:
    """trust.json as deploy writes it: key id -> file name, and pinned unsigned bundles."""
    return (json.dumps({"format": STORE_FORMAT, "version": 1, "keys": key_files,
                        "allow_unsigned": sorted(set(allow_unsigned))}, indent=1, sort_keys=True) + "\n").encode()
