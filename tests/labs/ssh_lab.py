"""The quick start's simulated devices (edge_eas.sim.ssh_lab) with what tests need on top: faults
(a cut cable, a reinstalled device's new host key), per-device environments (a fake sysfs root
for one board) and the leak check after close."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Sequence

from edge_eas.sim.ssh_lab import DeviceLab, SimDevice, base_python, have_sshd, run_tool

__all__ = ["FaultLab", "SimDevice", "base_python", "have_sshd", "leftovers"]


class FaultLab(DeviceLab):
    """`with FaultLab(tmp, ["dev-a"], device_env={...}) as lab:` -> lab.set_link(dev, up=False)."""

    def __init__(self, root: Path, names: Sequence[str], prefer_netns: bool = True,
                 device_env: dict[str, str] | None = None, device_envs: dict[str, dict[str, str]] | None = None) -> None:
        super().__init__(root, names, prefer_netns)
        self.device_env = dict(device_env or {})  # set in every SSH session (sshd SetEnv), e.g. a fake sysfs root
        self.device_envs = dict(device_envs or {})  # per device name, over device_env (e.g. one fake Jetson)
        self.started: list[subprocess.Popen[bytes]] = []  # every sshd ever started, for the leak check

    def _make_device(self, i: int, name: str) -> SimDevice:
        dev = super()._make_device(i, name)
        env = {**self.device_env, **self.device_envs.get(name, {})}
        if env:
            with dev.config.open("a") as f:
                f.write(f"SetEnv {' '.join(f'{k}={v}' for k, v in env.items())}\n")
        return dev

    def start_sshd(self, dev: SimDevice) -> None:
        try:
            super().start_sshd(dev)
        finally:
            if dev.proc is not None:
                self.started.append(dev.proc)

    def set_link(self, dev: SimDevice, up: bool) -> None:
        """Cut (or restore) the device's cable: the host side of its veth pair."""
        if not dev.host_veth:
            raise RuntimeError("link faults need network namespaces")
        run_tool(["ip", "link", "set", dev.host_veth, "up" if up else "down"])

    def regenerate_host_key(self, dev: SimDevice) -> None:
        """The device was reinstalled (or someone is impersonating it): a new host key."""
        for p in (dev.host_key, Path(f"{dev.host_key}.pub")):
            p.unlink(missing_ok=True)
        run_tool(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", dev.name, "-f", str(dev.host_key)])
        self.kill_device_processes(dev)
        self.start_sshd(dev)


def leftovers(lab: FaultLab) -> dict[str, list[str]]:
    """What a closed lab left behind (should be nothing): namespaces, links, processes."""
    ns = run_tool(["ip", "netns", "list"], check=False).stdout.split() if lab.uses_netns else []
    links = run_tool(["ip", "-o", "link", "show"], check=False).stdout if lab.uses_netns else ""
    names = [n for n in [lab.bridge, *[d.host_veth for d in lab.devices]] if n]
    return {"netns": [d.netns for d in lab.devices if d.netns and d.netns in ns],
            "links": [n for n in names if f" {n}:" in links or f" {n}@" in links],
            "processes": [str(p.pid) for p in lab.started if p.poll() is None]}
