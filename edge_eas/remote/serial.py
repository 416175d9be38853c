"""A shell on a device's serial console (pyserial): log in, run commands, get their output and
exit status, survive a reboot.

A serial line is a byte stream shared by the kernel, getty, login and the shell, so nothing in
it is framed. This module frames it:
- login: whatever is on the line is read until it goes quiet, then the tail decides: a login
  prompt gets the user name, a password prompt the password (never logged), a shell prompt
  means someone is already logged in;
- once in a shell it sets a unique prompt (`PS1`) and switches echo off, then synchronises
  with a marker the echoed command cannot contain (`printf` assembles it on the device);
- every command is wrapped as `printf BEGIN; { CMD; } </dev/null; printf END<status>`, so
  output, exit status and completion are exact whatever noise (kernel messages, a slow
  command, a late prompt) surrounds them;
- a login prompt appearing mid-command means the shell died or the board rebooted: the
  command is re-run once if it had not started yet, else the error says so.
Timeouts name the port and what was last read. Line endings (CR/LF) and terminal escape
sequences are normalised away.
"""

from __future__ import annotations

import getpass
import os
import re
import secrets
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple, Protocol, Sequence

from edge_eas.common.console import info
from edge_eas.errors import UserError
from edge_eas.remote.serial_text import KERNEL_LINE, LOGIN, LOGIN_ANYWHERE, LOGIN_FAILED, PASSWORD, SHELL, SUDO_ASKS, SUDO_PROMPT, clean

PASSWORD_ENV = "EDGE_EAS_SERIAL_PASSWORD"
USER_ENV = "EDGE_EAS_SERIAL_USER"
QUIET_S = 0.25  # a prompt is what the line ends with once it has been quiet this long...
LOOK_EVERY_S = 1.0  # ...or, on a chatty console, what it ends with once kernel messages are removed
class SerialError(UserError):
    """A console problem the user can act on (wrong port, password, a silent device)."""


class ShellLost(SerialError):
    """The shell ended or the board rebooted while a command was running."""


class ConsoleResult(NamedTuple):
    rc: int
    output: str


@dataclass(frozen=True)
class Credentials:
    """Who to log in as. The password comes from $EDGE_EAS_SERIAL_PASSWORD or, on a terminal, a
    prompt; it is never printed or written to a transcript."""
    user: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, user: str | None = None) -> "Credentials":
        return cls(user or os.environ.get(USER_ENV), os.environ.get(PASSWORD_ENV))


def _opener(port: str, baud: int) -> "SerialPort":
    try:
        import serial  # pyserial: the `serial` extra
    except ImportError:
        raise UserError("the serial console needs pyserial: pip install 'edge-eas[serial]'") from None

    return serial.Serial(port, baudrate=baud, timeout=0.05, write_timeout=10)


class SerialPort(Protocol):
    """The part of pyserial's Serial this module uses."""
    in_waiting: int

    def read(self, size: int) -> bytes: ...
    def write(self, data: bytes) -> int | None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


