"""A board's serial console for tests: socat links a real pty pair; on the far end runs a small
getty (banner, `login:`, `Password:`, "Login incorrect") that starts a real interactive bash
(readline on, like a board's login shell). The getty respawns when the shell exits, like a
real one, and a `reboot` command prints shutdown and boot messages before the next login.

Optional: `enter` runs the getty inside a simulated device's namespaces (nsenter argv), and
`noise` writes kernel-style messages to the console every 0.3 s, as boards do.
Everything started is killed by PID on close; never pkill.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path
from typing import Sequence

from edge_eas.sim.ssh_lab import descendants, kill_pids

GETTY = r"""#!/bin/bash
# Simulated getty + login. Settings come from the file beside it (no arguments: socat's EXEC
# syntax would need escaping).
. "$(dirname "$0")/console.env"
boot() {
  for i in 1 2 3 4 5; do printf '[    %d.%06d] systemd[1]: Starting unit %d of 5...\n' "$i" "$RANDOM" "$i"; sleep 0.1; done
}
noise() {
  # one write per message (a tty is line-buffered): it lands wherever the cursor is, even mid-line
  # ...and it ends with the getty or the tty, never outliving them
  while sleep 0.3 && kill -0 "$getty" 2>/dev/null; do
    printf '[ %5d.%06d] usb 1-1.2: new full-speed USB device number %d\n' "$SECONDS" "$RANDOM" "$RANDOM" || exit 0
  done
}
getty=$$
[ "${NOISE:-0}" = 1 ] && noise &
boot
reclaim_tty() {  # a killed shell leaves the terminal to its dead process group; take it back
  python3 -c 'import os,signal; signal.signal(signal.SIGTTOU, signal.SIG_IGN); os.tcsetpgrp(0, os.getpgid(os.getppid()))'
}
while true; do
  reclaim_tty
  if [ -f "$STATE/rebooting" ]; then rm -f "$STATE/rebooting"; sleep "${BOOT_DELAY:-1}"; boot; fi
  printf '\nDebian GNU/Linux 12 %s ttyS0\n\n%s login: ' "$(hostname)" "$(hostname)"
  IFS= read -r user || exit 0
  [ -z "$user" ] && continue  # agetty re-prompts on an empty name
  stty -echo; printf 'Password: '; IFS= read -r pw; stty echo; printf '\n'
  if [ "$user" = "$LOGIN_USER" ] && [ "$pw" = "$LOGIN_PASSWORD" ]; then
    # RUN_AS drops to the login user (setpriv argv, word-split on purpose); empty for root
    HOME="$DEVICE_HOME" PATH="$DEVICE_PATH" TERM=vt100 PS1='\u@\h:\w\$ ' $RUN_AS bash --norc --noprofile -i
  else
    sleep 0.3; printf '\nLogin incorrect\n'
  fi
done
"""

REBOOT = r"""#!/bin/bash
# The board's reboot: mark it, say goodbye like systemd, take the login shell down.
. "$(dirname "$(readlink -f "$0")")/../console.env"
touch "$STATE/rebooting"
printf '[  OK  ] Stopped target Multi-User System.\n[  OK  ] Reached target Reboot.\nreboot: Restarting system\n'
kill -KILL "$PPID"
"""


class SimConsole:
    """`with SimConsole(tmp, "pi", "raspberry") as con: SerialConsole(con.port, ...)`."""

    def __init__(self, root: Path, user: str, password: str, enter: Sequence[str] = (), noise: bool = False,
                 home: Path | None = None, path_prepend: Sequence[str] = (), run_as: Sequence[str] = ()) -> None:
        if shutil.which("socat") is None:
            raise RuntimeError("socat is not installed")
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = str(self.root / "ttyS0")
        self.user, self.password, self.enter, self.noise = user, password, list(enter), noise
        self.home = home or self.root / "home"
        self.bin = self.root / "bin"
        self.path_prepend = list(path_prepend)
        self.run_as = list(run_as)
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> "SimConsole":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        if not self.enter:  # with `enter`, home is a path inside the simulated device
            self.home.mkdir(parents=True, exist_ok=True)
        self.bin.mkdir(exist_ok=True)
        (self.root / "state").mkdir(exist_ok=True)
        env = {"LOGIN_USER": self.user, "LOGIN_PASSWORD": self.password, "STATE": str(self.root / "state"),
               "DEVICE_HOME": str(self.home), "NOISE": "1" if self.noise else "0", "RUN_AS": " ".join(self.run_as),
               "DEVICE_PATH": ":".join([str(self.bin), *self.path_prepend, "/usr/sbin:/usr/bin:/sbin:/bin"])}
        (self.root / "console.env").write_text("".join(f"{k}={shlex.quote(v)}\n" for k, v in env.items()))
        getty = self.root / "getty.sh"
        getty.write_text(GETTY)
        (self.bin / "reboot").write_text(REBOOT)
        launcher = self.root / "console.sh"
        launcher.write_text("#!/bin/bash\nexec " + shlex.join([*self.enter, "/bin/bash", str(getty)]) + "\n")
        for p in (getty, self.bin / "reboot", launcher):
            p.chmod(0o755)
        log = open(self.root / "socat.log", "ab")
        self.proc = subprocess.Popen(
            ["socat", f"PTY,link={self.port},raw,echo=0",
             f"EXEC:{launcher},pty,stderr,setsid,sigint,sane,ctty"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + 10
        while not os.path.exists(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"socat did not create {self.port}: {(self.root / 'socat.log').read_text()}")
            time.sleep(0.02)
        time.sleep(0.3)  # the getty's first banner; the client must cope with having missed it anyway

    def pids(self) -> list[int]:
        if self.proc is None or self.proc.poll() is not None:
            return []
        return [self.proc.pid, *descendants(self.proc.pid)]

    def close(self) -> None:
        for _ in range(5):
            pids = self.pids()
            if not pids:
                break
            kill_pids(pids)
            time.sleep(0.05)
        if self.proc is not None:
            self.proc.wait(timeout=5)
            self.proc = None
