"""`edge_eas keygen`: an Ed25519 key pair for signing bundles (KEYFILE and KEYFILE.pub)."""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_eas.common.console import emit_json
from edge_eas.common.requirements import Need, modules
from edge_eas.format.signing import generate_keypair


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, required=True, help="private key file to create (public key: KEYFILE.pub)")


def requires(args: argparse.Namespace) -> list[Need]:
    return modules("cryptography", why="Ed25519 keys")


def run(args: argparse.Namespace) -> int:
    if args.out.exists():
        raise FileExistsError(f"{args.out} already exists; refusing to overwrite a key")
    pub, kid = generate_keypair(args.out)
    doc = {"private_key": str(args.out), "public_key": str(pub), "key_id": kid}
    if args.json:
        emit_json(doc)
    else:
        print(f"private key {args.out} (keep it secret), public key {pub}, key id {kid}")
    return 0