class SerialConsole:
    """`with SerialConsole("/dev/ttyUSB0", creds=Credentials.from_env("pi")) as con: con.run(["uname", "-m"])`."""

    def __init__(self, port: str, baud: int = 115200, creds: Credentials = Credentials(),
                 login_timeout: float = 60.0, command_timeout: float = 60.0, transcript: Path | None = None,
                 opener: Callable[[str, int], SerialPort] = _opener) -> None:
        self.port_name = port
        self.baud = baud
        self.creds = creds
        self.login_timeout = login_timeout
        self.command_timeout = command_timeout
        self.transcript = transcript
        self._opener = opener
        self._port: SerialPort | None = None
        self._raw = bytearray()  # unconsumed bytes from the line
        self._last = b""  # the most recent bytes read, for error messages (kept across consumes)
        self._nonce = secrets.token_hex(4)
        self._seq = 0
        self._user: str | None = None
        self._password: str | None = creds.password
        self._log = None
        self._reopened = False
        self._logged_in = False

    # ---- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> "SerialConsole":
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        if self.transcript is not None and self._log is None:
            # a console session can show secrets (keys, tokens): only the user may read it
            fd = os.open(self.transcript, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            os.fchmod(fd, 0o600)  # an existing file with looser permissions is tightened too
            self._log = os.fdopen(fd, "ab")
        self._open_port(time.monotonic() + 5.0)
        self._login(time.monotonic() + self.login_timeout)

    def close(self) -> None:
        self._close_port()
        if self._log is not None:
            self._log.close()
            self._log = None

    @property
    def user(self) -> str | None:
        """Who the shell runs as (after login)."""
        return self._user

    def _open_port(self, deadline: float) -> None:
        """Open (or re-open: a USB console vanishes while its board reboots) until the deadline."""
        try:
            import serial  # pyserial: the `serial` extra
        except ImportError:
            raise UserError("the serial console needs pyserial: pip install 'edge-eas[serial]'") from None

        while True:
            try:
                self._port = self._opener(self.port_name, self.baud)
                return
            except (serial.SerialException, OSError) as exc:
                err = getattr(exc, "errno", None)
                gone = err in (2, 19) or "No such file" in str(exc) or "could not open" in str(exc)
                if not gone or time.monotonic() > deadline:
                    hint = " (add yourself to the 'dialout' group)" if "ermission" in str(exc) else ""
                    reason = str(exc).split(": ", 1)[-1] if str(exc) else type(exc).__name__
                    raise SerialError(f"cannot open serial port {self.port_name}: {reason}{hint}") from None
                time.sleep(0.2)

    # ---- bytes on the line -------------------------------------------------------------------
    def _write(self, text: str, secret: bool = False) -> None:
        assert self._port is not None
        data = text.encode()
        self._port.write(data)
        self._port.flush()
        if self._log is not None:
            self._log.write(b">>> " + (b"********\n" if secret else data.replace(b"\r", b"\n")))

    def _read_available(self, deadline: float) -> bool:
        """Read what the line has (waiting up to 50 ms); re-open a port whose other end went away."""
        import serial  # pyserial: the `serial` extra (the port is open, so it is installed)

        assert self._port is not None
        try:
            data = self._port.read(max(1, self._port.in_waiting))
        except (serial.SerialException, OSError):
            self._close_port()
            self._open_port(deadline)
            self._reopened = True
            return False
        if data:
            self._raw += data
            self._last = (self._last + data)[-400:]
            if self._log is not None:
                self._log.write(data)
                self._log.flush()
        return bool(data)

    def _close_port(self) -> None:
        if self._port is not None:
            try:
                self._port.close()
            except Exception:  # noqa: BLE001 - a vanished device must not mask the real error
                pass
            self._port = None

    def _text(self) -> str:
        return clean(bytes(self._raw))

    def _consume_through(self, marker: str) -> None:
        """Drop everything up to and including `marker` (which is in the cleaned text)."""
        raw = bytes(self._raw)
        enc = marker.encode()
        idx = raw.find(enc)
        if idx >= 0:
            del self._raw[: idx + len(enc)]
        else:  # the marker was split by an escape sequence: fall back to dropping everything
            self._raw.clear()

    def last_read(self) -> str:
        text = re.sub(rf"__EAS\w+__\n?|EAS{self._nonce}> ", "", clean(self._last)).strip()
        return repr(text[-160:]) if text else "nothing"

    def _timeout(self, what: str, seconds: float) -> SerialError:
        return SerialError(f"{self.port_name}: {what} within {seconds:.0f} s; last read from the device: "
                           f"{self.last_read()}")

    def _wait_quiet(self, deadline: float) -> str:
        """Read until the line is quiet for QUIET_S (at most LOOK_EVERY_S); the text so far, kernel
        messages removed."""
        start = last_data = time.monotonic()
        while time.monotonic() < min(deadline, start + LOOK_EVERY_S):
            if self._read_available(deadline):
                last_data = time.monotonic()
            elif time.monotonic() - last_data >= QUIET_S:
                break
        return KERNEL_LINE.sub("\n", self._text())

    # ---- login -------------------------------------------------------------------------------
    def _login(self, deadline: float) -> None:
        """Get from whatever state the console is in to our own synchronised shell."""
        sent_user = sent_password = False
        nudge_every, last_nudge = 3.0, 0.0
        while True:
            if time.monotonic() > deadline:
                raise self._timeout("no login or shell prompt", self.login_timeout)
            if time.monotonic() - last_nudge > nudge_every:
                self._write("\r")  # a fresh prompt (pyserial discarded what came before we opened)
                last_nudge = time.monotonic()
            text = self._wait_quiet(deadline)
            failed = sent_password and (LOGIN_FAILED.search(text) or LOGIN.search(text) or PASSWORD.search(text))
            if failed:
                raise SerialError(f"login on {self.port_name} as {self._user_name()} failed: wrong user name or "
                                  f"password (set ${PASSWORD_ENV})")
            if PASSWORD.search(text):
                self._raw.clear()
                if not sent_user:  # a half-typed login from before we opened the port: abandon it
                    self._write("\r")
                else:
                    self._write(self._get_password() + "\r", secret=True)
                    sent_password = True
                last_nudge = time.monotonic()
                continue
            if LOGIN.search(text):
                self._raw.clear()
                self._write(self._user_name() + "\r")
                sent_user = True
                last_nudge = time.monotonic()
                continue
            if SHELL.search(text) and self._setup_shell(min(deadline, time.monotonic() + 10.0)):
                return

    def _user_name(self) -> str:
        if self.creds.user:
            return self.creds.user
        raise SerialError(f"{self.port_name} shows a login prompt: give the user name (--user or ${USER_ENV})")

    def _get_password(self) -> str:
        if self._password is None:
            if not sys.stdin.isatty():
                raise SerialError(f"{self.port_name} asks for a password: set ${PASSWORD_ENV}")
            self._password = getpass.getpass(f"password for {self._user_name()} on {self.port_name}: ")
        return self._password

    def _setup_shell(self, deadline: float) -> bool:
        """Our prompt, no echo, no pagers; True once the sync marker came back."""
        self._raw.clear()
        tag = self._next_tag()
        # 'EAS'"<nonce>" and the printf format keep the echoed line from matching the markers.
        self._write(f" set +o emacs +o vi +H 2>/dev/null; stty -echo 2>/dev/null; export TERM=dumb PAGER=cat SYSTEMD_PAGER= SYSTEMD_COLORS=0; "
                    f"unset PROMPT_COMMAND; PS2=''; PS1='EAS'\"{self._nonce}\"'> '; "
                    f"printf '__EAS%s__\\n' '{tag}S'; id -un\r")
        marker = f"__EAS{tag}S__"
        while time.monotonic() < deadline:
            self._read_available(deadline)
            text = self._text()
            m = re.search(re.escape(marker) + r"\n(.*)\n", text)
            if m and self._prompt() in text[m.end():]:
                self._user = m.group(1).strip()
                self._raw.clear()
                self._logged_in = True
                return True
            if LOGIN_ANYWHERE.search(text):
                return False
        return False

    def _prompt(self) -> str:
        return f"EAS{self._nonce}> "

    def _next_tag(self) -> str:
        self._seq += 1
        return f"{self._nonce}x{self._seq}"

    # ---- commands ----------------------------------------------------------------------------
    def run(self, argv: Sequence[str], timeout: float | None = None, sudo: bool = False) -> ConsoleResult:
        """Run argv (joined with shlex, never a shell string from input); its combined output and status."""
        if sudo and self._user not in ("root", None):
            argv = ["sudo", "-p", SUDO_PROMPT, *argv]
        return self._run_line(shlex.join(list(argv)), timeout)

    def script(self, script: str, *args: str, timeout: float | None = None, sudo: bool = False) -> ConsoleResult:
        """A fixed shell snippet of ours, with data only as positional parameters ($1, $2...)."""
        return self.run(["sh", "-c", script, "sh", *args], timeout=timeout, sudo=sudo)

    def check(self, argv: Sequence[str], what: str, timeout: float | None = None, sudo: bool = False) -> str:
        res = self.run(argv, timeout, sudo)
        if res.rc != 0:
            tail = res.output.strip().splitlines()[-1:] or ["(no output)"]
            raise SerialError(f"{what} failed on {self.port_name} (exit {res.rc}): {tail[0][:200]}")
        return res.output

    def _run_line(self, line: str, timeout: float | None, retry: bool = True) -> ConsoleResult:
        if self._port is None:
            raise SerialError(f"console on {self.port_name} is not open")
        timeout = self.command_timeout if timeout is None else timeout
        if not self._logged_in:  # the last command lost the shell: log in again first
            self._login(time.monotonic() + self.login_timeout)
        tag = self._next_tag()
        begin, end = f"__EAS{tag}B__\n", re.compile(rf"\n?__EAS{re.escape(tag)}R(\d+)__\n")
        self._raw.clear()
        self._write(f" printf '__EAS%s__\\n' '{tag}B'; {{ {line}; }} </dev/null; "
                    f"printf '\\n__EAS%s%d__\\n' '{tag}R' \"$?\"\r")
        deadline = time.monotonic() + timeout
        started, sudo_answers = False, 0
        self._reopened = False
        while True:
            if time.monotonic() > deadline:
                self._write("\x03")  # interrupt the stuck command so the shell stays usable
                raise self._timeout(f"command {line[:80]!r} did not finish", timeout)
            got = self._read_available(deadline)
            if self._reopened:  # the line dropped (USB console of a rebooting board): the shell is gone
                self._reopened = False
                if started or not retry:
                    raise self._shell_lost(f"the console went away while running {line[:80]!r}")
                self._logged_in = False
                return self._run_line(line, timeout, retry=False)  # logs in again first
            if not got:
                continue
            text = self._text()
            b = text.find(begin)
            started = started or b >= 0
            body = text[b + len(begin):] if b >= 0 else ""
            m = end.search(body)
            if m:
                self._consume_through(f"__EAS{tag}R{m.group(1)}__")
                self._wait_prompt()
                return ConsoleResult(int(m.group(1)), body[: m.start()])
            if SUDO_ASKS.search(text):
                if sudo_answers:
                    self._write("\x03")
                    raise SerialError(f"sudo on {self.port_name} rejected the password of {self._user}")
                self._raw[:] = self._raw.replace(b"[eas-sudo", b"[eas-sudo-answered")
                self._write(self._get_password() + "\r", secret=True)
                sudo_answers += 1
            if LOGIN_ANYWHERE.search(body if started else text):
                if started or not retry:
                    raise self._shell_lost(f"the shell ended (device rebooted or logged out) while running "
                                           f"{line[:80]!r}; last read: {self.last_read()}")
                self._logged_in = False
                return self._run_line(line, timeout, retry=False)  # logs in again first

    def _shell_lost(self, what: str) -> ShellLost:
        """The shell is gone: the next command logs in again first."""
        self._logged_in = False
        return ShellLost(f"{self.port_name}: {what}")

    def _wait_prompt(self, seconds: float = 2.0) -> None:
        """The prompt after a command: proof the shell is ready for the next one."""
        deadline = time.monotonic() + seconds
        while self._prompt() not in self._text() and time.monotonic() < deadline:
            self._read_available(deadline)
        self._raw.clear()

    def reboot(self, boot_timeout: float = 300.0) -> None:
        """Reboot the board and log in again once it is back."""
        argv = ["reboot"] if self._user == "root" else ["sudo", "-p", SUDO_PROMPT, "reboot"]
        info(f"rebooting the device on {self.port_name}")
        self._raw.clear()
        self._write(" " + shlex.join(argv) + "\r")
        deadline = time.monotonic() + boot_timeout
        while not LOGIN_ANYWHERE.search(self._text()):
            if time.monotonic() > deadline:
                raise self._timeout("the device did not come back after reboot", boot_timeout)
            self._read_available(deadline)
            if SUDO_ASKS.search(self._text()):
                self._raw.clear()
                self._write(self._get_password() + "\r", secret=True)
        self._login(time.monotonic() + self.login_timeout)
