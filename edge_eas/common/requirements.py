"""What a command needs beyond the core install (numpy), checked before it does any work.

The CLI asks each command module's `requires(args)` for a list of `Need`s and checks them all
before `run(args)`: a missing package becomes one line naming the extra that installs it, and
exit status 2, before any file is touched (a half-done provision that has already created an
SSH key, or a quick start that reruns a whole benchmark and then fails, is worse than no run).
Checks use `importlib.util.find_spec`, which does not import the package.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import shutil
import sys
from dataclasses import dataclass
from typing import Iterable

from edge_eas.errors import UserError

# import name -> the distribution that provides it
DISTRIBUTIONS: dict[str, str] = {
    "torch": "torch", "sklearn": "scikit-learn", "scipy": "scipy", "safetensors": "safetensors",
    "matplotlib": "matplotlib", "rich": "rich", "PIL": "Pillow", "cryptography": "cryptography",
    "paramiko": "paramiko", "packaging": "packaging", "serial": "pyserial", "tomlkit": "tomlkit",
    "flatbuffers": "flatbuffers", "ai_edge_litert": "ai-edge-litert", "executorch": "executorch",
    "threadpoolctl": "threadpoolctl",
}
HOST_MIN_PYTHON = (3, 10)  # the torch the host extra installs; the device runtime runs on 3.8+
HOST = ("torch", "sklearn", "scipy", "safetensors", "cryptography", "matplotlib", "rich", "PIL")
REMOTE = ("paramiko", "packaging", "cryptography")
SERIAL = ("serial", "tomlkit")
# pyproject.toml's extras, by the modules each brings (host includes remote, see pyproject.toml)
EXTRAS: dict[str, tuple[str, ...]] = {
    "runtime": ("cryptography", "threadpoolctl"), "remote": REMOTE, "serial": SERIAL, "tflite": ("flatbuffers", "ai_edge_litert"),
    "executorch": ("executorch",), "host": HOST + REMOTE,
}


@dataclass(frozen=True)
class Need:
    """One thing a command needs: a Python module (`module`), or a program on PATH (`program`,
    with `hint` saying how to get it). `why` finishes the sentence "... needs X for WHY"."""
    module: str | None = None
    program: str | None = None
    hint: str = ""
    why: str = ""

    def missing(self) -> bool:
        if self.module is not None:
            return not has_module(self.module)
        assert self.program is not None
        return find_program(self.program) is None


class MissingDependency(UserError):
    """A package or program a command needs is not installed; the message says how to get it."""


def modules(*names: str, why: str = "") -> list[Need]:
    return [Need(module=n, why=why) for n in names]


def tflite_builder(why: str) -> list[Need]:
    """Writing a .tflite needs flatbuffers and a TFLite schema module (ai-edge-litert ships one)."""
    need = [Need(module="flatbuffers", why=why)]
    if not (has_module("ai_edge_litert") or has_module("tflite_runtime")):
        need.append(Need(module="ai_edge_litert", why=why))
    return need


def has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def find_program(name: str) -> str | None:
    """PATH first, then the sbin directories a non-login root shell may lack (sshd lives there)."""
    return shutil.which(name) or next((p for d in ("/usr/sbin", "/sbin", "/usr/local/sbin")
                                       if os.access(p := os.path.join(d, name), os.X_OK)), None)


def check(command: str, needs: Iterable[Need]) -> None:
    """Raise MissingDependency naming everything missing and the pip extras / packages to install."""
    missing = [n for n in needs if n.missing()]
    if not missing:
        return
    mods = list(dict.fromkeys(n.module for n in missing if n.module))
    progs = list(dict.fromkeys(n.program for n in missing if n.program))
    whys = list(dict.fromkeys(n.why for n in missing if n.why))
    why = whys[0] if len(whys) == 1 else ""
    parts = []
    if mods:
        extras, uncovered = covering_extras(mods)
        fix = " and ".join(([f"pip install 'edge-eas[{','.join(extras)}]'"] if extras else [])
                           + ([f"pip install {' '.join(DISTRIBUTIONS.get(m, m) for m in uncovered)}"] if uncovered else []))
        parts.append(f"{', '.join(DISTRIBUTIONS.get(m, m) for m in mods)} (not installed: {fix})")
    if progs:
        hints = list(dict.fromkeys(n.hint for n in missing if n.program and n.hint))
        parts.append(f"the program{'s' if len(progs) > 1 else ''} {', '.join(progs)} (not found"
                     + (f": {'; '.join(hints)}" if hints else "") + ")")
    older = ""
    if set(mods) & set(HOST) and sys.version_info[:2] < HOST_MIN_PYTHON:
        older = (f"; the host tools need Python {HOST_MIN_PYTHON[0]}.{HOST_MIN_PYTHON[1]} or newer (torch), this is "
                 f"{platform.python_version()}: here, only the device runtime (edge-eas[runtime]) runs")
    raise MissingDependency(f"{command} needs {' and '.join(parts)}" + (f" for {why}" if why else "") + older)


def covering_extras(mods: Iterable[str]) -> tuple[list[str], list[str]]:
    """The fewest (then smallest) extras that install `mods`, greedily; and what none covers."""
    left, chosen = set(mods), []
    while left:
        best = max(EXTRAS, key=lambda e: (len(left & set(EXTRAS[e])), -len(EXTRAS[e])))
        if not left & set(EXTRAS[best]):
            break
        chosen.append(best)
        left -= set(EXTRAS[best])
    return sorted(chosen), sorted(left)
