"""Target profiles: every shipped profile loads; bad ones fail with one line naming file and key."""

from __future__ import annotations


import subprocess
import sys
from pathlib import Path

import pytest

from edge_eas.devices.boards import BoardInfo
from edge_eas.errors import UserError
from edge_eas.devices.targets import load_target

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "edge_eas.cli"]


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "targets").glob("*.toml")))
def test_shipped_profiles_load(name: str) -> None:
    t = load_target(str(ROOT / "targets" / f"{name}.toml"))
    assert t.is_fleet or t.local or (t.connection is not None and t.connection.host)
    assert t.is_fleet or t.hardware.peak_gflops > 0
    assert not t.board_detect or (t.board_fallback and load_target(t.board_fallback).hardware.peak_gflops > 0)


@pytest.mark.parametrize("text, needle", [
    ("name = 'x'\n[connection\nhost = 'a'", "not valid TOML"),
    ("name = 'x'\n", "missing [connection]"),
    ("[connection]\nport = 22\n", "missing required key 'host'"),
    ("[connection]\nhost = 'a'\nport = 'ssh'\n", "port must be int"),
    ("[connection]\nhost = 'a'\nport = 70000\n", "out of range"),
    ("[connection]\nhost = 'a'\n[device]\nthreads = 0\n", "threads must be >= 1"),
    ("[connection]\nhost = 'a'\n[hardware]\npeak_gflops = 'fast'\n", "peak_gflops must be a number"),
    ("[fleet]\nmembers = []\n", "non-empty list"),
])
def test_bad_profiles_name_file_and_key(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(UserError, match=needle.replace("[", r"\[")) as err:
        load_target(str(path))
    assert str(path) in str(err.value)


def test_host_override() -> None:
    t = load_target(str(ROOT / "targets" / "raspberry-pi-4.toml"))
    c = t.connection.with_override("admin@10.1.2.3:2222", "/keys/id")
    assert (c.user, c.host, c.port, c.key) == ("admin", "10.1.2.3", 2222, "/keys/id")
    with pytest.raises(UserError, match="not a number"):
        t.connection.with_override("a@h:xx")


@pytest.mark.parametrize("args, needle", [
    (["bench", "--target", "no-such-board", "--bundle", "x.eas"], "unknown target 'no-such-board'"),
    (["deploy", "--target", "no-such-board"], "unknown target 'no-such-board'"),
    (["calibrate", "--target", "no-such-board"], "unknown target 'no-such-board'"),
])
def test_cli_unknown_target_is_one_line(args: list[str], needle: str) -> None:
    out = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and needle in out.stderr


# ---- board detection (boards.py): generic targets resolve to the profile naming the board ----------
def _board(model: str | None, tegra: str | None = None, python: str = "3.11.2") -> BoardInfo:
    return BoardInfo(model, tegra, 4, 3800, "aarch64", python, ("glibc", "2.36"))


@pytest.mark.parametrize("generic, model, tegra, profile, jetpack", [
    ("raspberry-pi", "Raspberry Pi 4 Model B Rev 1.4", None, "raspberry-pi-4", None),
    ("raspberry-pi", "Raspberry Pi 5 Model B Rev 1.0", None, "raspberry-pi-5", None),
    ("raspberry-pi", "Raspberry Pi Compute Module 4 Rev 1.1", None, "raspberry-pi-4", None),
    ("jetson", "NVIDIA Jetson Orin Nano Developer Kit", "# R36 (release), REVISION: 3.0, GCID: 36923193", "jetson-orin-nano", "6"),
    ("jetson", "NVIDIA Jetson Nano Developer Kit", "# R32 (release), REVISION: 7.1, GCID: 29818004", "jetson-nano", "4"),
])
def test_generic_targets_resolve_to_the_profile_that_names_the_board(generic: str, model: str, tegra: str | None,
                                                                      profile: str, jetpack: str | None) -> None:
    from edge_eas.devices.boards import board_profiles, resolve_board
    t = load_target(generic)
    resolved, warning = resolve_board(t, _board(model, tegra), board_profiles)
    assert warning is None and resolved.name == profile and resolved.resolved_from == generic
    assert resolved.connection == t.connection  # reached as the generic target says
    assert resolved.hardware == load_target(profile).hardware and resolved.python == load_target(profile).python
    assert resolved.board is not None and resolved.board["model"] == model and resolved.board["jetpack"] == jetpack


def test_an_unknown_board_gets_the_generic_profile_under_its_own_name_with_a_warning() -> None:
    from edge_eas.devices.boards import board_profiles, resolve_board
    t = load_target("jetson")
    xavier, warn_x = resolve_board(t, _board("NVIDIA Jetson Xavier NX Developer Kit", "# R35 (release)"), board_profiles)
    agx, _ = resolve_board(t, _board("NVIDIA Jetson AGX Orin", "# R35 (release)"), board_profiles)
    assert xavier.name == "generic-aarch64-nvidia-jetson-xavier-nx-developer-kit"
    assert agx.name != xavier.name  # two unknown boards never share a latency model
    assert xavier.hardware == load_target("generic-aarch64").hardware
    assert warn_x and "Xavier NX" in warn_x and "L4T 'R35 (release)'" in warn_x and "generic-aarch64" in warn_x
    assert "L4T R35.4.1" in _board("x", "# R35 (release), REVISION: 4.1, GCID: 33958178").describe()
    pi, warn_pi = resolve_board(t, _board("Raspberry Pi 4 Model B Rev 1.2"), board_profiles)
    assert pi.name == "raspberry-pi-4" and warn_pi and "is for jetson boards" in warn_pi


def test_device_python_and_glibc_outside_the_runtime_range_are_refused_in_one_line() -> None:
    from edge_eas.devices.boards import check_runtime_support
    nano = load_target("jetson-nano")
    with pytest.raises(UserError) as exc:
        check_runtime_support(nano, "3.6.9", ("glibc", "2.27"), "nvidia@jetson-nano.local")
    msg = str(exc.value)
    assert "\n" not in msg and "Python 3.6.9" in msg and "3.8 to 3.13" in msg and "python3.8-venv" in msg
    with pytest.raises(UserError, match="Set \\[device\\] python"):
        check_runtime_support(load_target("raspberry-pi-4"), "3.7.3", ("glibc", "2.28"), "pi@raspberrypi.local")
    with pytest.raises(UserError, match="glibc 2.12 is older than 2.17"):
        check_runtime_support(load_target("raspberry-pi-4"), "3.9.2", ("glibc", "2.12"), "pi@raspberrypi.local")
    assert check_runtime_support(load_target("raspberry-pi-4"), "3.9.2", ("glibc", "2.31"), "pi") == []
    assert check_runtime_support(load_target("raspberry-pi-4"), "3.8.10", ("glibc", "2.31"), "pi") == []
    assert "newer than the range tested" in check_runtime_support(load_target("raspberry-pi-4"), "3.14.1",
                                                                   ("glibc", "2.41"), "pi")[0]


@pytest.mark.parametrize("family, stored, expect", [
    ("jetson", ["jetson-orin-nano", "raspberry-pi-4"], "jetson-orin-nano"),
    ("raspberry-pi", ["generic-aarch64-raspberry-pi-3-model-b", "jetson-nano"], "generic-aarch64-raspberry-pi-3-model-b"),
    ("jetson", ["jetson-orin-nano", "jetson-nano"], "holds measurements of 2 of its boards (jetson-orin-nano, jetson-nano)"),
    ("jetson", ["raspberry-pi-4", "arm64-emu"], "no measurements of any jetson board"),
])
def test_calibrating_a_family_target_calibrates_the_one_board_measured(family: str, stored: list[str],
                                                                       expect: str) -> None:
    """`calibrate --target jetson`: bench filed the rows under the board's profile, so that is what
    is calibrated; with two boards of the family measured the user names one."""
    from edge_eas.cost.calibration import measured_board
    try:
        board = measured_board(load_target(family), stored, Path("store.sqlite"))
    except UserError as exc:
        assert expect in str(exc) and "edge_eas" in str(exc)
        return
    assert board.name == expect and board.hardware.peak_gflops > 0
