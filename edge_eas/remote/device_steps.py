"""Running deploy's device-side helper (device_helper.py) over an SSH session, and what builds on
it before anything is installed: the board a generic target resolves to, and whether the device's
Python and C library can run the runtime."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from edge_eas.devices.boards import BoardInfo, board_profiles, check_runtime_support, resolve_board
from edge_eas.common.console import info
from edge_eas.errors import UserError
from edge_eas.devices.targets import Target
from edge_eas.remote.ssh import SSHSession

# deploy's steps on the device (device_helper.py), run with the target's python as `python -c`
DEVICE_HELPER = (Path(__file__).parent / "device_helper.py").read_text()


def run_helper(s: SSHSession, python: str, *args: str) -> dict[str, Any]:
    """One helper mode on the device; its JSON result."""
    out = s.check([python, "-c", DEVICE_HELPER, *args], f"deploy step {args[0]!r}")
    try:
        return json.loads(out.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        raise UserError(f"deploy step {args[0]!r} on {s.label} printed no result: {out.strip()[:200]!r}") from None


def resolve_target(s: SSHSession, target: Target) -> tuple[Target, list[str]]:
    """A generic target (`[board] detect`) as the profile of the board at the other end of `s`,
    checked for a Python and C library the runtime supports; other targets are only checked.
    Returns (target, warnings); a refusal is a UserError before anything is copied."""
    root = s.expand(target.runtime_dir)
    board = BoardInfo.from_probe(run_helper(s, target.python, "board", root))
    warnings: list[str] = []
    if target.board_detect:
        asked_with = target.python
        target, warning = resolve_board(target, board, board_profiles)
        warnings += [warning] if warning else []
        info(f"[{s.label}] board: {board.describe()} -> target {target.name}")
        if target.python != asked_with:  # the board's profile runs the runtime with another interpreter
            try:
                board = BoardInfo.from_probe(run_helper(s, target.python, "board", s.expand(target.runtime_dir)))
            except UserError as exc:  # e.g. JetPack 4 without the python3.8 its profile names
                raise UserError(f"{exc}" + (f" ({target.name}: {target.board_note})" if target.board_note else "")
                                ) from None
    warnings += check_runtime_support(target, board.python, board.libc, s.label)
    return replace(target, board=board.to_dict()), warnings
