"""The SSH override flags of the commands that reach devices (`--host`, `--key`,
`--trust-new-host`), and the one place they become an SSHOverrides: nothing below commands/
reads an argparse Namespace."""

from __future__ import annotations

import argparse

from edge_eas.remote.ssh_options import SSHOverrides


def add_ssh_arguments(p: argparse.ArgumentParser, host_help: str, trust_help: str) -> None:
    p.add_argument("--host", help=host_help)
    p.add_argument("--key", help="override: SSH private key")
    p.add_argument("--trust-new-host", action="store_true", help=trust_help)


def ssh_overrides(args: argparse.Namespace) -> SSHOverrides:
    """The flags as data, built once per command run."""
    return SSHOverrides(host=args.host, key=args.key, trust_new_host=args.trust_new_host)
