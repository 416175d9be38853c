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

import getpass
import io
import posixpath
import secrets
import shlex
import socket
import time
from pathlib import Path
from typing import Any, Iterator, NamedTuple

import paramiko

from edge_eas.errors import AgentFailure, DeviceRefused, UserError
from edge_eas.devices.targets import Connection
from edge_eas.remote.layout import sha256_file
from edge_eas.remote.ssh_auth import RecordNew, RejectUnknown, fingerprint, is_transient, key_path, private_key, reason
from edge_eas.remote.ssh_options import DEFAULT_KNOWN_HOSTS, SSHOptions

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
                if not is_transient(exc):
                    raise self._user_error(exc, str(Path(self.conn.key or "").expanduser())) from None
                if attempt == attempts:
                    raise UserError(f"cannot reach {self.label}: {reason(exc)} (after {attempts} attempt"
                                    f"{'s' if attempts > 1 else ''})") from None
                time.sleep(delay)
                delay *= 2

    def _connect_once(self) -> None:
        t = self.options.connect_timeout
        # Reach the device first: an unreachable device is the problem to report, before any
        # local set-up (key, known_hosts) that the user may not have made yet.
        sock = socket.create_connection((self.conn.host, self.conn.port), timeout=t)
        client = paramiko.SSHClient()
        try:
            key_file = key_path(self.conn, self.label)
            if self.known_hosts.is_file():
                try:
                    client.load_host_keys(str(self.known_hosts))
                except (OSError, paramiko.SSHException) as exc:
                    raise DeviceRefused(f"cannot read known_hosts file {self.known_hosts}: {exc}") from None
            policy = RecordNew if self.options.trust_new_host else RejectUnknown
            client.set_missing_host_key_policy(policy(self.known_hosts))
            client.connect(self.conn.host, port=self.conn.port, username=self.user,
                           pkey=private_key(key_file), sock=sock, banner_timeout=t, auth_timeout=t,
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

    def _user_error(self, exc: BaseException, key_file: str) -> UserError:
        host_name = self.conn.host if self.conn.port == 22 else f"[{self.conn.host}]:{self.conn.port}"
        if isinstance(exc, paramiko.BadHostKeyException):
            return DeviceRefused(
                f"host key of {host_name} CHANGED: the device offers {fingerprint(exc.key)}, not the key recorded in "
                f"{self.known_hosts} (possible man-in-the-middle attack, or the device was reinstalled); if you "
                f"expected this, remove the old entry with `ssh-keygen -R '{host_name}' -f {self.known_hosts}` and "
                f"connect again with --trust-new-host")
        if isinstance(exc, paramiko.AuthenticationException):
            return DeviceRefused(f"{self.label} refused SSH key {key_file}: add its public key to the device's "
                             f"~/.ssh/authorized_keys or pass --key")
        if isinstance(exc, socket.gaierror):
            return DeviceRefused(f"cannot resolve host {self.conn.host!r} ({exc.strerror})")
        return UserError(f"SSH to {self.label} failed: {reason(exc)}")

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
                raise SSHLinkError(f"cannot open SFTP on {self.label}: {reason(exc)}") from None
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
            raise SSHLinkError(f"cannot start a command on {self.label}: {reason(exc)}") from None
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
                raise SSHLinkError(f"{what} on {self.label}: {reason(exc)}") from None
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
