"""`--target raspberry-pi` and `--target jetson` over real SSH: sshd devices (tests/labs/ssh_lab.py)
whose /proc/device-tree/model and /etc/nv_tegra_release are fake trees (EDGE_EAS_SYSFS_ROOT, set
by sshd for that device only). Deploy and bench resolve the generic target to the board's profile
and file the measurements under it, with the board the device reported. A device whose Python
is 3.6 is refused before anything is copied.
"""

from __future__ import annotations

import json
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .labs.ssh_lab import FaultLab, SimDevice, base_python, have_sshd, leftovers

from .test_firmware_scripts import _pi_tree as pi_tree

paramiko = pytest.importorskip("paramiko")
pytestmark = pytest.mark.skipif(not have_sshd(), reason="needs OpenSSH sshd (apt-get install openssh-server)")

ORIN = "NVIDIA Jetson Orin Nano Developer Kit"


NANO = "NVIDIA Jetson Nano Developer Kit"


def jetson_tree(root: Path, model: str = ORIN, release: str = "R36 (release), REVISION: 3.0") -> Path:
    for path, text in [("proc/device-tree/model", model + "\0"),
                       ("etc/nv_tegra_release", f"# {release}, GCID: 36923193, BOARD: generic, "
                                                "EABI: aarch64, DATE: Fri Jul 19 23:24:25 UTC 2024\n"),
                       ("sys/class/thermal/thermal_zone0/temp", "41500\n")]:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    return root


def python36(d: Path) -> Path:
    """A device interpreter that is Python 3.6 as far as anything asking it can tell (what JetPack 4
    ships as python3): the real interpreter with its version reported as 3.6.9."""
    path = d / "python3.6"
    path.write_text("#!/bin/sh\n"
                    "# run as python: python3.6 -c CODE ARGS...\n"
                    'code="$2"; shift 2\n'
                    f"exec {base_python()} -c 'import platform, sys; platform.python_version = lambda: \"3.6.9\"; "
                    "sys.version_info = (3, 6, 9, \"final\", 0); code = sys.argv[1]; sys.argv = sys.argv[:1] + sys.argv[2:]; "
                    "exec(compile(code, \"-c\", \"exec\"))' \"$code\" \"$@\"\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    fakes = tmp_path_factory.mktemp("boards")
    envs = {"pi": {"EDGE_EAS_SYSFS_ROOT": str(pi_tree(fakes / "pi"))},
            "orin": {"EDGE_EAS_SYSFS_ROOT": str(jetson_tree(fakes / "orin"))},
            "nano36": {"EDGE_EAS_SYSFS_ROOT": str(jetson_tree(fakes / "nano", NANO, "R32 (release), REVISION: 7.1"))}}
    lab = FaultLab(tmp_path_factory.mktemp("lab"), ["pi", "orin", "nano36"], device_envs=envs).start()
    yield lab
    lab.close()
    assert leftovers(lab) == {"netns": [], "links": [], "processes": []}


def generic_target(lab: FaultLab, dev: SimDevice, family: str, python: str | None = None) -> Path:
    """The shipped generic target (`[board] detect`), reaching the simulated device; its [device]
    keys (the lab's interpreter and per-device runtime dir, the numpy engine) win over the profile's."""
    path = lab.write_target(dev, lab.root / f"{dev.name}-{family}.toml")
    text = path.read_text().replace(f"name = {json.dumps(dev.name)}", f"name = {json.dumps(family)}")
    if python:
        text = text.replace(f"python = {json.dumps(base_python())}", f"python = {json.dumps(python)}")
    path.write_text(text + f'\n[board]\ndetect = "{family}"\nfallback = "generic-aarch64"\n')
    return path


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge_eas.cli", *args], capture_output=True, text=True, env=env,
                          timeout=600)


def deploy_and_bench(env: dict[str, str], target: Path, bundle: Path, store: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    dep = cli(env, "deploy", "--target", str(target), "--bundle", str(bundle), "--allow-unsigned", "--json")
    assert dep.returncode == 0, dep.stderr
    bench = cli(env, "bench", "--target", str(target), "--bundle", str(bundle), "--scenarios", "3", "--runs", "30",
                "--warmup", "2", "--store", str(store), "--json")
    assert bench.returncode == 0, bench.stderr
    return json.loads(dep.stdout), json.loads(bench.stdout)


def stored_rows(store: Path) -> list[tuple[str, str, dict[str, Any]]]:
    db = sqlite3.connect(store)
    try:
        return [(t, d, json.loads(e)) for t, d, e in db.execute("SELECT target, device_id, environment_json "
                                                                 "FROM measurements")]
    finally:
        db.close()


@pytest.mark.parametrize("dev_name, family, profile, model", [
    ("pi", "raspberry-pi", "raspberry-pi-4", "Raspberry Pi 4 Model B Rev 1.4"),
    ("orin", "jetson", "jetson-orin-nano", ORIN),
])
def test_generic_target_deploys_and_benches_as_the_detected_board(lab: FaultLab, env: dict[str, str],
                                                                  tiny_bundle: Path, tmp_path: Path, dev_name: str,
                                                                  family: str, profile: str, model: str) -> None:
    dev = next(d for d in lab.devices if d.name == dev_name)
    store = tmp_path / "store.sqlite"
    dep, bench = deploy_and_bench(env, generic_target(lab, dev, family), tiny_bundle, store)
    assert dep["target"] == profile and dep["resolved_from"] == family and dep["board"]["model"] == model
    assert dep["smoke"]["hostname"] == dev.hostname and dep["runtime_installed"]
    if family == "jetson":
        assert dep["board"]["jetpack"] == "6"
    assert bench["failed_devices"] == [] and [d["target"] for d in bench["devices"]] == [profile]
    rows = stored_rows(store)
    assert len(rows) == 3
    # filed under the board's profile, each row carrying the board the agent read
    assert {(t, e["board_model"]) for t, _, e in rows} == {(profile, model)}
    # calibrating the family calibrates the board measured, under the board's own name
    cal = cli(env, "calibrate", "--target", str(generic_target(lab, dev, family)), "--store", str(store), "--json")
    assert cal.returncode == 0, cal.stderr
    doc = json.loads(cal.stdout)
    assert doc["target"] == profile and doc["resolved_from"] == family and Path(doc["model_file"]).stem == profile


def test_a_device_with_python_36_is_refused_before_anything_is_copied(lab: FaultLab, env: dict[str, str],
                                                                        tiny_bundle: Path) -> None:
    """A JetPack 4 Jetson Nano whose runtime python is its system 3.6: the jetson-nano profile's
    note says what to do."""
    dev = next(d for d in lab.devices if d.name == "nano36")
    target = generic_target(lab, dev, "jetson", python=str(python36(lab.root)))
    res = cli(env, "deploy", "--target", str(target), "--bundle", str(tiny_bundle), "--allow-unsigned")
    errors = [ln for ln in res.stderr.strip().splitlines() if ln.startswith("edge_eas deploy: error:")]
    assert res.returncode == 2 and len(errors) == 1 and "Traceback" not in res.stderr, res.stderr
    assert "Python 3.6.9" in errors[0] and "supports Python 3.8 to 3.13" in errors[0], errors[0]
    assert "python3.8-venv" in errors[0]  # the jetson-nano profile's [board] note: what to do about it
    assert "board: model 'NVIDIA Jetson Nano Developer Kit', L4T R32.7.1" in res.stderr  # what was read
    assert not dev.runtime_dir.exists()  # no venv, no wheel, no bundle: nothing was copied
