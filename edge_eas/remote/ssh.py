"""SSH to a device (paramiko): checked host keys, key-only auth, timeouts, keep-alive and
retries with backoff on transient network failures.

Security rules this module keeps, so callers cannot get them wrong:
- host keys are checked against the target's known_hosts with a reject policy; recording a
  new key (trust on first use) happens only when the user asked for it (`--trust-new-host`);
- remote commands are argv lists joined with `shlex.join`, never strings built from input;
- uploads go to a temporary name, are hash-verified on the device, then atomically renamed.

Every failure a user can cause or fix (unknown or changed host key, wrong key, unreachable
host) becomes a one-line `UserError`; lost links and stalled commands raise `SSHLinkError`,
which the benchmark harness retries (resuming from what it stored).
"""

from __future__ import annotations

import base64
import errno
import getpass
import hashlib
import io
import json
import os
import posixpath
import secrets
import shlex
import socket
import sys
import time
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator, NamedTuple

import paramiko

from ..console import info
from ..errors import AgentFailure, DeviceRefused, UserError
from ..targets import Connection, Target

DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"
_TUNABLES = ("connect_timeout", "command_timeout", "keepalive", "retries", "backoff")
_ENV_PREFIX = "EDGE_EAS_SSH_"  # e.g. EDGE_EAS_SSH_COMMAND_TIMEOUT=30
PASSPHRASE_ENV = "EDGE_EAS_KEY_PASSPHRASE"

# Runs on the device with its own python: prints the SHA-256 of argv[1], or "-" if it is missing.
_SHA256_CODE = (
    "import hashlib,sys\n"
    "try:\n f=open(sys.argv[1],'rb')\nexcept (IOError,OSError):\n print('-');sys.exit(0)\n"
    "h=hashlib.sha256()\n"
    "for b in iter(lambda:f.read(1<<20),b''):h.update(b)\n"
    "print(h.hexdigest())\n")


class SSHLinkError(ConnectionError):
    """The connection dropped or a command stalled: transient, worth a retry."""


class CommandResult(NamedTuple):
    rc: int
    stdout: str
    stderr: str


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


