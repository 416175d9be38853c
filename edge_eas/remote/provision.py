"""`edge_eas provision`: from a fresh board on a serial cable to a verified SSH target.

Over the console (edge_eas.remote.serial) it sets the hostname, installs this machine's SSH
public key, makes sure sshd is enabled and running, and reads the board's address and SSH
host keys. The host keys learnt over the cable go into known_hosts, so the first SSH
connection is checked against them: no trust on first use. The target's TOML is created or
updated, and a strict SSH connection confirms it all. Every step says whether it changed
anything; a second run changes nothing.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edge_eas.errors import UserError
from edge_eas.common.fileio import atomic_write_bytes
from edge_eas.devices.targets import Connection, Target
from edge_eas.remote.serial import Credentials, SerialConsole
from edge_eas.remote.ssh_options import SSHOptions

_HOSTNAME = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")

# Device-side steps: fixed scripts of ours; data arrives only as $1, $2 (never pasted into them).
# Each prints "changed <detail>" or "unchanged <detail>" as its last line.
SET_HOSTNAME = r"""
new=$1; old=$(hostname)
if [ "$old" = "$new" ] && [ "$(cat /etc/hostname 2>/dev/null)" = "$new" ] && grep -q "^127\.0\.1\.1[[:space:]]*$new\$" /etc/hosts; then
  echo "unchanged hostname is $new"; exit 0
fi
hostname "$new" || exit 1
printf '%s\n' "$new" > /etc/hostname || exit 1
# rewrite in place (not sed -i: /etc/hosts is often a bind mount that cannot be renamed over)
{ grep -v '^127\.0\.1\.1[[:space:]]' /etc/hosts; printf '127.0.1.1\t%s\n' "$new"; } > /tmp/.eas-hosts.$$ &&
  cat /tmp/.eas-hosts.$$ > /etc/hosts; rm -f /tmp/.eas-hosts.$$
echo "changed hostname $old -> $new"
"""

INSTALL_KEY = r"""
line=$1; kind=$2; blob=$3; f="$HOME/.ssh/authorized_keys"
umask 077; mkdir -p "$HOME/.ssh" && chmod 700 "$HOME/.ssh" && touch "$f" && chmod 600 "$f" || exit 1
if grep -qF "$kind $blob" "$f"; then echo "unchanged key already in $f"; exit 0; fi
[ -s "$f" ] && [ -n "$(tail -c 1 "$f")" ] && echo >> "$f"
printf '%s\n' "$line" >> "$f" && echo "changed key added to $f"
"""

ENSURE_SSHD = r"""
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  unit=ssh
  [ "$(systemctl show -p LoadState --value ssh 2>/dev/null)" = loaded ] || unit=sshd
  en=$(systemctl is-enabled "$unit" 2>/dev/null); act=$(systemctl is-active "$unit" 2>/dev/null)
  if [ "$en" = enabled ] && [ "$act" = active ]; then echo "unchanged $unit.service is enabled and running"; exit 0; fi
  systemctl enable --now "$unit" >/dev/null 2>&1 || { echo "systemctl enable --now $unit failed"; exit 1; }
  [ "$(systemctl is-active "$unit" 2>/dev/null)" = active ] || { echo "$unit.service did not start"; exit 1; }
  echo "changed $unit.service was ${en:-unknown}/${act:-unknown}, now enabled and running"
else
  if [ -f /run/sshd.pid ] && kill -0 "$(cat /run/sshd.pid)" 2>/dev/null; then
    echo "unchanged sshd is running (no systemd here: keep it started at boot yourself)"; exit 0
  fi
  [ -x /usr/sbin/sshd ] || { echo "no /usr/sbin/sshd: install openssh-server"; exit 1; }
  mkdir -p /run/sshd && /usr/sbin/sshd || exit 1
  for i in 1 2 3 4 5 6 7 8 9 10; do [ -f /run/sshd.pid ] && break; sleep 0.2; done
  echo "changed started /usr/sbin/sshd (no systemd here: it is not enabled at boot)"
