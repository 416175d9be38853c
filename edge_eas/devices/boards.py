"""Which board a device is, and whether the runtime can run there.

A generic target (`targets/jetson.toml`, `targets/raspberry-pi.toml`: `[board] detect = FAMILY`)
names a family, not a board. At deploy and bench time the device reports what it is (the
`board` mode of remote/device_helper.py: /proc/device-tree/model, /etc/nv_tegra_release, CPUs,
memory, Python, glibc), and `resolve_board` picks the profile whose `[board] models` names that
model. The resolved target keeps the generic one's connection and takes the profile's name, so
measurements and latency models are filed per board type: two different boards reached through
`--target jetson` never share a model. A model no profile names falls back to the family's
`fallback` profile under a name that carries the model read, with a warning saying what was read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any, Callable, Sequence

from edge_eas.errors import UserError
from edge_eas.devices.targets import load_target, search_dirs, Target


SUPPORTED_PYTHON = ((3, 8), (3, 13))  # the device runtime (edge_eas[runtime]), both ends included
MIN_GLIBC = (2, 17)                   # manylinux2014: the oldest wheels numpy/cryptography ship for it


@dataclass(frozen=True)
class BoardInfo:
    """What the device said about itself (device_helper.board())."""
    model: str | None
    tegra_release: str | None
    cores: int | None
    mem_mib: int | None
    machine: str
    python: str
    libc: tuple[str, str]

    @classmethod
    def from_probe(cls, doc: dict[str, Any]) -> "BoardInfo":
        libc = doc.get("libc") or ["", ""]
        return cls(doc.get("model") or None, doc.get("tegra_release") or None, doc.get("cores"), doc.get("mem_mib"),
                   str(doc.get("machine", "")), str(doc.get("python", "")), (str(libc[0]), str(libc[1])))

    @property
    def jetpack(self) -> str | None:
        """JetPack major version from the L4T release line ('# R35 (release), REVISION: 4.1' -> 5)."""
        m = re.search(r"\bR(\d+)\b", self.tegra_release or "")
        return {"32": "4", "34": "5", "35": "5", "36": "6"}.get(m.group(1)) if m else None

    def describe(self) -> str:
        parts = [f"model {self.model!r}" if self.model else "no device-tree model"]
        if self.tegra_release:
            m = re.search(r"\bR(\d+).*?REVISION:\s*([\d.]+)", self.tegra_release)
            parts.append(f"L4T R{m.group(1)}.{m.group(2)}" if m else f"L4T {self.tegra_release.lstrip('# ').strip()!r}")
        parts += [f"{self.cores} CPUs" if self.cores else "", f"{self.mem_mib} MiB" if self.mem_mib else "",
                  self.machine, f"Python {self.python}", " ".join(self.libc).strip()]
        return ", ".join(p for p in parts if p)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "tegra_release": self.tegra_release, "jetpack": self.jetpack,
                "cores": self.cores, "mem_mib": self.mem_mib, "machine": self.machine, "python": self.python,
                "libc": list(self.libc)}


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text)[:2])


def check_runtime_support(target: Target, python: str, libc: Sequence[str], where: str) -> list[str]:
    """Refuse, in one line and before anything is copied, a device whose Python or C library the
    runtime cannot run on; the target's `[board] note` says what to do about it. A Python newer
    than the range tested is a warning (returned), not a refusal."""
    lo, hi = SUPPORTED_PYTHON
    version = _version(python)
    note = f" {target.board_note}" if target.board_note else ""
    supported = f"the edge_eas runtime supports Python {lo[0]}.{lo[1]} to {hi[0]}.{hi[1]}"
    if len(version) < 2 or version[:2] < lo:
        raise UserError(f"{where}: {target.python} is Python {python or 'of unknown version'}; {supported}."
                        + (note or " Set [device] python in the target to a supported interpreter."))
    glibc = _version(libc[1]) if libc and libc[0] == "glibc" else ()
    if glibc and glibc < MIN_GLIBC:
        raise UserError(f"{where}: glibc {libc[1]} is older than {MIN_GLIBC[0]}.{MIN_GLIBC[1]} (manylinux2014), "
                        f"which the runtime's numpy and cryptography wheels need.{note}")
    if version[:2] > hi:
        return [f"{where}: Python {python} is newer than the range tested ({supported}); the runtime may work"]
    return []


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "unknown"


def resolve_board(target: Target, info: BoardInfo, profiles: Callable[[], list[Target]]) -> tuple[Target, str | None]:
    """The profile for the board `info` describes, reached through `target`'s connection.
    `profiles` lists the profiles that name board models. Returns (target, warning or None)."""
    if not target.board_detect:
        return target, None
    model = (info.model or "").lower()
    candidates = profiles()
    # by model only: a JetPack release is shared by many boards, and a wrong profile would mix their models
    matches = [(len(m), p) for p in candidates for m in p.board_models if m.lower() in model]
    warning = None
    if matches:
        profile = max(matches, key=lambda m: m[0])[1]
        if profile.board_family != target.board_detect:
            warning = (f"target {target.name} is for {target.board_detect} boards, but the device reads as "
                       f"{info.describe()}: using the {profile.name} profile")
        elif info.jetpack and profile.board_jetpacks and info.jetpack not in profile.board_jetpacks:
            warning = (f"{profile.name} is profiled for JetPack {'/'.join(profile.board_jetpacks)}, the device runs "
                       f"JetPack {info.jetpack}: calibrate before trusting its predictions")
    else:
        if not target.board_fallback:
            raise UserError(f"target {target.name}: no profile matches the device ({info.describe()})")
        fallback = load_target(target.board_fallback)
        profile = replace(fallback, name=f"{fallback.name}-{_slug(info.model or info.machine)}")
        warning = (f"target {target.name}: no {target.board_detect} profile matches the device ({info.describe()}); "
                   f"using the generic {fallback.name} profile as {profile.name}")
    mine = {k: getattr(target, k) for k in target.device_keys}  # what the generic target's [device] sets wins
    resolved = replace(profile, connection=target.connection, trust_keys=(*target.trust_keys, *profile.trust_keys),
                       board=info.to_dict(), board_detect=None, resolved_from=target.name, **mine)
    return resolved, warning


def board_profiles() -> list[Target]:
    """Every target file in the search path that names board models (targets.search_dirs)."""
    seen: dict[str, Target] = {}
    for d in search_dirs():
        if not d.is_dir():
            continue
        for f in sorted(d.glob("*.toml")):
            if f.stem in seen:
                continue
            try:
                t = load_target(str(f))
            except UserError:
                continue  # a broken unrelated file must not stop detection; loading it by name says why
            if t.board_models:  # resolve_board matches by model only
                seen[f.stem] = t
    return list(seen.values())
