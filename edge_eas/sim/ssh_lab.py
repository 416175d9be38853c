"""Simulated edge devices for `edge_eas quickstart --ssh-demo` (and benchmarks/fleet.py): a real
OpenSSH sshd per device, each in its own network namespace (own address, host key, hostname, home
directory), joined to this machine by a bridge and veth pairs on a per-run link-local /24. What only
the tests need (cut links, new host keys, per-device environments, the leak check) is
tests/labs/ssh_lab.py, built on this one.

Without the rights to create namespaces the same lab runs sshd on 127.0.0.1 ports instead
(`DeviceLab.uses_netns` is then False).

Everything the lab starts is killed by PID on close (the sshd listeners, their per-connection
session processes and whatever those ran), then the namespaces and the bridge are deleted.
Never pkill/killall: other runs may share this machine.
"""

from __future__ import annotations

import atexit
import json
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

SSHD = "/usr/sbin/sshd"
# Runs inside the device's fresh UTS + mount namespaces: own hostname, bind mounts (the device's
# own home over the user's), then becomes sshd. argv: HOSTNAME BINDS_JSON SSHD ARGS...
DEVICE_LAUNCHER = """
import json, os, socket, subprocess, sys
socket.sethostname(sys.argv[1])
for src, dst in json.loads(sys.argv[2]):
    subprocess.run(["mount", "--rbind", src, dst], check=True)
os.execv(sys.argv[3], sys.argv[3:])
"""


def have_sshd() -> bool:
    return os.path.exists(SSHD) and shutil.which("ssh-keygen") is not None


def base_python() -> str:
    """The interpreter a device venv is created from (never a venv: its packages would leak)."""
    return os.path.realpath(getattr(sys, "_base_executable", sys.executable))