def ssh_options(target: Target, args: Any = None) -> SSHOptions:
    """Options from (lowest to highest precedence) defaults, the target's `[connection]` table
    (connect_timeout, command_timeout, keepalive, retries, backoff), EDGE_EAS_SSH_* variables
    and the command line (--host, --key, --trust-new-host)."""
    values: dict[str, Any] = {}
    values.update(_tunables_from_toml(target.path))
    for name in _TUNABLES:
        env = os.environ.get(_ENV_PREFIX + name.upper())
        if env is not None:
            values[name] = _number(env, f"${_ENV_PREFIX + name.upper()}", name)
    opts = replace(SSHOptions(), **values)
    return replace(opts, host=getattr(args, "host", None), key=getattr(args, "key", None),
                   trust_new_host=bool(getattr(args, "trust_new_host", False)))


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


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH-style SHA256 fingerprint, what `ssh-keygen -lf` prints."""
    digest = base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")
    return f"{key.get_name()} SHA256:{digest}"


class _RejectUnknown(paramiko.MissingHostKeyPolicy):
    def __init__(self, known_hosts: Path) -> None:
        self.known_hosts = known_hosts

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        raise DeviceRefused(f"host {hostname} is not in {self.known_hosts} (it offers {fingerprint(key)}): provision "
                        f"its host key there after checking the fingerprint on the device, or pass "
                        f"--trust-new-host to record it on first use")


class _RecordNew(paramiko.MissingHostKeyPolicy):
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


def _is_transient(exc: BaseException) -> bool:
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


def _reason(exc: BaseException) -> str:
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


class SSHSession:
    """One authenticated connection to a device (use as a context manager)."""

    def __init__(self, conn: Connection, options: SSHOptions = SSHOptions(), python: str = "python3") -> None:
        conn = conn.with_override(options.host, options.key)
        self.conn = conn
        self.options = options
        self.python = python
        self.user = conn.user or getpass.getuser()
        self.known_hosts = Path(conn.known_hosts or DEFAULT_KNOWN_HOSTS).expanduser()
        self.label = f"{self.user}@{conn.host}:{conn.port}"
        self.bytes_uploaded = 0
        self._client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._home: str | None = None

    # ---- connection ----------------------------------------------------------------------
    def __enter__(self) -> "SSHSession":
        self.connect()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def alive(self) -> bool:
        t = self._client.get_transport() if self._client else None
        return bool(t and t.is_active())

    def connect(self) -> None:
        """Connect with retries and exponential backoff on transient failures only."""
        attempts = self.options.retries + 1
        delay = self.options.backoff
        for attempt in range(1, attempts + 1):
            try:
                self._connect_once()
                return
            except UserError:
                raise
            except Exception as exc:  # noqa: BLE001 - classified below
                if not _is_transient(exc):
                    raise self._user_error(exc, str(Path(self.conn.key or "").expanduser())) from None
                if attempt == attempts:
                    raise UserError(f"cannot reach {self.label}: {_reason(exc)} (after {attempts} attempt"
                                    f"{'s' if attempts > 1 else ''})") from None
                time.sleep(delay)
                delay *= 2

    def _key_path(self) -> str:
        if not self.conn.key:
            raise DeviceRefused(f"no SSH key for {self.label}: set [connection] key in the target or pass --key")
        path = Path(self.conn.key).expanduser()
        if not path.is_file():
            raise DeviceRefused(f"SSH key {path} does not exist (set [connection] key or pass --key)")
        return str(path)

    def _private_key(self, key_path: str) -> paramiko.PKey:
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
        held = _agent_key_for(key_path)
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

    def _connect_once(self) -> None:
        t = self.options.connect_timeout
        # Reach the device first: an unreachable device is the problem to report, before any
        # local set-up (key, known_hosts) that the user may not have made yet.
        sock = socket.create_connection((self.conn.host, self.conn.port), timeout=t)
        client = paramiko.SSHClient()
        try:
            key_path = self._key_path()
            if self.known_hosts.is_file():
                try:
                    client.load_host_keys(str(self.known_hosts))
                except (OSError, paramiko.SSHException) as exc:
                    raise DeviceRefused(f"cannot read known_hosts file {self.known_hosts}: {exc}") from None
            policy = _RecordNew if self.options.trust_new_host else _RejectUnknown
            client.set_missing_host_key_policy(policy(self.known_hosts))
            client.connect(self.conn.host, port=self.conn.port, username=self.user,
                           pkey=self._private_key(key_path), sock=sock, banner_timeout=t, auth_timeout=t,
                           channel_timeout=t, look_for_keys=False, allow_agent=False)
        except BaseException:
            client.close()
            sock.close()
            raise
        transport = client.get_transport()
        assert transport is not None
        transport.set_keepalive(self.options.keepalive)
        _dead_link_timeout(transport.sock, max(3 * self.options.keepalive, self.options.connect_timeout))
        self._client = client

    def _user_error(self, exc: BaseException, key_path: str) -> UserError:
        host_name = self.conn.host if self.conn.port == 22 else f"[{self.conn.host}]:{self.conn.port}"
        if isinstance(exc, paramiko.BadHostKeyException):
            return DeviceRefused(
                f"host key of {host_name} CHANGED: the device offers {fingerprint(exc.key)}, not the key recorded in "
                f"{self.known_hosts} (possible man-in-the-middle attack, or the device was reinstalled); if you "
                f"expected this, remove the old entry with `ssh-keygen -R '{host_name}' -f {self.known_hosts}` and "
                f"connect again with --trust-new-host")
        if isinstance(exc, paramiko.AuthenticationException):
            return DeviceRefused(f"{self.label} refused SSH key {key_path}: add its public key to the device's "
                             f"~/.ssh/authorized_keys or pass --key")
        if isinstance(exc, socket.gaierror):
            return DeviceRefused(f"cannot resolve host {self.conn.host!r} ({exc.strerror})")
        return UserError(f"SSH to {self.label} failed: {_reason(exc)}")

    def close(self) -> None:
        for thing in (self._sftp, self._client):
            if thing is not None:
                try:
                    thing.close()
                except Exception:  # noqa: BLE001 - closing a dead link must not mask the real error
                    pass
        self._sftp = None
        self._client = None

    def _transport(self) -> paramiko.Transport:
        t = self._client.get_transport() if self._client else None
        if t is None or not t.is_active():
            raise SSHLinkError(f"SSH session to {self.label} is not active")
        return t

    # ---- paths and files -------------------------------------------------------------------
    @property
    def sftp(self) -> paramiko.SFTPClient:
        if self._sftp is None:
            try:
                self._sftp = paramiko.SFTPClient.from_transport(self._transport(),
                                                               window_size=None, max_packet_size=None)
            except (paramiko.SSHException, EOFError, OSError) as exc:
                raise SSHLinkError(f"cannot open SFTP on {self.label}: {_reason(exc)}") from None
            assert self._sftp is not None
            self._sftp.get_channel().settimeout(self.options.command_timeout)  # type: ignore[union-attr]
        return self._sftp

    @property
    def home(self) -> str:
        """The remote home directory (SFTP starts there), resolved once without a shell."""
        if self._home is None:
            self._home = self.sftp.normalize(".")
        return self._home

    def expand(self, path: str) -> str:
        """Absolute remote path: `~` and `~/x` expand to the remote home, relative paths too."""
        if path == "~" or path.startswith("~/"):
            return posixpath.normpath(self.home + path[1:])
        if path.startswith("~"):
            raise UserError(f"remote path {path!r}: only ~ and ~/... are supported, not ~user")
        return posixpath.normpath(path if path.startswith("/") else posixpath.join(self.home, path))

    def exists(self, path: str) -> bool:
        try:
            self.sftp.stat(path)
            return True
        except FileNotFoundError:
            return False

    def makedirs(self, path: str) -> None:
        parts, cur = [p for p in path.split("/") if p], ""
        for part in parts:
            cur += "/" + part
            try:
                self.sftp.stat(cur)
            except FileNotFoundError:
                self.sftp.mkdir(cur)

    def read_text(self, path: str) -> str | None:
        try:
            with self.sftp.open(path, "r") as f:
                return f.read().decode()
        except FileNotFoundError:
            return None

    def write_bytes(self, data: bytes, remote: str) -> int:
        """Small files (JSON): temp name, then atomic rename. Returns bytes sent."""
        self.makedirs(posixpath.dirname(remote))
        tmp = f"{remote}.tmp-{secrets.token_hex(6)}"
        self.sftp.putfo(io.BytesIO(data), tmp, file_size=len(data), confirm=True)
        self.bytes_uploaded += len(data)
        self.sftp.posix_rename(tmp, remote)
        return len(data)

    def sha256(self, remote: str) -> str | None:
        """SHA-256 of a remote file computed on the device, None if it does not exist."""
        res = self.run([self.python, "-c", _SHA256_CODE, remote])
        if res.rc != 0:
            raise UserError(f"cannot hash {remote} on {self.label} with {self.python}: {_tail(res.stderr)}")
        out = res.stdout.strip()
        return None if out == "-" else out

    def upload(self, local: str | Path, remote: str) -> int:
        """Upload to `remote.tmp-<random>`, verify its SHA-256 on the device, atomically rename.
        Returns the bytes sent."""
        local = Path(local)
        expected = sha256_file(local)
        self.makedirs(posixpath.dirname(remote))
        tmp = f"{remote}.tmp-{secrets.token_hex(6)}"
        try:
            self.sftp.put(str(local), tmp, confirm=True)
            self.bytes_uploaded += local.stat().st_size
            got = self.sha256(tmp)
            if got != expected:
                raise UserError(f"upload of {local} to {self.label}:{remote} is corrupt (SHA-256 {got} != {expected})")
            self.sftp.posix_rename(tmp, remote)
        except BaseException:
            try:
                self.sftp.remove(tmp)
            except Exception:  # noqa: BLE001 - best effort; the temp name never shadows a real file
                pass
            raise
        return local.stat().st_size

    # ---- commands -------------------------------------------------------------------------
    def _exec(self, argv: list[str]) -> paramiko.Channel:
        if not argv or not all(isinstance(a, str) for a in argv):
            raise TypeError("remote commands are argv lists of strings")
        try:
            chan = self._transport().open_session(timeout=self.options.connect_timeout)
            chan.exec_command(shlex.join(argv))
        except SSHLinkError:
            raise
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise SSHLinkError(f"cannot start a command on {self.label}: {_reason(exc)}") from None
        return chan

    def _pump(self, chan: paramiko.Channel, idle: float, deadline: float | None, err: bytearray,
              what: str) -> Iterator[bytes]:
        """stdout chunks as they arrive; stderr kept (tail) in `err`. Raises SSHLinkError after
        `idle` seconds of silence or past the deadline."""
        chan.settimeout(0.25)
        last = time.monotonic()
        while True:
            got_err = False
            while chan.recv_stderr_ready():
                err += chan.recv_stderr(65536)
                got_err = True
            del err[:-65536]
            try:
                data = chan.recv(65536)
            except socket.timeout:
                now = time.monotonic()
                last = now if got_err else last
                if now - last > idle:
                    raise SSHLinkError(f"{what} on {self.label}: no output for {idle:g} s (link down or device "
                                       f"hung)") from None
                if deadline is not None and now > deadline:
                    raise SSHLinkError(f"{what} on {self.label} did not finish in time") from None
                continue
            except (OSError, EOFError) as exc:
                raise SSHLinkError(f"{what} on {self.label}: {_reason(exc)}") from None
            if not data:
                while True:
                    try:
                        more = chan.recv_stderr(65536)
                    except (socket.timeout, OSError, EOFError):
                        break
                    if not more:
                        break
                    err += more
                return
            last = time.monotonic()
            yield data

    def _exit_status(self, chan: paramiko.Channel, what: str) -> int:
        if not chan.status_event.wait(self.options.connect_timeout):
            raise SSHLinkError(f"{what} on {self.label}: output ended but no exit status arrived")
        rc = chan.exit_status
        if rc == -1:
            raise SSHLinkError(f"{what} on {self.label}: the session ended without an exit status "
                               f"(sshd killed, device rebooted or link lost)")
        return rc

    def run(self, argv: list[str], timeout: float | None = None) -> CommandResult:
        """Run argv (joined with shlex.join) and wait for it: (rc, stdout, stderr)."""
        t = timeout or self.options.command_timeout
        chan = self._exec(argv)
        out, err = bytearray(), bytearray()
        try:
            for chunk in self._pump(chan, t, time.monotonic() + t, err, f"`{_short(argv)}`"):
                out += chunk
            rc = self._exit_status(chan, f"`{_short(argv)}`")
        finally:
            chan.close()
        return CommandResult(rc, out.decode(errors="replace"), err.decode(errors="replace"))

    def check(self, argv: list[str], what: str, timeout: float | None = None) -> str:
        """Run argv; a non-zero exit becomes a UserError naming the step."""
        res = self.run(argv, timeout)
        if res.rc != 0:
            raise UserError(f"{what} failed on {self.label} (exit {res.rc}): {_tail(res.stderr or res.stdout)}")
        return res.stdout

    def stream(self, argv: list[str], ok: tuple[int, ...] = (0,), idle_timeout: float | None = None) -> Iterator[str]:
        """Lines of stdout as they arrive. A silent, lost or killed session raises SSHLinkError;
        an exit status not in `ok` raises AgentFailure with the last stderr line."""
        idle = idle_timeout or self.options.command_timeout
        what = f"`{_short(argv)}`"
        chan = self._exec(argv)
        err = bytearray()
        buf = b""
        try:
            for chunk in self._pump(chan, idle, None, err, what):
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    yield line.decode(errors="replace") + "\n"
            if buf:
                yield buf.decode(errors="replace")
            rc = self._exit_status(chan, what)
        finally:
            chan.close()
        if rc not in ok:
            raise AgentFailure(f"{what} exited with status {rc} on {self.label}: {_tail(err.decode(errors='replace'))}")


def _agent_key_for(key_path: str) -> paramiko.PKey | None:
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


def _dead_link_timeout(sock: Any, seconds: float) -> None:
    """Keep-alives alone never notice a cut cable; with TCP_USER_TIMEOUT (Linux) the kernel drops
    the connection once they stay unacknowledged this long, so a stalled stream fails within
    seconds, not after the whole command timeout, and the harness reconnects and resumes."""
    if hasattr(socket, "TCP_USER_TIMEOUT") and isinstance(sock, socket.socket):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(seconds * 1000))
        except OSError:
            pass


def _short(argv: list[str]) -> str:
    shown = [a if len(a) < 60 else a[:57] + "..." for a in argv[:4]]
    return shlex.join(shown).replace("\n", " ") + (" ..." if len(argv) > 4 else "")


def _tail(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "(no output)"


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class DeviceLayout:
    """Where things live under the target's runtime_dir on the device."""
    root: str

    @property
    def venv_python(self) -> str:
        return f"{self.root}/venv/bin/python"

    @property
    def current(self) -> str:
        return f"{self.root}/current"

    @property
    def previous(self) -> str:
        return f"{self.root}/previous"

    @property
    def bundle(self) -> str:
        return f"{self.root}/current/model.eas"

    def release(self, sha: str) -> str:
        return f"{self.root}/releases/{sha[:16]}"


