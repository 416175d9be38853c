"""A 64-bit ARM stand-in device for tests and benchmarks: a Debian arm64 rootfs run under qemu
user emulation, reached over SSH through the rootfs's own aarch64 sshd on 127.0.0.1:PORT.

The rootfs is built (or restored from its cached tarball) and started by
firmware_scripts/make_arm64_device.sh, the same script users run; this module adds what a test
needs around it: a private copy of the rootfs, a client key, known_hosts, a target TOML, and a
teardown that kills every process started in the chroot by PID and checks nothing stays mounted.

`with Arm64Lab(tmp) as lab:` -> lab.device, lab.write_target(). Needs root and a working
qemu-aarch64 binfmt entry; otherwise start() raises Arm64Unavailable (tests skip on it).
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_eas.common.toml_compat import tomllib
from edge_eas.sim.ssh_lab import descendants, free_port, kill_pids, run_tool

SCRIPT_NAME = "make_arm64_device.sh"
EXIT_NOT_ROOT, EXIT_NO_BINFMT = 3, 4  # the script's distinct exit codes: "cannot host it here"
DEVICE_PYTHON = "/usr/bin/python3"  # Debian's python3 inside the rootfs
DEVICE_RUNTIME_DIR = "/root/.edge_eas"
BOARD_TREE_IN_ROOTFS = "/opt/edge_eas_board"  # where board_tree lands inside the rootfs
BUILD_TIMEOUT_S = 1800.0  # debootstrap from scratch: ~5 min on 2 cores, far more on a slow mirror


class Arm64Unavailable(RuntimeError):
    """This machine cannot host the arm64 stand-in (not root, or no qemu-aarch64 binfmt)."""


def script_path() -> Path:
    """firmware_scripts/make_arm64_device.sh of this source checkout (the labs never ship)."""
    path = Path(__file__).resolve().parents[2] / "firmware_scripts" / SCRIPT_NAME
    if not path.is_file():
        raise Arm64Unavailable(f"{SCRIPT_NAME} not found at {path} (the arm64 lab runs from a source checkout)")
    return path


def shipped_target() -> Path:
    return Path(__file__).resolve().parents[2] / "targets" / "arm64-emu.toml"


def chroot_pids(rootfs: Path) -> set[int]:
    """Processes whose root directory is the rootfs: everything started in the chroot."""
    try:
        st = os.stat(rootfs)
    except OSError:
        return set()
    want = (st.st_dev, st.st_ino)
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            root = os.stat(entry / "root")
        except OSError:  # gone, or a kernel thread
            continue
        if (root.st_dev, root.st_ino) == want:
            pids.add(int(entry.name))
    return pids - {os.getpid()}


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below path in this mount namespace, deepest first."""
    p = str(path)
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mnt = line.split()[4].replace("\\040", " ")
        if mnt == p or mnt.startswith(p + "/"):
            out.append(mnt)
    return sorted(out, reverse=True)


@dataclass
class Arm64Device:
    name: str
    rootfs: Path
    dir: Path
    port: int = 0
    pid: int | None = None
    known_hosts_line: str = ""
    started_pids: set[int] = field(default_factory=set)

    addr = "127.0.0.1"
    python = DEVICE_PYTHON
    remote_runtime_dir = DEVICE_RUNTIME_DIR

    @property
    def runtime_dir(self) -> Path:
        """The device's runtime dir as seen from this machine."""
        return self.rootfs / DEVICE_RUNTIME_DIR.lstrip("/")

    @property
    def hostname(self) -> str:
        return self.name


@dataclass
class BuildInfo:
    seconds: float
    restored: bool
    log: str


