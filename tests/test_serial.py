"""The serial console client against a real pty (socat) with a getty and an interactive bash."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge_eas.remote.serial import Credentials, SerialConsole, SerialError, ShellLost, clean

from .labs.serial_device import SimConsole

pytestmark = pytest.mark.skipif(shutil.which("socat") is None, reason="socat is not installed")
USER, PASSWORD = "pi", "s3cret-pw"


@pytest.fixture()
def board(tmp_path: Path):  # type: ignore[no-untyped-def]
    with SimConsole(tmp_path / "board", USER, PASSWORD) as sim:
        yield sim


@pytest.fixture()
def noisy_board(tmp_path: Path):  # type: ignore[no-untyped-def]
    with SimConsole(tmp_path / "board", USER, PASSWORD, noise=True) as sim:
        yield sim


def _without_noise(text: str) -> str:
    return re.sub(r"\[ *\d+\.\d+\] usb 1-1\.2: [^\n]*\n", "", text)


def console(sim: SimConsole, password: str = PASSWORD, **kw: object) -> SerialConsole:
    return SerialConsole(sim.port, creds=Credentials(USER, password), login_timeout=20, **kw)  # type: ignore[arg-type]


def test_serial_login_runs_commands_with_exit_status(board: SimConsole, tmp_path: Path) -> None:
    transcript = tmp_path / "transcript.log"
    with console(board, transcript=transcript) as con:
        assert con.user  # the shell reported who it runs as
        res = con.run(["echo", "hello   world"])
        assert res == (0, "hello   world\n")
        res = con.run(["sh", "-c", "echo out; echo err >&2; exit 3"])
        assert res.rc == 3 and res.output == "out\nerr\n"
        assert "\r" not in res.output and "\x1b" not in res.output
        # argv is quoted, never interpreted by the device's shell
        assert con.run(["printf", "%s|", "a b", "$(id)", "'q'"]).output == "a b|$(id)|'q'|"
        assert con.script('echo "$1-$2"', "x y", "z").output == "x y-z\n"
        with pytest.raises(SerialError, match="exit 7"):
            con.check(["sh", "-c", "exit 7"], "a failing step")
    assert transcript.stat().st_mode & 0o777 == 0o600  # the console can show secrets: owner only
    text = transcript.read_bytes()
    assert b"login:" in text and PASSWORD.encode() not in text  # the password is never logged


def test_serial_long_and_slow_output_through_noise(noisy_board: SimConsole) -> None:
    with console(noisy_board) as con:
        res = con.run(["seq", "1", "20000"])
        # kernel messages land anywhere, even mid-line, as on a real console: take them out again
        assert res.rc == 0 and _without_noise(res.output) == "".join(f"{i}\n" for i in range(1, 20001))
        res = con.run(["sh", "-c", "for i in 1 2 3 4; do echo line$i; sleep 0.4; done; exit 2"])
        lines = [ln for ln in res.output.splitlines() if ln.startswith("line")]
        assert res.rc == 2 and lines == ["line1", "line2", "line3", "line4"]


def test_serial_wrong_password_is_a_clear_error(board: SimConsole) -> None:
    start = time.monotonic()
    with pytest.raises(SerialError, match=r"login on .*ttyS0 as pi failed: wrong user name or password"):
        with console(board, password="nope"):
            pass
    assert time.monotonic() - start < 15


def test_serial_session_survives_shell_restart_and_reboot(board: SimConsole) -> None:
    with console(board) as con:
        with pytest.raises(ShellLost, match="shell ended"):
            con.run(["sh", "-c", "kill -KILL $PPID; sleep 5"])  # the login shell dies mid-command
        assert con.run(["echo", "again"]).output == "again\n"  # logged in again
        con.reboot(boot_timeout=30)
        assert con.run(["echo", "back"]) == (0, "back\n")


def test_serial_command_timeout_names_port_and_leaves_shell_usable(board: SimConsole) -> None:
    with console(board) as con:
        with pytest.raises(SerialError, match=r"ttyS0: command 'sleep 30' did not finish within 1 s"):
            con.run(["sleep", "30"], timeout=1)
        assert con.run(["echo", "ok"]).output == "ok\n"


def _silent_device(tmp_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A board stuck in its boot loader: prints a banner, never a prompt."""
    script = tmp_path / "uboot.sh"
    script.write_text("#!/bin/bash\nwhile IFS= read -r _; do printf 'U-Boot 2024.01\\nStarting kernel ...\\n'; done\n")
    script.chmod(0o755)
    port = str(tmp_path / "ttyUSB0")
    proc = subprocess.Popen(["socat", f"PTY,link={port},raw,echo=0", f"EXEC:{script},pty,setsid,ctty"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not os.path.exists(port):
        time.sleep(0.02)
    return proc, port


def test_serial_device_without_prompt_times_out_naming_port_and_last_read(tmp_path: Path) -> None:
    from edge_eas.sim.ssh_lab import descendants, kill_pids

    proc, port = _silent_device(tmp_path)
    try:
        time.sleep(0.2)
        with pytest.raises(SerialError) as err:
            with SerialConsole(port, creds=Credentials(USER, PASSWORD), login_timeout=3):
                pass
        msg = str(err.value)
        assert port in msg and "no login or shell prompt within 3 s" in msg and "Starting kernel" in msg
        # the same through the command line: one line on stderr, exit status 2, no traceback
        profile = tmp_path / "pi.toml"
        profile.write_text('name = "pi"\n[connection]\nhost = "raspberrypi.local"\nuser = "pi"\n')
        env = {**os.environ, "EDGE_EAS_SERIAL_PASSWORD": PASSWORD, "EDGE_EAS_HOME": str(tmp_path / "home")}
        res = subprocess.run([sys.executable, "-m", "edge_eas.cli", "provision", "--target", str(profile),
                              "--serial", port, "--key", str(tmp_path / "key"), "--login-timeout", "3"],
                             env=env, capture_output=True, text=True, timeout=60)
        assert res.returncode == 2, res.stderr
        assert "Traceback" not in res.stderr
        err_line = res.stderr.strip().splitlines()[-1]
        assert err_line.startswith("edge_eas provision: error: ") and port in err_line and "Starting kernel" in err_line
    finally:
        kill_pids([proc.pid, *descendants(proc.pid)])
        proc.wait()


def test_serial_missing_port_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SerialError, match=r"cannot open serial port .*ttyNOPE"):
        SerialConsole(str(tmp_path / "ttyNOPE"), creds=Credentials(USER, PASSWORD)).open()


def test_serial_line_cleaning_handles_crlf_and_terminal_escapes() -> None:
    raw = b"\x1b[?2004hpi@pi:~$ \x1b[01;32mls\x1b[0m\r\nfile\r\n\x1b]0;title\x07done\r\x00\n"
    assert clean(raw) == "pi@pi:~$ ls\nfile\ndone\n"
    assert clean("température 48 °C\r\n".encode()) == "température 48 °C\n"