class SSHRunner:
    """The bench harness's Runner over SSH: runs the deployed runtime's agent on the device.
    Each stream ends its connection (failed or not), so a retry always reconnects and a
    finished bench leaves no session open on the device."""

    def __init__(self, target: Target, options: SSHOptions = SSHOptions(), bundle: str | Path | None = None) -> None:
        if target.connection is None:
            raise UserError(f"target {target.name} has no [connection] table")
        self.target = target
        self.options = options
        self.device_id = target.name
        self._expected = sha256_file(bundle) if bundle and Path(bundle).is_file() else None
        self._session: SSHSession | None = None
        self._layout: DeviceLayout | None = None

    def _live(self) -> SSHSession:
        if self._session is None or not self._session.alive:
            self._drop()
            assert self.target.connection is not None
            session = SSHSession(self.target.connection, self.options, python=self.target.python)
            session.connect()
            self._session = session
            self._layout = DeviceLayout(session.expand(self.target.runtime_dir))
        return self._session

    def _drop(self) -> None:
        if self._session is not None:
            self._session.close()
        self._session = None

    @property
    def layout(self) -> DeviceLayout:
        self._live()
        assert self._layout is not None
        return self._layout

    def bundle_path(self) -> str:
        return self.layout.bundle

    def fetch_deployed_bundle(self, dest: Path) -> Path:
        """Copy the device's current bundle here (bench needs its manifest: space, classes)."""
        session = self._live()
        if not session.exists(self.layout.bundle):
            raise DeviceRefused(f"no bundle deployed on {self.device_id}: run `edge_eas deploy --target "
                            f"{self.target.name} --bundle model.eas` first")
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_suffix(".part")
        session.sftp.get(self.layout.bundle, str(tmp))
        os.replace(tmp, dest)
        return dest

    def prepare_scenarios(self, scenarios: list[dict[str, Any]]) -> str:
        """Check the device runs the bundle being benchmarked, then upload the scenarios file."""
        try:
            session = self._live()
            self._check_deployment(session)
            data = json.dumps(scenarios, sort_keys=True).encode()
            remote = f"{self.layout.root}/bench/scenarios-{hashlib.sha256(data).hexdigest()[:16]}.json"
            if not session.exists(remote):
                session.write_bytes(data, remote)
            return remote
        except Exception:
            self._drop()
            raise

    def _check_deployment(self, session: SSHSession) -> None:
        layout = self.layout
        if not session.exists(layout.venv_python):
            raise DeviceRefused(f"no edge_eas runtime on {self.device_id} ({layout.root}): run "
                            f"`edge_eas deploy --target {self.target.name}` first")
        if self._expected is None:
            return
        try:
            release = posixpath.basename(session.sftp.readlink(layout.current) or "")
        except (FileNotFoundError, OSError):
            release = ""
        if release != self._expected[:16]:
            raise DeviceRefused(f"{self.device_id} runs bundle {release or 'none'}, not {self._expected[:16]}: run "
                            f"`edge_eas deploy --target {self.target.name} --bundle ...` first")

    def stream(self, agent_args: list[str]) -> Iterator[str]:
        try:
            session = self._live()
            argv = [self.layout.venv_python, "-m", "edge_eas.runtime", *agent_args,
                    "--heartbeat", f"{self.options.heartbeat_s:g}"]
            yield from session.stream(argv, ok=(0, 3))  # 3: some scenarios failed, reported as error lines
        finally:
            self._drop()  # a cut link can leave the transport looking alive: never reuse it

    def close(self) -> None:
        self._drop()