fi
"""

# Prints "port N" once, then one public host key per line ("TYPE BASE64"), for the keys sshd serves.
HOST_KEYS = r"""
conf=$(/usr/sbin/sshd -T 2>/dev/null)
port=$(printf '%s\n' "$conf" | awk '$1 == "port" {print $2; exit}')
echo "port ${port:-22}"
keys=$(printf '%s\n' "$conf" | awk '$1 == "hostkey" {print $2}')
[ -n "$keys" ] || keys=$(ls /etc/ssh/ssh_host_*_key 2>/dev/null)
for k in $keys; do [ -r "$k.pub" ] && awk '{print $1, $2}' "$k.pub"; done
exit 0
"""

ADDRESSES = r"""
if [ -n "$1" ]; then
  ip -4 route get "$1" 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p'
elif command -v ip >/dev/null 2>&1; then
  ip -4 -o addr show scope global | awk '{split($4, a, "/"); print a[1]}'
else
  hostname -I 2>/dev/null | tr ' ' '\n' | grep -v ':'
fi
"""


@dataclass
class Step:
    name: str
    changed: bool
    detail: str


@dataclass
class ProvisionReport:
    target: str
    target_file: str
    serial: str
    host: str = ""
    port: int = 22
    user: str = ""
    hostname: str = ""
    host_keys: list[str] = field(default_factory=list)  # fingerprints, as `ssh-keygen -lf` shows them
    known_hosts: str = ""
    steps: list[Step] = field(default_factory=list)
    confirmed: bool = False

    @property
    def changed(self) -> bool:
        return any(s.changed for s in self.steps)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "changed": self.changed}


@dataclass(frozen=True)
class ProvisionRequest:
    profile: Target
    name: str
    serial: str
    baud: int
    creds: Credentials
    hostname: str
    key: Path
    known_hosts: Path
    out: Path
    host_ip: str | None = None
    login_timeout: float = 60.0
    command_timeout: float = 120.0
    transcript: Path | None = None


def check_hostname(name: str) -> str:
    if not _HOSTNAME.match(name):
        raise UserError(f"hostname {name!r} is not valid: use 1-63 lowercase letters, digits and '-' "
                        f"(not at the start or end)")
    return name


def check_ip(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        raise UserError(f"--host-ip {text!r} is not an IPv4 address") from None


def fingerprint_of(kind: str, blob_b64: str) -> str:
    digest = base64.b64encode(hashlib.sha256(base64.b64decode(blob_b64)).digest()).decode().rstrip("=")
    return f"{kind} SHA256:{digest}"


# ---- this machine's key ----------------------------------------------------------------------
def ensure_client_key(path: Path) -> tuple[str, Step]:
    """The public key line for `path` (an OpenSSH private key), creating an Ed25519 key if missing."""
    from cryptography.hazmat.primitives import serialization  # cryptography (the remote extra), heavy:
    from cryptography.hazmat.primitives.asymmetric import ed25519  # only when a key is read or made

    pub_path = Path(f"{path}.pub")
    if path.is_file():
        if pub_path.is_file():
            line = pub_path.read_text().strip()
        else:
            try:
                priv = serialization.load_ssh_private_key(path.read_bytes(), password=None)
            except (ValueError, TypeError) as exc:
                raise UserError(f"cannot read SSH key {path}: {exc} (edge_eas needs an unencrypted OpenSSH key)") \
                    from None
            line = priv.public_key().public_bytes(serialization.Encoding.OpenSSH,  # type: ignore[union-attr]
                                                  serialization.PublicFormat.OpenSSH).decode()
        if len(line.split()) < 2:
            raise UserError(f"{pub_path} is not an OpenSSH public key")
        return line, Step("ssh key", False, f"using {path}")
    key = ed25519.Ed25519PrivateKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                  serialization.NoEncryption()))
    line = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    line += " edge_eas"
    pub_path.write_text(line + "\n")
    return line, Step("ssh key", True, f"created {path} (Ed25519)")


# ---- over the console --------------------------------------------------------------------------
def _outcome(name: str, output: str) -> Step:
    last = (output.strip().splitlines() or [""])[-1]
    verdict, _, detail = last.partition(" ")
    if verdict not in ("changed", "unchanged"):
        raise UserError(f"{name}: unexpected output from the device: {last[:200]!r}")
    return Step(name, verdict == "changed", detail)


def _device_step(con: SerialConsole, name: str, script: str, *args: str, sudo: bool = True) -> Step:
    res = con.script(script, *args, sudo=sudo)
    if res.rc != 0:
        tail = (res.output.strip().splitlines() or ["(no output)"])[-1]
        raise UserError(f"{name} failed on the device (exit {res.rc}): {tail[:200]}")
    return _outcome(name, res.output)


def _address(con: SerialConsole, host_ip: str | None, hint: str | None) -> str:
    out = con.script(ADDRESSES, host_ip or "").output
    found = [a for a in (ln.strip() for ln in out.splitlines()) if _is_ipv4(a)]
    if host_ip and not found:
        raise UserError(f"the device has no route to --host-ip {host_ip}: is its network cable in?")
    if not found:
        raise UserError("the device has no IPv4 address yet: connect its network, then run provision again")
    if len(found) > 1 and not host_ip:
        if hint in found:
            return str(hint)
        raise UserError(f"the device has several addresses ({', '.join(found)}): pass --host-ip with this "
                        f"machine's address on the network you will use, and the matching one is chosen")
    return found[0]


def _is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
        return True
    except ValueError:
        return False


def _host_keys(con: SerialConsole) -> tuple[int, list[tuple[str, str]]]:
    out = con.script(HOST_KEYS, sudo=True).output
    port, keys = 22, []
    for ln in out.strip().splitlines():
        parts = ln.split()
        if len(parts) == 2 and parts[0] == "port" and parts[1].isdigit():
            port = int(parts[1])
        elif len(parts) == 2 and (parts[0].startswith("ssh-") or parts[0].startswith("ecdsa-")):
            try:
                base64.b64decode(parts[1], validate=True)
            except ValueError:
                raise UserError(f"garbled host key read over the serial line: {ln[:80]!r}") from None
            keys.append((parts[0], parts[1]))
    if not keys:
        raise UserError("the device's sshd has no readable host keys (/etc/ssh/ssh_host_*_key.pub): "
                        "run `ssh-keygen -A` on it")
    return port, keys


# ---- on this machine -----------------------------------------------------------------------------
def known_hosts_name(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


def _line_names(line: str) -> list[str]:
    return line.split()[0].split(",") if line.strip() and not line.lstrip().startswith("#") else []


def _matches(names: list[str], host_name: str) -> bool:
    from paramiko.hostkeys import HostKeys  # paramiko (the remote extra): only for hashed known_hosts lines

    for n in names:
        if n == host_name:
            return True
        if n.startswith("|1|"):
            salt = n.split("|")[2]
            if HostKeys.hash_host(host_name, salt) == n:
                return True
    return False


def update_known_hosts(path: Path, host_name: str, keys: list[tuple[str, str]]) -> Step:
    """Record exactly these keys for host_name, replacing older entries (the console is the trusted path)."""
    lines = path.read_text().splitlines() if path.is_file() else []
    mine = [ln for ln in lines if _matches(_line_names(ln), host_name)]
    have = {tuple(ln.split()[1:3]) for ln in mine}
    want = set(keys)
    if have == want:
        return Step("known_hosts", False, f"{path} already has the host key for {host_name}")
    rest = [ln for ln in lines if ln not in mine]
    new = rest + [f"{host_name} {kind} {blob}" for kind, blob in keys]
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write_bytes(path, ("\n".join(new) + "\n").encode())  # mkstemp: mode 600, as ssh wants
    what = "replaced the old host key" if mine else "recorded the host key"
    return Step("known_hosts", True, f"{what} for {host_name} in {path}")


def write_target(req: ProvisionRequest, conn: Connection, hostname: str, fingerprints: list[str]) -> Step:
    """Create or update the target TOML, keeping everything (comments too) but what provisioning owns."""
    try:
        import tomlkit  # the serial extra: only provisioning writes target files
    except ImportError:
        raise UserError("provision needs tomlkit to write target files: pip install 'edge-eas[serial]'") from None

    existed = req.out.is_file()
    source = req.out if existed else req.profile.path
    doc = tomlkit.parse(source.read_text())
    before = tomlkit.dumps(doc) if existed else None
    doc["name"] = req.name
    table = doc.get("connection")
    if table is None:
        table = tomlkit.table()
        doc["connection"] = table
    for k, v in (("host", conn.host), ("port", conn.port), ("user", conn.user), ("key", conn.key),
                 ("known_hosts", conn.known_hosts)):
        table[k] = v
    prov = tomlkit.table()
    prov.comment("written by `edge_eas provision`: the host key was read over the serial console")
    for k, v in (("serial", req.serial), ("hostname", hostname), ("host_keys", fingerprints)):
        prov[k] = v
    old_prov = doc.get("provisioned")
    if old_prov is None or {k: old_prov.get(k) for k in prov} != {k: prov[k] for k in prov}:
        doc["provisioned"] = prov
    text = tomlkit.dumps(doc)
    if text == before:
        return Step("target", False, f"{req.out} is up to date")
    atomic_write_bytes(req.out, text.encode())
    return Step("target", True, f"{'updated' if existed else 'created'} {req.out}")


def confirm_ssh(conn: Connection, hostname: str) -> Step:
    """Connect with strict host key checking (no trust on first use) and check it is the same board."""
    from edge_eas.remote.ssh import SSHSession  # paramiko (the remote extra): only this last step uses SSH

    with SSHSession(conn, SSHOptions(connect_timeout=10, command_timeout=30, retries=3, backoff=0.5)) as s:
        seen = s.check(["hostname"], "reading the hostname over SSH").strip()
    if seen != hostname:
        raise UserError(f"SSH to {conn.host}:{conn.port} reached a machine called {seen!r}, not {hostname!r}: "
                        f"another device has this address")
    return Step("ssh", False, f"{conn.user}@{conn.host}:{conn.port} answers as {seen}, host key verified "
                              f"against the key read over serial")


def provision(req: ProvisionRequest, progress: Any = None) -> ProvisionReport:
    """Run every step; `progress(step)` is called as each one finishes."""
    report = ProvisionReport(target=req.name, target_file=str(req.out), serial=req.serial,
                             known_hosts=str(req.known_hosts), hostname=req.hostname)

    def done(step: Step) -> None:
        report.steps.append(step)
        if progress is not None:
            progress(step)

    pub_line, step = ensure_client_key(req.key)
    done(step)
    kind, blob = pub_line.split()[:2]
    with SerialConsole(req.serial, req.baud, req.creds, login_timeout=req.login_timeout,
                       command_timeout=req.command_timeout, transcript=req.transcript) as con:
        done(Step("console", False, f"logged in on {req.serial} as {con.user}"))
        report.user = con.user or ""
        done(_device_step(con, "hostname", SET_HOSTNAME, req.hostname))
        done(_device_step(con, "authorized_keys", INSTALL_KEY, pub_line, kind, blob, sudo=False))
        done(_device_step(con, "sshd", ENSURE_SSHD))
        hint = req.profile.connection.host if req.profile.connection else None
        report.host = _address(con, req.host_ip, hint)
        report.port, keys = _host_keys(con)
    report.host_keys = [fingerprint_of(k, b) for k, b in keys]
    done(Step("address", False, f"{report.host}:{report.port}, host keys {', '.join(report.host_keys)}"))
    done(update_known_hosts(req.known_hosts, known_hosts_name(report.host, report.port), keys))
    conn = Connection(host=report.host, port=report.port, user=report.user, key=str(req.key),
                      known_hosts=str(req.known_hosts))
    done(write_target(req, conn, req.hostname, report.host_keys))
    done(confirm_ssh(conn, req.hostname))
    report.confirmed = True
    return report
