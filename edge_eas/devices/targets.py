"""Device profiles: targets/*.toml. A target names how to reach a device, how to run the
runtime there, and the hardware facts the latency prior starts from.

`--target` takes a name (looked up in $EDGE_EAS_TARGETS, $EDGE_EAS_HOME/targets, ./targets, then the targets/ folder
shipped beside the package) or a path to a TOML file. Errors name the file and the key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from edge_eas.devices.hardware import Hardware
from edge_eas.errors import UserError
from edge_eas.common.toml_compat import tomllib
from edge_eas.common.paths import targets_dir


@dataclass(frozen=True)
class Connection:
    host: str
    port: int = 22
    user: str | None = None
    key: str | None = None
    known_hosts: str | None = None

    def with_override(self, host_spec: str | None = None, key: str | None = None) -> "Connection":
        """Apply `--host user@addr[:port]` and `--key PATH`."""
        c = self
        if host_spec:
            user, _, rest = host_spec.rpartition("@")
            host, port = rest, c.port
            if rest.count(":") == 1:
                host, port_text = rest.split(":")
                if not port_text.isdigit():
                    raise UserError(f"--host {host_spec!r}: port {port_text!r} is not a number")
                port = int(port_text)
            if not host:
                raise UserError(f"--host {host_spec!r} has no address")
            c = replace(c, host=host, port=port, user=user or c.user)
        if key:
            c = replace(c, key=key)
        return c


@dataclass(frozen=True)
class Target:
    name: str
    path: Path
    description: str = ""
    local: bool = False
    connection: Connection | None = None
    python: str = "python3"
    runtime_dir: str = "~/.edge_eas"
    engine: str = "auto"
    threads: int | None = None
    hardware: Hardware = field(default_factory=Hardware)
    members: tuple[str, ...] = ()
    concurrency: int = 4
    trust_keys: tuple[Path, ...] = ()  # [trust] keys: public keys deploy installs in the device's trust store
    # [board] (boards.py): a generic target detects the board (`detect`, a family) and falls back to
    # `fallback`; a board profile names its family, the device-tree models (substrings) and JetPack
    # majors it is for, and a `note` shown when the device cannot run the runtime.
    board_detect: str | None = None
    board_fallback: str | None = None
    board_family: str | None = None
    board_models: tuple[str, ...] = ()
    board_jetpacks: tuple[str, ...] = ()
    board_note: str = ""
    board: dict[str, Any] | None = field(default=None, compare=False)  # what the device reported, once resolved
    resolved_from: str | None = None  # the generic target it was resolved from
    device_keys: frozenset[str] = frozenset()  # the [device] keys its TOML sets (a generic target's win over the profile's)

    @property
    def is_fleet(self) -> bool:
        return bool(self.members)


def search_dirs() -> list[Path]:
    dirs = []
    if os.environ.get("EDGE_EAS_TARGETS"):
        dirs.append(Path(os.environ["EDGE_EAS_TARGETS"]))

    dirs.append(targets_dir())  # devices set up by `edge_eas provision`
    dirs.append(Path.cwd() / "targets")
    dirs.append(Path(__file__).resolve().parents[2] / "targets")  # the repository's targets/, beside edge_eas/
    return dirs


def find_target_file(name_or_path: str) -> Path:
    p = Path(name_or_path).expanduser()
    if p.suffix == ".toml" or os.sep in name_or_path:
        if not p.is_file():
            raise UserError(f"target file {p} does not exist")
        return p
    for d in search_dirs():
        cand = d / f"{name_or_path}.toml"
        if cand.is_file():
            return cand
    known = sorted({f.stem for d in search_dirs() if d.is_dir() for f in d.glob("*.toml")})
    raise UserError(f"unknown target {name_or_path!r}; known targets: {', '.join(known) or 'none'} "
                    f"(or give a path to a TOML file)")


def _get(table: dict[str, Any], key: str, typ: type | tuple[type, ...], path: Path, section: str,
         default: Any = None, required: bool = False) -> Any:
    if key not in table:
        if required:
            raise UserError(f"{path}: [{section}] is missing required key {key!r}")
        return default
    value = table[key]
    if isinstance(value, bool) and typ is not bool and bool not in (typ if isinstance(typ, tuple) else (typ,)):
        raise UserError(f"{path}: [{section}] {key} must be {getattr(typ, '__name__', typ)}, got a boolean")
    if not isinstance(value, typ):
        names = typ.__name__ if isinstance(typ, type) else " or ".join(t.__name__ for t in typ)
        raise UserError(f"{path}: [{section}] {key} must be {names}, got {type(value).__name__} {value!r}")
    return value


def load_target(name_or_path: str) -> Target:
    path = find_target_file(name_or_path)
    try:
        doc = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc}") from None
    top = "top level"
    name = _get(doc, "name", str, path, top, default=path.stem)
    fleet = doc.get("fleet")
    if fleet is not None:
        members = _get(fleet, "members", list, path, "fleet", required=True)
        if not members or not all(isinstance(m, str) for m in members):
            raise UserError(f"{path}: [fleet] members must be a non-empty list of target names")
        conc = _get(fleet, "concurrency", int, path, "fleet", default=4)
        if conc < 1:
            raise UserError(f"{path}: [fleet] concurrency must be >= 1")
        return Target(name=name, path=path, description=doc.get("description", ""), members=tuple(members),
                      concurrency=conc)
    local = bool(_get(doc, "local", bool, path, top, default=False))
    conn = None
    if not local:
        c = doc.get("connection")
        if not isinstance(c, dict):
            raise UserError(f"{path}: missing [connection] table (host, port, user, key, known_hosts)")
        port = _get(c, "port", int, path, "connection", default=22)
        if not 0 < port < 65536:
            raise UserError(f"{path}: [connection] port {port} is out of range")
        conn = Connection(host=_get(c, "host", str, path, "connection", required=True), port=port,
                          user=_get(c, "user", str, path, "connection"), key=_get(c, "key", str, path, "connection"),
                          known_hosts=_get(c, "known_hosts", str, path, "connection"))
    dev = doc.get("device", {})
    threads = _get(dev, "threads", int, path, "device")
    if threads is not None and threads < 1:
        raise UserError(f"{path}: [device] threads must be >= 1")
    hw_table = doc.get("hardware", {})
    for k, v in hw_table.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise UserError(f"{path}: [hardware] {k} must be a number, got {v!r}")
    return Target(name=name, path=path, description=doc.get("description", ""), local=local, connection=conn,
                  python=_get(dev, "python", str, path, "device", default="python3"),
                  runtime_dir=_get(dev, "runtime_dir", str, path, "device", default="~/.edge_eas"),
                  engine=_get(dev, "engine", str, path, "device", default="auto"), threads=threads,
                  hardware=Hardware.from_dict(hw_table), trust_keys=_trust_keys(doc.get("trust", {}), path),
                  device_keys=frozenset(k for k in ("python", "runtime_dir", "engine", "threads") if k in dev),
                  **_board(doc.get("board", {}), path))


def _board(table: dict[str, Any], path: Path) -> dict[str, Any]:
    """[board]: detect / fallback (a generic target), family / models / jetpacks / note (a profile)."""
    lists = {}
    for key in ("models", "jetpacks"):
        value = _get(table, key, list, path, "board", default=[])
        if not all(isinstance(v, str) and v for v in value):
            raise UserError(f"{path}: [board] {key} must be a list of non-empty strings")
        lists[key] = tuple(value)
    return {"board_detect": _get(table, "detect", str, path, "board"),
            "board_fallback": _get(table, "fallback", str, path, "board"),
            "board_family": _get(table, "family", str, path, "board"),
            "board_models": lists["models"], "board_jetpacks": lists["jetpacks"],
            "board_note": _get(table, "note", str, path, "board", default="")}


def _trust_keys(table: dict[str, Any], path: Path) -> tuple[Path, ...]:
    """[trust] keys = ["release.pub", ...]: paths relative to the TOML file, ~ expanded."""
    keys = _get(table, "keys", list, path, "trust", default=[])
    if not all(isinstance(k, str) and k for k in keys):
        raise UserError(f"{path}: [trust] keys must be a list of public key file paths")
    return tuple((path.parent / Path(k).expanduser()).resolve() for k in keys)
