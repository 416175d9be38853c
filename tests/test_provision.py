"""`edge_eas provision` end to end: a fresh board (own network namespace, sshd installed but not
running, unknown host key) reached only over its serial console, ending with a strict-host-key
SSH connection that needed no trust on first use; a second run changes nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edge_eas.sim.ssh_lab import have_sshd
from edge_eas.remote.provision import update_known_hosts

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not have_sshd() or shutil.which("socat") is None or shutil.which("nsenter") is None,
    reason="needs root (network namespaces), sshd, socat and nsenter")
PASSWORD = "s3cret-Pw"


@pytest.fixture()
def board(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A board whose console logs in as root."""
    from .labs.provision_device import FreshBoard

    with FreshBoard(tmp_path / "lab", password=PASSWORD) as lab:
        yield lab


@pytest.fixture()
def pi_board(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Like Raspberry Pi OS: log in as pi, privileged steps through sudo, which asks for the password."""
    if shutil.which("sudo") is None or shutil.which("openssl") is None or not Path("/home").is_dir():
        pytest.skip("needs sudo, openssl and /home")
    from .labs.provision_device import FreshBoard

    with FreshBoard(tmp_path / "lab", user="pi", password=PASSWORD) as lab:
        yield lab


def provision(board, tmp: Path, *extra: str) -> dict:  # type: ignore[no-untyped-def,type-arg]
    profile = board.write_profile(tmp / "raspberry-pi-4.toml")
    env = {**os.environ, "EDGE_EAS_SERIAL_PASSWORD": PASSWORD, "EDGE_EAS_HOME": str(tmp / "home")}
    argv = [sys.executable, "-m", "edge_eas.cli", "provision", "--target", str(profile), "--serial",
            board.console.port, "--host-ip", board.host_ip, "--name", "pi-lab-1", "--key", str(tmp / "id_ed25519"),
            "--known-hosts", str(tmp / "known_hosts"), "--login-timeout", "30", "--json", *extra]
    res = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_provision_fresh_board_end_to_end_then_nothing_changes(pi_board, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from edge_eas.remote.ssh import SSHSession
    from edge_eas.remote.ssh_options import SSHOptions
    from edge_eas.devices.targets import load_target

    board = pi_board

    assert not board.sshd_running() and not (tmp_path / "known_hosts").exists()
    transcript = tmp_path / "console.log"
    first = provision(board, tmp_path, "--transcript", str(transcript))
    steps = {s["name"]: s for s in first["steps"]}
    log = transcript.read_bytes()
    assert b"[eas-sudo pi]" in log and PASSWORD.encode() not in log  # sudo asked; the password never logged
    assert first["confirmed"] and first["changed"]
    for name in ("ssh key", "hostname", "authorized_keys", "sshd", "known_hosts", "target"):
        assert steps[name]["changed"], name
    assert board.device_file("/etc/hostname").strip() == "pi-lab-1"
    assert "pi-lab-1" in board.device_file("/etc/hosts") and board.sshd_running()
    dev = board.devices[0]
    assert first["host"] == dev.addr and first["port"] == 22 and first["user"] == "pi"
    assert "ssh-ed25519" in board.device_file("/home/pi/.ssh/authorized_keys")
    # known_hosts holds exactly the key the board's sshd serves (read over the cable)
    kind, blob = (dev.dir / "etc-ssh" / "ssh_host_ed25519_key.pub").read_text().split()[:2]
    assert (tmp_path / "known_hosts").read_text() == f"{dev.addr} {kind} {blob}\n"

    # the written target works with strict host key checking (no --trust-new-host)
    target = load_target(first["target_file"])
    assert target.name == "pi-lab-1" and target.connection is not None
    assert target.connection.host == dev.addr and target.hardware.peak_gflops == 12.0 and target.engine == "numpy"
    assert target.connection.user == "pi"
    with SSHSession(target.connection, SSHOptions(trust_new_host=False)) as s:
        assert s.check(["hostname"], "hostname").strip() == "pi-lab-1"
        assert s.check(["id", "-un"], "whoami").strip() == "pi"
    assert "# how to reach it" in Path(first["target_file"]).read_text()  # comments kept

    second = provision(board, tmp_path)
    assert second["confirmed"] and not second["changed"], [s for s in second["steps"] if s["changed"]]
    assert (tmp_path / "known_hosts").read_text() == f"{dev.addr} {kind} {blob}\n"


def test_provision_after_reflash_replaces_the_host_key(board, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from edge_eas.errors import UserError
    from edge_eas.remote.ssh import SSHSession
    from edge_eas.remote.ssh_options import SSHOptions
    from edge_eas.devices.targets import load_target

    provision(board, tmp_path)
    target = load_target(str(tmp_path / "home" / "targets" / "pi-lab-1.toml"))
    board.reflash()  # new image: new host key, sshd disabled, hostname and authorized_keys gone
    with pytest.raises(UserError):  # SSH alone refuses the board (sshd off, or its key unknown)
        with SSHSession(target.connection, SSHOptions(trust_new_host=False, retries=0)):  # type: ignore[arg-type]
            pass
    again = provision(board, tmp_path)
    steps = {s["name"]: s for s in again["steps"]}
    assert all(steps[n]["changed"] for n in ("hostname", "authorized_keys", "sshd", "known_hosts"))
    assert "replaced the old host key" in steps["known_hosts"]["detail"]
    assert not steps["target"]["changed"] or "updated" in steps["target"]["detail"]
    new_key = (board.devices[0].dir / "etc-ssh" / "ssh_host_ed25519_key.pub").read_text().split()[1]
    assert (tmp_path / "known_hosts").read_text().split()[2] == new_key
    with SSHSession(target.connection, SSHOptions(trust_new_host=False)) as s:  # type: ignore[arg-type]
        assert s.check(["hostname"], "hostname").strip() == "pi-lab-1"


def test_provision_known_hosts_update_keeps_other_hosts_and_hashed_entries(tmp_path: Path) -> None:
    from paramiko.hostkeys import HostKeys

    kh = tmp_path / "known_hosts"
    hashed = HostKeys.hash_host("10.0.0.5")
    kh.write_text(f"# mine\nother.example ssh-ed25519 AAAAother\n{hashed} ssh-ed25519 AAAAold\n")
    step = update_known_hosts(kh, "10.0.0.5", [("ssh-ed25519", "AAAAnew")])
    assert step.changed and "replaced" in step.detail
    assert kh.read_text() == "# mine\nother.example ssh-ed25519 AAAAother\n10.0.0.5 ssh-ed25519 AAAAnew\n"
    assert not update_known_hosts(kh, "10.0.0.5", [("ssh-ed25519", "AAAAnew")]).changed
    assert oct(kh.stat().st_mode & 0o777) == "0o600"
