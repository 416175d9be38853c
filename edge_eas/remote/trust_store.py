"""The device trust store, from the host: which keys deploy installs, and whether a bundle may go.

Keys come from the target's `[trust] keys` plus `deploy --trust-key NEW.pub` (rotation: add the
new key, deploy bundles signed by it, then drop the old key from the target and deploy again:
bundles signed only by the old key stop loading). The store is rewritten from that list on every
deploy, into an immutable `<runtime_dir>/trust-<hash>/`, and `<runtime_dir>/trust` is switched to
it by renaming a temporary symlink, as releases are. See runtime/trust.py for the device side.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_eas.errors import UserError
from edge_eas.format.bundle_reader import BundleError, open_bundle
from edge_eas.format.signing import SignatureError, key_id_of
from edge_eas.runtime.trust import STORE_FILE, store_document


@dataclass(frozen=True)
class StorePlan:
    """What the device's trust store will hold after this deploy."""
    keys: dict[str, bytes]                       # key id -> PEM public key
    pins: tuple[str, ...] = ()                   # SHA-256 of unsigned bundles allowed (--allow-unsigned)
    signed_by: str | None = None                 # key id that signed the bundle being deployed
    warnings: list[str] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return bool(self.keys)

    def files(self) -> dict[str, bytes]:
        out = {f"{kid}.pub": pem for kid, pem in self.keys.items()}
        out[STORE_FILE] = store_document({kid: f"{kid}.pub" for kid in self.keys}, list(self.pins))
        return out

    @property
    def dirname(self) -> str:
        h = hashlib.sha256(json.dumps({k: v.hex() for k, v in sorted(self.files().items())}).encode())
        return f"trust-{h.hexdigest()[:16]}"

    def summary(self, allow_unsigned: bool) -> dict[str, Any]:
        return {"store": self.active, "keys": sorted(self.keys), "signed_by": self.signed_by,
                "allow_unsigned": allow_unsigned, "pinned_unsigned": list(self.pins)}


def plan_store(key_paths: list[Path], bundle: Path, bundle_sha: str, signed: bool, allow_unsigned: bool,
               kept_pins: tuple[str, ...] = ()) -> StorePlan:
    """Check locally, before anything is sent, that the device will accept `bundle`."""
    keys: dict[str, bytes] = {}
    for path in key_paths:
        if not path.is_file():
            raise UserError(f"trust key {path} does not exist ([trust] keys in the target, or --trust-key)")
        try:
            keys[key_id_of(path)] = path.read_bytes()
        except SignatureError as exc:
            raise UserError(f"trust key {path}: {exc}") from None
    warnings = []
    if not signed and not allow_unsigned:
        raise UserError(f"bundle {bundle} is unsigned: sign it (edge_eas export --sign KEY, with KEY.pub in the "
                        f"target's [trust] keys) or deploy it with --allow-unsigned")
    signed_by = None
    if signed and keys:
        try:
            signed_by = open_bundle(bundle, [*keys.values()]).signed_by
        except BundleError as exc:
            raise UserError(f"the device would refuse {bundle}: {str(exc).split(': ', 1)[-1]} (its trust store will "
                            f"hold keys {', '.join(sorted(keys))})") from None
    if not keys:
        warnings.append("no [trust] keys for this target: the device keeps no trust store and accepts any bundle "
                        "whose hashes match its own manifest (add [trust] keys = [\"release.pub\"])")
    if not signed:
        warnings.append("deployed UNSIGNED with --allow-unsigned" + (": pinned by its SHA-256 in the device's trust "
                                                                        "store" if keys else ""))
    pins = tuple(sorted(set(kept_pins) | ({bundle_sha} if not signed else set()))) if keys else ()
    return StorePlan(keys, pins, signed_by, warnings)


def kept_pins(device_store: dict[str, Any] | None, releases: list[str | None]) -> tuple[str, ...]:
    """Pins of unsigned bundles that stay: those of releases still current or previous (rollback)."""
    if not device_store:
        return ()
    live = {r.rsplit("/", 1)[-1] for r in releases if r}
    return tuple(p for p in device_store.get("allow_unsigned", []) if p[:16] in live)
