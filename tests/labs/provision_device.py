"""A fresh board for the provisioning tests: its own network namespace (address on a link-local
/24 shared with this machine through a bridge), its own hostname, its own /etc/ssh, /etc/hostname,
/etc/hosts, /run and home directory (bind mounts in a private mount namespace, so nothing the
test does to "the device" touches this machine), a serial console (socat pty + getty + bash),
and OpenSSH installed but not running, as on a new image with SSH disabled.

Its service manager is a small `systemctl` that knows one unit, ssh.service, and really starts
the device's sshd; everything else is real: sshd, bash, the pty, the network.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from edge_eas.sim.ssh_lab import DEVICE_LAUNCHER, SimDevice, run_tool

from .serial_device import SimConsole
from .ssh_lab import FaultLab

SYSTEMCTL = r"""#!/bin/bash
# The device's service manager, for one unit: ssh.service. State lives in the device's /run.
state=/run/edge-eas-ssh.enabled
unit_ok() { case "$1" in ssh|ssh.service|sshd|sshd.service) return 0;; *) return 1;; esac; }
running() { [ -f /run/sshd.pid ] && kill -0 "$(cat /run/sshd.pid)" 2>/dev/null; }
start() {  # like systemd: return once the service is up
  running && return 0
  mkdir -p /run/sshd && /usr/sbin/sshd || return 1
  for i in $(seq 50); do running && return 0; sleep 0.1; done; return 1
}
case "$1" in
  show) unit=${@: -1}; unit_ok "$unit" && echo loaded || echo not-found ;;
  is-enabled) unit_ok "$2" || exit 4; [ -f "$state" ] && { echo enabled; exit 0; } || { echo disabled; exit 1; } ;;
  is-active) unit_ok "$2" || exit 4; running && { echo active; exit 0; } || { echo inactive; exit 3; } ;;
  enable) shift; now=0; [ "$1" = --now ] && { now=1; shift; }; unit_ok "$1" || exit 5
          touch "$state"; [ $now = 1 ] && start; exit 0 ;;
  start) unit_ok "$2" || exit 5; start ;;
  *) echo "systemctl (simulated): $1 not supported" >&2; exit 1 ;;
