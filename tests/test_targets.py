"""Target profiles: every shipped profile loads; bad ones fail with one line naming file and key."""

import subprocess
import sys
from pathlib import Path

import pytest

from edge_eas.errors import UserError
from edge_eas.targets import load_target

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "edge_eas.cli"]


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "targets").glob("*.toml")))
def test_shipped_profiles_load(name: str) -> None:
    t = load_target(str(ROOT / "targets" / f"{name}.toml"))
    assert t.is_fleet or t.local or (t.connection is not None and t.connection.host)
    assert t.is_fleet or t.hardware.peak_gflops > 0


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
