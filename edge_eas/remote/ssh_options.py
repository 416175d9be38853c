"""How to reach a device over SSH: the options (timeouts, keep-alive, retries, backoff, known
hosts, key) from the target's [connection] table, EDGE_EAS_SSH_* variables and the command
line's overrides (an SSHOverrides, built by commands/ from the flags), in that order of precedence."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from edge_eas.errors import UserError
from edge_eas.devices.targets import Target
from edge_eas.common.toml_compat import tomllib

DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"
_TUNABLES = ("connect_timeout", "command_timeout", "keepalive", "retries", "backoff")
_ENV_PREFIX = "EDGE_EAS_SSH_"  # e.g. EDGE_EAS_SSH_COMMAND_TIMEOUT=30
PASSPHRASE_ENV = "EDGE_EAS_KEY_PASSPHRASE"


@dataclass(frozen=True)
class SSHOverrides:
    """What the command line overrides in a target's connection (--host, --key,
    --trust-new-host): plain data, so nothing below commands/ reads an argparse Namespace."""
    host: str | None = None  # user@addr[:port]
    key: str | None = None  # SSH private key
    trust_new_host: bool = False  # accept an unknown host key and record it


@dataclass(frozen=True)
class SSHOptions:
    """How patient to be with a device. Timeouts in seconds; `command_timeout` is also the
    longest silence tolerated while streaming (a cut link shows up as silence). The defaults
    suit a Raspberry Pi 3B: its Python and numpy start in seconds and an offline pip install
    takes minutes, while the device agent sends a heartbeat line several times per timeout
    (`heartbeat_s`), so a slow board never looks like a dead link."""
    connect_timeout: float = 10.0
    command_timeout: float = 600.0
    keepalive: int = 5
    retries: int = 3
    backoff: float = 0.5
    trust_new_host: bool = False
    key: str | None = None
    host: str | None = None

    @property
    def heartbeat_s(self) -> float:
        """How often the device agent must speak: four beats per tolerated silence, at most every
        30 s (keep-alives and TCP_USER_TIMEOUT notice a cut link sooner anyway)."""
        return min(30.0, self.command_timeout / 4)


def ssh_options(target: Target, overrides: SSHOverrides | None = None) -> SSHOptions:
    """Options from (lowest to highest precedence) defaults, the target's `[connection]` table
    (connect_timeout, command_timeout, keepalive, retries, backoff), EDGE_EAS_SSH_* variables
    and the command line's `overrides` (--host, --key, --trust-new-host)."""
    values: dict[str, Any] = {}
    values.update(_tunables_from_toml(target.path))
    for name in _TUNABLES:
        env = os.environ.get(_ENV_PREFIX + name.upper())
        if env is not None:
            values[name] = _number(env, f"${_ENV_PREFIX + name.upper()}", name)
    cli = overrides or SSHOverrides()
    return replace(SSHOptions(), **values, host=cli.host, key=cli.key, trust_new_host=cli.trust_new_host)


def _tunables_from_toml(path: Path) -> dict[str, Any]:
    try:
        table = tomllib.loads(Path(path).read_text()).get("connection", {})
    except (OSError, tomllib.TOMLDecodeError):
        return {}  # load_target already reported unreadable files
    return {k: _number(table[k], f"{path}: [connection] {k}", k) for k in _TUNABLES if k in table}


def _number(value: Any, where: str, name: str) -> float | int:
    """retries and backoff may be 0; timeouts and keep-alive must be positive."""
    try:
        num = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{where} must be a number, got {value!r}") from None
    if isinstance(value, bool) or num < 0 or (num == 0 and name not in ("retries", "backoff")):
        raise UserError(f"{where} must be a positive number, got {value!r}")
    return int(num) if name in ("retries", "keepalive") else num
