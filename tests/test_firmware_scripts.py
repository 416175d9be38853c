"""firmware_scripts/*.sh run by real bash against fake sysfs trees (EDGE_EAS_SYSFS_ROOT)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parent.parent / "firmware_scripts"
BENCH = SCRIPTS / "bench_prepare.sh"
BASH = shutil.which("bash")

pytestmark = pytest.mark.skipif(BASH is None, reason="bash not installed")


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _pi_tree(root: Path) -> Path:
    _write(root / "proc/device-tree/model", "Raspberry Pi 4 Model B Rev 1.4\0")
    for i in range(4):
        cf = root / f"sys/devices/system/cpu/cpu{i}/cpufreq"
        _write(cf / "scaling_governor", "ondemand\n")
        _write(cf / "scaling_available_governors", "ondemand performance powersave\n")
    _write(root / "sys/class/thermal/thermal_zone0/temp", "48230\n")
    _write(root / "sys/class/thermal/thermal_zone1/temp", "51000\n")
    _write(root / "sys/devices/platform/soc/soc:firmware/get_throttled", "0x0\n")
    return root


def _governors(root: Path) -> list[str]:
    return [(root / f"sys/devices/system/cpu/cpu{i}/cpufreq/scaling_governor").read_text().strip()
            for i in range(4)]


def _env(tmp_path: Path, root: Path, path_prefix: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["EDGE_EAS_SYSFS_ROOT"] = str(root)
    env["EDGE_EAS_STATE_DIR"] = str(tmp_path / "state")
    env["HOME"] = str(tmp_path / "home")
    # No real vcgencmd / jetson_clocks / nvpmodel from the host may leak into the test.
    base_path = "/usr/bin:/bin"
    env["PATH"] = f"{path_prefix}:{base_path}" if path_prefix else base_path
    return env


def _bench(env: dict[str, str], *args: str) -> dict:
    proc = subprocess.run([BASH, str(BENCH), "--json", *args], env=env, capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stdout  # --json: exactly one JSON object on stdout
    return json.loads(lines[0])


@pytest.mark.parametrize("script", [BENCH, SCRIPTS / "make_arm64_device.sh"], ids=lambda p: p.name)
def test_syntax_and_header(script: Path) -> None:
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text
    assert os.access(script, os.X_OK)
    subprocess.run([BASH, "-n", str(script)], check=True)
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck not installed")
    proc = subprocess.run([shellcheck, "-S", "warning", "-x", str(script)], capture_output=True,
                          text=True, cwd=SCRIPTS)
    assert proc.returncode == 0, proc.stdout


def test_bench_prepare_raspberry_pi(tmp_path: Path) -> None:
    root = _pi_tree(tmp_path / "root")
    env = _env(tmp_path, root)
    state = tmp_path / "state" / "bench_prepare.state"

    first = _bench(env)
    assert first["board"] == "raspberry-pi"
    assert first["changed"] is True
    assert set(first["governors_before"].values()) == {"ondemand"}
    assert first["governors_after"] == {f"cpu{i}": "performance" for i in range(4)}
    assert first["temperature_c"] == 51.0
    assert first["throttled"] == "0x0"
    assert _governors(root) == ["performance"] * 4

    second = _bench(env)
    assert second["changed"] is False
    assert _governors(root) == ["performance"] * 4
    # The original governors survive the second run.
    assert state.read_text().split() == [w for i in range(4) for w in (f"cpu{i}", "ondemand")]

    restored = _bench(env, "--restore")
    assert restored["changed"] is True
    assert _governors(root) == ["ondemand"] * 4
    assert not state.exists()

    again = _bench(env, "--restore")
    assert again["changed"] is False
    assert _governors(root) == ["ondemand"] * 4

    # Plain (non-JSON) output is readable too.
    proc = subprocess.run([BASH, str(BENCH)], env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert "temperature: 51.0 C" in proc.stdout and "throttled: 0x0" in proc.stdout
    subprocess.run([BASH, str(BENCH), "--restore"], env=env, check=True, capture_output=True)
    assert _governors(root) == ["ondemand"] * 4


def test_bench_prepare_pi_skips_unavailable_performance(tmp_path: Path) -> None:
    root = _pi_tree(tmp_path / "root")
    for i in range(4):
        _write(root / f"sys/devices/system/cpu/cpu{i}/cpufreq/scaling_available_governors",
               "ondemand powersave\n")
    out = _bench(_env(tmp_path, root))
    assert out["changed"] is False
    assert _governors(root) == ["ondemand"] * 4


def _fake_tool(bindir: Path, name: str, log: Path, stdout: str = "") -> None:
    script = bindir / name
    script.write_text(
        "#!/usr/bin/env bash\n"
        f'printf "%s\\n" "{name}${{*:+ $*}}" >> "{log}"\n'
        f'printf "%b" "{stdout}"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def test_bench_prepare_jetson(tmp_path: Path) -> None:
    root = tmp_path / "root"
    _write(root / "etc/nv_tegra_release", "# R35 (release), REVISION: 4.1\n")
    _write(root / "sys/class/thermal/thermal_zone0/temp", "42500\n")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "calls.log"
    _fake_tool(bindir, "jetson_clocks", log)
    _fake_tool(bindir, "nvpmodel", log, stdout="NV Power Mode: MAXN\\n0\\n")
    env = _env(tmp_path, root, bindir)
    state = str(tmp_path / "state" / "bench_prepare.state")

    first = _bench(env)
    assert first["board"] == "jetson"
    assert first["changed"] is True
    assert first["temperature_c"] == 42.5
    assert first["throttled"] == "unknown"
    assert "MAXN" in first["power_mode"]
    assert log.read_text().splitlines() == [f"jetson_clocks --store {state}", "jetson_clocks",
                                            "nvpmodel -q"]
    # The fake --store wrote nothing; the script must still remember it has stored the clocks.
    Path(state).touch()

    second = _bench(env)
    assert second["changed"] is False
    assert log.read_text().splitlines()[3:] == ["nvpmodel -q"]  # no second --store

    restored = _bench(env, "--restore")
    assert restored["changed"] is True
    assert log.read_text().splitlines()[4:] == [f"jetson_clocks --restore {state}"]
    assert not Path(state).exists()

    again = _bench(env, "--restore")
    assert again["changed"] is False
    assert len(log.read_text().splitlines()) == 5
    # No nvpmodel call ever changes the power mode.
    assert all(not line.startswith("nvpmodel -m") for line in log.read_text().splitlines())


def test_bench_prepare_generic(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    out = _bench(_env(tmp_path, root))
    assert out["board"] == "generic"
    assert out["changed"] is False
    assert out["governors_after"] == {}
    assert out["temperature_c"] is None
    assert out["throttled"] == "unknown"
    assert _bench(_env(tmp_path, root), "--restore")["changed"] is False


def test_bench_prepare_rejects_unknown_argument(tmp_path: Path) -> None:
    proc = subprocess.run([BASH, str(BENCH), "--bogus"], env=_env(tmp_path, tmp_path),
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "unknown argument: --bogus" in proc.stderr