def run_tool(argv: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(list(argv), capture_output=True, text=True)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {res.stderr.strip()}")
    return res


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def descendants(pid: int) -> list[int]:
    """All live descendants of pid (from /proc), children first-found order."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def kill_pids(pids: Sequence[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@dataclass
class SimDevice:
    name: str
    index: int
    dir: Path
    addr: str
    port: int
    hostname: str
    netns: str | None = None
    host_veth: str | None = None
    proc: subprocess.Popen[bytes] | None = None

    @property
    def home(self) -> Path:
        """The device's own home directory (mounted over the login user's home in its namespace)."""
        return self.dir / "home"

    @property
    def runtime_dir(self) -> Path:
        """Where the runtime lands, as seen from this machine."""
        return self.home / ".edge_eas" if self.netns else self.dir / "runtime"

    @property
    def remote_runtime_dir(self) -> str:
        """The same directory as the device sees it (the default `~/.edge_eas` with namespaces)."""
        return "~/.edge_eas" if self.netns else str(self.runtime_dir)

    @property
    def host_key(self) -> Path:
        return self.dir / "ssh_host_ed25519_key"

    @property
    def config(self) -> Path:
        return self.dir / "sshd_config"

    @property
    def known_hosts_name(self) -> str:
        return self.addr if self.port == 22 else f"[{self.addr}]:{self.port}"


class DeviceLab:
    """`with DeviceLab(tmp, ["dev-a", "dev-b"]) as lab:` -> lab.devices, lab.write_target(dev)."""

    def __init__(self, root: Path, names: Sequence[str], prefer_netns: bool = True) -> None:
        self.root = Path(root)
        self.names = list(names)
        self.prefer_netns = prefer_netns
        self.devices: list[SimDevice] = []
        self.uses_netns = False
        self.subnet: int | None = None
        self.bridge: str | None = None
        self.client_key = self.root / "client_key"
        self.known_hosts = self.root / "known_hosts"
        self._closed = False

    # ---- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> "DeviceLab":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def start(self) -> "DeviceLab":
        self.root.mkdir(parents=True, exist_ok=True)
        atexit.register(self.close)
        try:
            run_tool(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edge-eas-test", "-f", str(self.client_key)])
            if os.geteuid() == 0:
                Path("/run/sshd").mkdir(parents=True, exist_ok=True)
            self.uses_netns = self.prefer_netns and self._make_bridge()
            for i, name in enumerate(self.names, start=1):
                self._make_device(i, name)
            for dev in self.devices:
                self.start_sshd(dev)
            self.known_hosts.write_text("".join(self.known_hosts_line(d) for d in self.devices))
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for dev in self.devices:
            self.kill_device_processes(dev)
            if dev.netns:
                run_tool(["ip", "netns", "del", dev.netns], check=False)
            if dev.host_veth:  # normally gone with the namespace; make sure
                run_tool(["ip", "link", "del", dev.host_veth], check=False)
        if self.bridge:
            run_tool(["ip", "link", "del", self.bridge], check=False)

    # ---- network -----------------------------------------------------------------------------
    def _make_bridge(self) -> bool:
        """A bridge on a free 169.254.X.0/24; False when namespaces cannot be made here."""
        if os.geteuid() != 0 or shutil.which("ip") is None:
            return False
        used = run_tool(["ip", "-4", "-o", "addr", "show"], check=False).stdout
        candidates = [x for x in range(2, 254) if x != 169 and f"169.254.{x}." not in used]
        random.shuffle(candidates)
        for x in candidates[:20]:
            bridge = f"eas{x}br"
            if run_tool(["ip", "link", "add", bridge, "type", "bridge"], check=False).returncode != 0:
                continue  # taken by a parallel run, or no permission
            self.bridge, self.subnet = bridge, x
            probe = f"eas{x}probe{os.getpid() % 10000}"
            if run_tool(["ip", "netns", "add", probe], check=False).returncode != 0:
                return False
            run_tool(["ip", "netns", "del", probe], check=False)
            run_tool(["ip", "addr", "add", f"169.254.{x}.1/24", "dev", bridge])
            run_tool(["ip", "link", "set", bridge, "up"])
            return True
        return False

    def _make_device(self, i: int, name: str) -> SimDevice:
        """Namespace + veth + host key + sshd config; registered first so close() cleans partial setups."""
        d = self.root / name
        d.mkdir(parents=True, exist_ok=True)
        if self.uses_netns:
            x = self.subnet
            dev = SimDevice(name, i, d, f"169.254.{x}.{10 + i}", 22, name, netns=f"eas{x}d{i}",
                            host_veth=f"eas{x}h{i}")
            self.devices.append(dev)
            ns, veth = dev.netns, dev.host_veth
            assert ns and veth
            run_tool(["ip", "netns", "add", ns])
            run_tool(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns])
            run_tool(["ip", "link", "set", veth, "master", str(self.bridge)])
            run_tool(["ip", "link", "set", veth, "up"])
            run_tool(["ip", "-n", ns, "addr", "add", f"{dev.addr}/24", "dev", "eth0"])
            run_tool(["ip", "-n", ns, "link", "set", "eth0", "up"])
            run_tool(["ip", "-n", ns, "link", "set", "lo", "up"])
        else:
            dev = SimDevice(name, i, d, "127.0.0.1", free_port(), name)
            self.devices.append(dev)
        dev.home.mkdir(exist_ok=True)
        run_tool(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(dev.host_key)])
        shutil.copy(f"{self.client_key}.pub", d / "authorized_keys")
        dev.config.write_text("\n".join([
            f"Port {dev.port}", f"ListenAddress {dev.addr}", f"HostKey {dev.host_key}", f"PidFile {d / 'sshd.pid'}",
            f"AuthorizedKeysFile {d / 'authorized_keys'}", "UsePAM no", "StrictModes no",
            "PasswordAuthentication no", "KbdInteractiveAuthentication no", "PermitRootLogin prohibit-password",
            "PubkeyAuthentication yes", "Subsystem sftp internal-sftp", "UseDNS no", "PrintMotd no",
            "MaxStartups 100", "MaxSessions 100", ""]))
        return dev

    # ---- sshd --------------------------------------------------------------------------------
    def start_sshd(self, dev: SimDevice) -> None:
        sshd = [SSHD, "-D", "-e", "-f", str(dev.config)]
        if dev.netns:
            binds = json.dumps(self._home_binds(dev))
            argv = ["ip", "netns", "exec", dev.netns, "unshare", "--uts", "--mount", "--", sys.executable, "-c",
                    DEVICE_LAUNCHER, dev.hostname, binds, *sshd]
        else:
            argv = sshd
        log = open(dev.dir / "sshd.log", "ab")
        try:
            dev.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        finally:
            log.close()
        self._wait_ready(dev)

    def _home_binds(self, dev: SimDevice) -> list[tuple[str, str]]:
        """Give the device an empty home of its own (like a fresh board: no shell rc files, its
        own ~/.edge_eas), keeping the interpreter reachable if it lives in the real home."""
        real_home = Path(pwd.getpwuid(os.geteuid()).pw_dir)
        binds = []
        python = Path(base_python())
        if real_home in python.parents:
            top = real_home / python.relative_to(real_home).parts[0]
            (dev.home / top.name).mkdir(exist_ok=True)
            binds.append((str(top), str(dev.home / top.name)))
        binds.append((str(dev.home), str(real_home)))
        return binds

    def _wait_ready(self, dev: SimDevice, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert dev.proc is not None
            if dev.proc.poll() is not None:
                raise RuntimeError(f"sshd for {dev.name} exited: {(dev.dir / 'sshd.log').read_text()[-500:]}")
            try:
                with socket.create_connection((dev.addr, dev.port), timeout=1) as s:
                    if s.recv(4).startswith(b"SSH-"):
                        return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"sshd for {dev.name} not ready on {dev.addr}:{dev.port}")

    def device_pids(self, dev: SimDevice) -> set[int]:
        """Processes this lab started for the device: sshd, its sessions and what they ran."""
        pids: set[int] = set()
        if dev.proc is not None and dev.proc.poll() is None:
            pids.add(dev.proc.pid)
            pids.update(descendants(dev.proc.pid))
        if dev.netns:
            out = run_tool(["ip", "netns", "pids", dev.netns], check=False).stdout
            pids.update(int(p) for p in out.split() if p.isdigit())
        return pids - {os.getpid()}

    def kill_device_processes(self, dev: SimDevice) -> None:
        """Like pulling the plug: sshd and every session process die at once."""
        for _ in range(5):
            pids = self.device_pids(dev)
            if not pids:
                break
            kill_pids(sorted(pids))
            time.sleep(0.05)
        if dev.proc is not None:
            try:
                dev.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            dev.proc = None

    # ---- what the client side needs -------------------------------------------------------------
    def known_hosts_line(self, dev: SimDevice) -> str:
        kind, b64 = Path(f"{dev.host_key}.pub").read_text().split()[:2]
        return f"{dev.known_hosts_name} {kind} {b64}\n"

    def write_target(self, dev: SimDevice, path: Path | None = None, known_hosts: Path | None = None,
                     key: Path | None = None, **connection: float | int) -> Path:
        """A targets TOML for the device (extra `[connection]` keys: timeouts, retries...)."""
        path = path or self.root / f"{dev.name}.toml"
        conn = {"host": dev.addr, "port": dev.port, "user": "root" if os.geteuid() == 0 else os.environ.get("USER", ""),
                "key": str(key or self.client_key), "known_hosts": str(known_hosts or self.known_hosts), **connection}
        lines = [f"name = {json.dumps(dev.name)}",
                 f"description = {json.dumps(f'simulated device {dev.hostname} (sshd at {dev.addr}:{dev.port})')}",
                 "", "[connection]"]
        lines += [f"{k} = {json.dumps(v)}" for k, v in conn.items()]
        lines += ["", "[device]", f"python = {json.dumps(base_python())}",
                  f"runtime_dir = {json.dumps(dev.remote_runtime_dir)}", 'engine = "numpy"', "threads = 1", ""]
        path.write_text("\n".join(lines))
        return path