class Arm64Lab:
    """One emulated arm64 device on a private rootfs copy under `root`: Debian `suite` (bookworm:
    Python 3.11, numpy 1.24; bullseye: Python 3.9, numpy 1.19, like Raspberry Pi OS bullseye)."""

    def __init__(self, root: Path, name: str = "arm64-dev", keep_rootfs: bool = False, suite: str = "bookworm",
                 board_tree: Path | None = None) -> None:
        self.root = Path(root)
        self.suite = suite
        # A board's fake /proc, /sys and /etc files (a directory here), copied into the rootfs and
        # named by EDGE_EAS_SYSFS_ROOT in every SSH session: qemu user emulation shows the host's
        # /proc, which has no device-tree model, so this is how the device says which board it is.
        self.board_tree = board_tree
        self.device_env = {"EDGE_EAS_SYSFS_ROOT": BOARD_TREE_IN_ROOTFS} if board_tree else {}
        self.device = Arm64Device(name, self.root / "rootfs", self.root / name)
        self.keep_rootfs = keep_rootfs
        self.client_key = self.root / "client_key"
        self.known_hosts = self.root / "known_hosts"
        self.build: BuildInfo | None = None
        self.start_seconds = 0.0
        self._closed = False

    def __enter__(self) -> "Arm64Lab":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---- lifecycle ---------------------------------------------------------------------------
    def start(self) -> "Arm64Lab":
        if os.geteuid() != 0:
            raise Arm64Unavailable("the arm64 stand-in needs root (debootstrap, chroot, mounts)")
        self.root.mkdir(parents=True, exist_ok=True)
        self.device.dir.mkdir(exist_ok=True)
        atexit.register(self.close)
        try:
            self.build = self._build()
            if self.board_tree:
                shutil.copytree(self.board_tree, self.device.rootfs / BOARD_TREE_IN_ROOTFS.lstrip("/"),
                                dirs_exist_ok=True)
            run_tool(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edge-eas-arm64", "-f", str(self.client_key)])
            self._start_sshd()
        except BaseException:
            self.close()
            raise
        return self

    def _script(self, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        res = subprocess.run([str(script_path()), *args], capture_output=True, text=True, timeout=timeout)
        if res.returncode in (EXIT_NOT_ROOT, EXIT_NO_BINFMT):
            raise Arm64Unavailable(_last_error(res.stderr))
        if res.returncode != 0:
            raise RuntimeError(f"{SCRIPT_NAME} {args[0]} failed (exit {res.returncode}): {res.stderr.strip()[-800:]}")
        return res

    def _build(self) -> BuildInfo:
        t0 = time.monotonic()
        res = self._script("build", "--rootfs", str(self.device.rootfs), "--suite", self.suite, timeout=BUILD_TIMEOUT_S)
        return BuildInfo(round(time.monotonic() - t0, 2), "restored " in res.stderr or "up to date" in res.stderr,
                         res.stderr)

    def _start_sshd(self) -> None:
        dev = self.device
        dev.port = free_port()
        t0 = time.monotonic()
        res = self._script("start", "--rootfs", str(dev.rootfs), "--port", str(dev.port), "--authorized-key",
                           f"{self.client_key}.pub", "--hostname", dev.name, "--log", str(dev.dir / "sshd.log"),
                           *(a for k, v in self.device_env.items() for a in ("--setenv", f"{k}={v}")), timeout=120)
        self.start_seconds = round(time.monotonic() - t0, 2)
        fields = dict(line.split("=", 1) for line in res.stdout.splitlines() if "=" in line)
        dev.pid = int(fields["pid"])
        dev.started_pids.add(dev.pid)
        dev.known_hosts_line = fields["known_hosts"] + "\n"
        self.known_hosts.write_text(dev.known_hosts_line)

    def device_pids(self) -> set[int]:
        """What this lab started and still runs: sshd, its sessions and whatever they ran."""
        pids = chroot_pids(self.device.rootfs)  # sshd included: it runs in the chroot
        for pid in list(pids):
            pids.update(descendants(pid))
        return pids - {os.getpid()}

    def stop_device(self) -> None:
        """Kill every process of the device by PID (never by name: other runs share this machine)."""
        for _ in range(20):
            pids = self.device_pids()
            if not pids:
                break
            kill_pids(sorted(pids))
            time.sleep(0.05)
        self.device.pid = None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.stop_device()
        # /proc and /dev live in the device's own mount namespace and vanish with its last
        # process; anything mounted under the rootfs in ours (an interrupted build) goes too.
        for mnt in mounts_under(self.device.rootfs):
            if run_tool(["umount", mnt], check=False).returncode != 0:
                run_tool(["umount", "-l", mnt], check=False)
        if not self.keep_rootfs and not mounts_under(self.device.rootfs) and not self.device_pids():
            shutil.rmtree(self.device.rootfs, ignore_errors=True)

    # ---- what the client side needs -------------------------------------------------------------
    def write_target(self, path: Path | None = None, engine: str = "auto", threads: int = 1,
                     **connection: float | int) -> Path:
        """A targets TOML for the device, with the hardware prior of the shipped arm64-emu profile."""
        dev = self.device
        path = path or self.root / f"{dev.name}.toml"
        conn = {"host": dev.addr, "port": dev.port, "user": "root", "key": str(self.client_key),
                "known_hosts": str(self.known_hosts), **connection}
        hardware = tomllib.loads(shipped_target().read_text()).get("hardware", {})
        lines = [f"name = {json.dumps(dev.name)}",
                 f"description = {json.dumps(f'Debian {self.suite} arm64 under qemu user emulation (sshd at {dev.addr}:{dev.port})')}",
                 "", "[connection]", *(f"{k} = {json.dumps(v)}" for k, v in conn.items()),
                 "", "[device]", f"python = {json.dumps(dev.python)}",
                 f"runtime_dir = {json.dumps(dev.remote_runtime_dir)}", f"engine = {json.dumps(engine)}",
                 f"threads = {threads}", "", "[hardware]", *(f"{k} = {json.dumps(v)}" for k, v in hardware.items()), ""]
        path.write_text("\n".join(lines))
        return path


def leftovers(lab: Arm64Lab) -> dict[str, list[str]]:
    """What a closed lab left behind (should be nothing): processes in the chroot, mounts."""
    return {"processes": [str(p) for p in sorted(lab.device_pids())],
            "mounts": mounts_under(lab.device.rootfs)}


def _last_error(stderr: str) -> str:
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    return lines[-1].replace("make_arm64_device: error: ", "") if lines else "unknown reason"
