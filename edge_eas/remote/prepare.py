"""`edge_eas bench --prepare`: put the device in a steady state for timing (performance governor
on a Pi, `jetson_clocks` on a Jetson) with firmware_scripts/bench_prepare.sh, record its
temperature and throttling state next to the measurements, and restore it afterwards, even
when the bench fails.

The scripts are uploaded to `<runtime_dir>/firmware/` (hash-checked, only when changed) and run
with the device's own bash; on the local target they run from the source tree.
"""

from __future__ import annotations

import json
import os
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from edge_eas.common.paths import home
from edge_eas.errors import UserError
from edge_eas.remote.layout import sha256_file

FIRMWARE_FILES = ("lib.sh", "bench_prepare.sh")
SCRIPT_TIMEOUT_S = 120.0


def firmware_dir() -> Path:
    """firmware_scripts/ beside the package (a source checkout or an editable install)."""
    d = Path(__file__).resolve().parent.parent.parent / "firmware_scripts"
    if not (d / "bench_prepare.sh").is_file():
        raise UserError(f"firmware scripts not found in {d}: --prepare needs edge_eas installed from its source tree")
    return d


def _parse(out: str, what: str) -> dict[str, Any]:
    for line in reversed(out.strip().splitlines()):
        if line.startswith("{"):
            try:
                return dict(json.loads(line))
            except json.JSONDecodeError:
                break
    raise UserError(f"{what} printed no JSON result: {out.strip()[-200:]!r}")


def _run_local(script: Path, args: list[str], runtime_dir: Path) -> dict[str, Any]:
    env = {**os.environ, "EDGE_EAS_STATE_DIR": str(runtime_dir)}
    res = subprocess.run(["bash", str(script), *args], capture_output=True, text=True, env=env,
                         timeout=SCRIPT_TIMEOUT_S)
    if res.returncode != 0:
        raise UserError(f"{script.name} {' '.join(args)} failed (exit {res.returncode}): "
                        f"{(res.stderr.strip().splitlines() or ['no output'])[-1]}")
    return _parse(res.stdout, script.name)


def _run_remote(runner: Any, args: list[str]) -> dict[str, Any]:
    """Upload the scripts when they changed, then run bench_prepare.sh on the device."""
    session = runner.session()
    root = runner.layout.root
    remote_dir = f"{root}/firmware"
    src = firmware_dir()
    for name in FIRMWARE_FILES:
        local = src / name
        remote = f"{remote_dir}/{name}"
        if session.sha256(remote) != sha256_file(local):
            session.upload(local, remote)
    argv = ["env", f"EDGE_EAS_STATE_DIR={root}", "bash", f"{remote_dir}/bench_prepare.sh", *args]
    res = session.run(argv, timeout=SCRIPT_TIMEOUT_S)
    if res.rc != 0:
        raise UserError(f"bench_prepare.sh {' '.join(args)} failed on {runner.device_id} (exit {res.rc}): "
                        f"{(res.stderr.strip().splitlines() or ['no output'])[-1]}")
    return _parse(res.stdout, "bench_prepare.sh")


def run_prepare_script(runner: Any, restore: bool, runtime_dir: Path | None = None) -> dict[str, Any]:
    args = ["--restore", "--json"] if restore else ["--json"]
    if hasattr(runner, "layout"):  # an SSHRunner: the script runs on the device
        return _run_remote(runner, args)
    state = runtime_dir or home() / "device"
    state.mkdir(parents=True, exist_ok=True)
    return _run_local(firmware_dir() / "bench_prepare.sh", args, state)


@contextmanager
def prepared_device(runner: Any, record: dict[str, Any], runtime_dir: Path | None = None) -> Iterator[None]:
    """Prepare, run the body, restore; `record` gets the script's "prepare" and "restore" reports."""
    record["prepare"] = run_prepare_script(runner, restore=False, runtime_dir=runtime_dir)
    try:
        yield
    finally:
        try:
            record["restore"] = run_prepare_script(runner, restore=True, runtime_dir=runtime_dir)
        except Exception as exc:  # noqa: BLE001 - the measurements are stored; say what to undo by hand
            record["restore"] = {"failure": f"{exc} (run firmware_scripts/bench_prepare.sh --restore on the "
                                            f"device)"}