esac
"""


class FreshBoard(FaultLab):
    """`with FreshBoard(tmp, "board") as lab: lab.console.port, lab.devices[0].addr`."""

    def __init__(self, root: Path, name: str = "board", user: str = "root", password: str = "raspberry",
                 hostname: str = "raspberrypi") -> None:
        super().__init__(root, [name], prefer_netns=True)
        self.user, self.password, self.initial_hostname = user, password, hostname
        self.console: SimConsole | None = None

    @property
    def host_ip(self) -> str:
        return f"169.254.{self.subnet}.1"

    def start(self) -> "FreshBoard":
        if os.geteuid() != 0:
            raise RuntimeError("a simulated board needs root (network and mount namespaces)")
        super().start()
        if not self.uses_netns:
            self.close()
            raise RuntimeError("network namespaces are not available here")
        try:
            dev = self.devices[0]
            enter = ["nsenter", "-t", str(dev.proc.pid if dev.proc else 0), "-n", "-u", "-m", "--"]
            run_as = [] if self.user == "root" else ["setpriv", f"--reuid={self.uid}", f"--regid={self.uid}",
                                                     "--init-groups"]
            home = Path("/root") if self.user == "root" else Path("/home") / self.user
            self.console = SimConsole(dev.dir / "console", self.user, self.password, enter=enter, home=home,
                                      path_prepend=[str(dev.dir / "sbin")], run_as=run_as)
            self.console.start()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        if self.console is not None:
            self.console.close()
            self.console = None
        super().close()

    # The lab's sshd start becomes "power on": the board's namespaces with a process holding
    # them; sshd runs only once the board's service manager starts it.
    def start_sshd(self, dev: SimDevice) -> None:
        etc_ssh, run = dev.dir / "etc-ssh", dev.dir / "run"
        if not etc_ssh.exists():
            self._install_image(dev)
        binds = [*self._home_binds(dev), (str(etc_ssh), "/etc/ssh"), (str(run), "/run"),
                 (str(dev.dir / "etc-hostname"), "/etc/hostname"), (str(dev.dir / "etc-hosts"), "/etc/hosts")]
        if self.user != "root":  # the board's own users: the login user with sudo rights, and /home
            binds += [(str(dev.dir / f"etc-{n}"), f"/etc/{n}") for n in ("passwd", "group", "shadow", "sudoers")]
            binds.append((str(dev.dir / "homes"), "/home"))
        holder = [sys.executable, "-c", "import signal; signal.pause()"]
        argv = ["ip", "netns", "exec", str(dev.netns), "unshare", "--uts", "--mount", "--", sys.executable, "-c",
                DEVICE_LAUNCHER, self.initial_hostname, json.dumps(binds), *holder]
        log = open(dev.dir / "board.log", "ab")
        dev.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        self.started.append(dev.proc)
        deadline = time.monotonic() + 10
        while not self._booted(dev):
            if dev.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"board did not start: {(dev.dir / 'board.log').read_text()[-400:]}")
            time.sleep(0.02)

    def _booted(self, dev: SimDevice) -> bool:
        assert dev.proc is not None
        res = subprocess.run(["nsenter", "-t", str(dev.proc.pid), "-u", "hostname"], capture_output=True, text=True)
        return res.stdout.strip() == self.initial_hostname

    def _install_image(self, dev: SimDevice) -> None:
        """What the board's SD card holds: OpenSSH configured but disabled, a default hostname."""
        etc_ssh, run, sbin = dev.dir / "etc-ssh", dev.dir / "run", dev.dir / "sbin"
        for d in (etc_ssh, run / "sshd", sbin):
            d.mkdir(parents=True, exist_ok=True)
        (run / "systemd" / "system").mkdir(parents=True, exist_ok=True)  # "systemd is running"
        for suffix in ("", ".pub"):
            os.replace(f"{dev.host_key}{suffix}", etc_ssh / f"ssh_host_ed25519_key{suffix}")
        (etc_ssh / "sshd_config").write_text("\n".join([
            f"ListenAddress {dev.addr}", "Port 22", "HostKey /etc/ssh/ssh_host_ed25519_key", "PidFile /run/sshd.pid",
            "AuthorizedKeysFile .ssh/authorized_keys", "UsePAM no", "StrictModes no", "PasswordAuthentication no",
            "KbdInteractiveAuthentication no", "PermitRootLogin prohibit-password", "PubkeyAuthentication yes",
            "Subsystem sftp internal-sftp", "UseDNS no", "PrintMotd no", ""]))
        (dev.dir / "etc-hostname").write_text(self.initial_hostname + "\n")
        (dev.dir / "etc-hosts").write_text(f"127.0.0.1\tlocalhost\n127.0.1.1\t{self.initial_hostname}\n")
        (sbin / "systemctl").write_text(SYSTEMCTL)
        (sbin / "systemctl").chmod(0o755)
        if self.user != "root":
            self._add_login_user(dev, sbin)

    @property
    def uid(self) -> int:
        """A uid no account of this machine uses (the board's user exists only in its /etc)."""
        used = {int(ln.split(":")[2]) for ln in Path("/etc/passwd").read_text().splitlines() if ln.count(":") >= 6}
        return next(u for u in range(1000, 60000) if u not in used)

    def _add_login_user(self, dev: SimDevice, sbin: Path) -> None:
        """Like Raspberry Pi OS: user with a password, in group sudo; sudo asks for that password."""
        uid, user = self.uid, self.user
        pw_hash = run_tool(["openssl", "passwd", "-6", self.password]).stdout.strip()
        (dev.dir / "etc-passwd").write_text(Path("/etc/passwd").read_text()
                                            + f"{user}:x:{uid}:{uid}:,,,:/home/{user}:/bin/bash\n")
        groups = [ln + (("," if not ln.endswith(":") else "") + user if ln.startswith("sudo:") else "")
                  for ln in Path("/etc/group").read_text().splitlines()]
        if not any(g.startswith("sudo:") for g in groups):
            groups.append(f"sudo:x:27:{user}")
        (dev.dir / "etc-group").write_text("\n".join([*groups, f"{user}:x:{uid}:"]) + "\n")
        (dev.dir / "etc-shadow").write_text(Path("/etc/shadow").read_text() + f"{user}:{pw_hash}:19000:0:99999:7:::\n")
        (dev.dir / "etc-shadow").chmod(0o640)
        sudoers = dev.dir / "etc-sudoers"
        sudoers.write_text(f'Defaults secure_path="{sbin}:/usr/sbin:/usr/bin:/sbin:/bin"\n'
                           "Defaults !lecture\nroot ALL=(ALL:ALL) ALL\n%sudo ALL=(ALL:ALL) ALL\n")
        sudoers.chmod(0o440)
        home = dev.dir / "homes" / user
        home.mkdir(parents=True, exist_ok=True)
        os.chown(home, uid, uid)

    def reflash(self) -> None:
        """Power off, write a fresh image (new SSH host key, default hostname, empty home), power on."""
        dev = self.devices[0]
        assert self.console is not None
        self.console.close()
        self.kill_device_processes(dev)
        for name in ("etc-ssh", "run", "sbin", "homes"):
            shutil.rmtree(dev.dir / name, ignore_errors=True)
        shutil.rmtree(dev.home / ".ssh", ignore_errors=True)
        run_tool(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", dev.name, "-f", str(dev.host_key)])
        self.start_sshd(dev)
        assert dev.proc is not None
        self.console.enter[2] = str(dev.proc.pid)
        self.console.start()

    def _wait_ready(self, dev: SimDevice, timeout: float = 10.0) -> None:  # nothing listens yet
        return

    def known_hosts_line(self, dev: SimDevice) -> str:  # this machine has never seen the board
        return ""

    def device_file(self, path: str) -> str:
        """Read a file as the board sees it (inside its mount namespace)."""
        dev = self.devices[0]
        assert dev.proc is not None
        return run_tool(["nsenter", "-t", str(dev.proc.pid), "-m", "cat", path]).stdout

    def sshd_running(self) -> bool:
        dev = self.devices[0]
        assert dev.proc is not None
        argv = ["nsenter", "-t", str(dev.proc.pid), "-m", "sh", "-c", 'kill -0 "$(cat /run/sshd.pid)"']
        return subprocess.run(argv, capture_output=True).returncode == 0

    def write_profile(self, path: Path) -> Path:
        """A device profile like the shipped raspberry-pi-4 one, before provisioning (unknown address)."""
        path.write_text("\n".join([
            'name = "raspberry-pi-4"', 'description = "Raspberry Pi 4 (simulated board)"', "",
            "# how to reach it: filled in by `edge_eas provision`", "[connection]", 'host = "raspberrypi.local"',
            "port = 22", f"user = {json.dumps(self.user)}", "", "[device]", f'python = {json.dumps(sys.executable)}',
            'engine = "numpy"', "threads = 1", "", "[hardware]", "peak_gflops = 12.0", ""]))
        return path

