"""Ed25519 bundle signatures (via `cryptography`): the signature covers manifest.json, which
holds the SHA-256 of every other member, so one check covers the whole bundle."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterable, Union

KeyLike = Union[str, Path, bytes]


class SignatureError(ValueError):
    pass


def _crypto():  # type: ignore[no-untyped-def]
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise SignatureError("signed bundles need the 'cryptography' package: pip install cryptography") from None
    return serialization, ed25519


def key_id(public_raw: bytes) -> str:
    return hashlib.sha256(public_raw).hexdigest()[:16]


def generate_keypair(path: Path) -> tuple[Path, str]:
    """Write a private key (PEM, mode 600) at `path` and its public key at `path.pub`."""
    serialization, ed25519 = _crypto()
    if path.exists():
        raise FileExistsError(f"{path} already exists; refusing to overwrite a key")
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    pub = key.public_key()
    pub_path = Path(str(path) + ".pub")
    pub_path.write_bytes(pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return pub_path, key_id(raw)


def sign(message: bytes, private_key_path: Path) -> dict[str, str]:
    serialization, ed25519 = _crypto()
    try:
        key = serialization.load_pem_private_key(Path(private_key_path).read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise SignatureError(f"cannot read private key {private_key_path}: {exc}") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise SignatureError(f"{private_key_path} is not an Ed25519 private key (make one with `edge_eas keygen`)")
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"algorithm": "ed25519", "key_id": key_id(raw), "signature": key.sign(message).hex()}


def _load_public(key: KeyLike):  # type: ignore[no-untyped-def]
    serialization, ed25519 = _crypto()
    data = key if isinstance(key, bytes) else Path(key).read_bytes()
    try:
        pub = serialization.load_pem_public_key(data)
    except ValueError:
        try:  # a private key file also identifies its public key
            pub = serialization.load_pem_private_key(data, password=None).public_key()
        except ValueError:
            raise SignatureError(f"{key if not isinstance(key, bytes) else 'key'} is not a PEM Ed25519 key") from None
    if not isinstance(pub, ed25519.Ed25519PublicKey):
        raise SignatureError("trusted key is not an Ed25519 public key")
    return pub


def key_id_of(key: KeyLike) -> str:
    """The id (`key_id`) of a PEM public key, or of a private key's public half."""
    serialization, _ = _crypto()
    return key_id(_load_public(key).public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))


def verify(message: bytes, signature: dict[str, str] | None, trusted_keys: Iterable[KeyLike]) -> str:
    """Return the key id that signed `message`, or raise SignatureError."""
    serialization, _ = _crypto()
    keys = [_load_public(k) for k in trusted_keys]
    if signature is None:
        raise SignatureError("bundle is not signed, but trusted keys were given: refusing it")
    if signature.get("algorithm") != "ed25519":
        raise SignatureError(f"unsupported signature algorithm {signature.get('algorithm')!r}")
    from cryptography.exceptions import InvalidSignature
    try:
        sig = bytes.fromhex(signature["signature"])
    except (KeyError, ValueError):
        raise SignatureError("bundle signature is malformed") from None
    for pub in keys:
        try:
            pub.verify(sig, message)
        except InvalidSignature:
            continue
        return key_id(pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))
    raise SignatureError("bundle signature does not match any trusted key (wrong key or tampered manifest)")
