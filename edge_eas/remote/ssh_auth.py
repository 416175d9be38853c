"""Who we trust and who we are over SSH: the host-key policies (reject unknown keys; trust on
first use only when asked), OpenSSH fingerprints, loading the user's key (ssh-agent,
$EDGE_EAS_KEY_PASSPHRASE or a prompt), and which connection errors are worth a retry."""

from __future__ import annotations

import base64
import errno
import getpass
import hashlib
import os
import socket
import sys
from pathlib import Path

import paramiko

from edge_eas.common.console import info
from edge_eas.errors import DeviceRefused
from edge_eas.devices.targets import Connection
from edge_eas.remote.ssh_options import PASSPHRASE_ENV


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH-style SHA256 fingerprint, what `ssh-keygen -lf` prints."""
    digest = base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")
    return f"{key.get_name()} SHA256:{digest}"


class RejectUnknown(paramiko.MissingHostKeyPolicy):
    def __init__(self, known_hosts: Path) -> None:
        self.known_hosts = known_hosts

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        raise DeviceRefused(f"host {hostname} is not in {self.known_hosts} (it offers {fingerprint(key)}): provision "
                        f"its host key there after checking the fingerprint on the device, or pass "
                        f"--trust-new-host to record it on first use")


class RecordNew(paramiko.MissingHostKeyPolicy):
    """Trust on first use, only when asked: append the key to the target's known_hosts."""

    def __init__(self, known_hosts: Path) -> None:
        self.known_hosts = known_hosts

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        self.known_hosts.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.known_hosts, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a") as f:
            f.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
        client.get_host_keys().add(hostname, key.get_name(), key)
        info(f"trusted new host {hostname} ({fingerprint(key)}), recorded in {self.known_hosts}")


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, (paramiko.BadHostKeyException, paramiko.AuthenticationException, socket.gaierror)):
        return False
    if isinstance(exc, (paramiko.ssh_exception.NoValidConnectionsError, TimeoutError, ConnectionError, EOFError)):
        return True
    if isinstance(exc, paramiko.SSHException):
        text = str(exc).lower()
        return any(s in text for s in ("banner", "timeout", "timed out", "reset", "eof", "not active"))
    if isinstance(exc, OSError):
        return exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ECONNREFUSED,
                             errno.ECONNRESET, errno.ETIMEDOUT)
    return False


def reason(exc: BaseException) -> str:
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        errs = list(exc.errors.values())
        if errs and all(getattr(e, "errno", None) == errno.ECONNREFUSED for e in errs):
            return "connection refused (is sshd running?)"
        return "; ".join(sorted({os.strerror(e.errno) if getattr(e, "errno", None) else str(e) for e in errs}))
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.errno == errno.ECONNREFUSED:
        return "connection refused (is sshd running?)"
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno)
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def key_path(conn: Connection, label: str) -> str:
    if not conn.key:
        raise DeviceRefused(f"no SSH key for {label}: set [connection] key in the target or pass --key")
    path = Path(conn.key).expanduser()
    if not path.is_file():
        raise DeviceRefused(f"SSH key {path} does not exist (set [connection] key or pass --key)")
    return str(path)

def private_key(key_path: str) -> paramiko.PKey:
    """The key file, decrypted if it is protected: by the ssh-agent that holds it, by
    $EDGE_EAS_KEY_PASSPHRASE, or by a prompt on a terminal. The passphrase is never logged."""
    try:
        return paramiko.PKey.from_path(key_path)
    except (paramiko.PasswordRequiredException, TypeError) as exc:
        # paramiko raises PasswordRequiredException for PEM keys; for OpenSSH-format keys the
        # TypeError of cryptography's loader ("Key is password-protected ...") comes through
        if isinstance(exc, TypeError) and "password" not in str(exc).lower():
            raise DeviceRefused(f"cannot read SSH key {key_path}: {exc}") from None
    except (paramiko.SSHException, ValueError, OSError) as exc:
        raise DeviceRefused(f"cannot read SSH key {key_path}: {exc}") from None
    held = agent_key_for(key_path)
    if held is not None:
        return held
    passphrase = os.environ.get(PASSPHRASE_ENV)
    if passphrase is None and sys.stdin.isatty():
        passphrase = getpass.getpass(f"passphrase for SSH key {key_path}: ")
    if passphrase is None:
        raise DeviceRefused(f"SSH key {key_path} is protected by a passphrase: load it into ssh-agent "
                            f"(ssh-add {key_path}), set ${PASSPHRASE_ENV}, or run on a terminal to be asked")
    try:
        return paramiko.PKey.from_path(key_path, passphrase.encode())
    except (paramiko.SSHException, ValueError, TypeError) as exc:
        raise DeviceRefused(f"cannot decrypt SSH key {key_path}: wrong passphrase? ({type(exc).__name__})") from None


def agent_key_for(key_path: str) -> paramiko.PKey | None:
    """The ssh-agent's copy of this key (matched by its .pub file), if an agent holds it."""
    pub = Path(key_path + ".pub")
    if not os.environ.get("SSH_AUTH_SOCK") or not pub.is_file():
        return None
    try:
        wanted = pub.read_text().split()[1]
        agent = paramiko.Agent()
    except (OSError, IndexError, paramiko.SSHException):
        return None
    return next((k for k in agent.get_keys() if k.get_base64() == wanted), None)
