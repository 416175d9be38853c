"""Which source a result came from: the git commit of the checkout edge_eas runs from, and whether
that checkout had changes (tracked files, or untracked files in the package or the benchmarks).
Training writes it into run.json and every benchmark into its JSON, so a figure traces to code.
Installed from a wheel there is no checkout: both are None and the version says what ran."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from edge_eas import __version__

CHECKOUT = Path(__file__).resolve().parents[2]
DIRTY_IF_UNTRACKED = ("edge_eas/", "benchmarks/")  # a new module there changes what runs
IGNORED = ":(exclude)benchmarks/results"           # a benchmark rewrites its own JSON


def _git(*args: str, root: Path) -> str | None:
    if not (root / ".git").exists():
        return None
    try:
        res = subprocess.run(["git", *args], capture_output=True, text=True, cwd=root, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout if res.returncode == 0 else None


def git_commit(root: Path = CHECKOUT) -> str | None:
    out = _git("rev-parse", "--short", "HEAD", root=root)
    return (out or "").strip() or None


def git_dirty(root: Path = CHECKOUT) -> bool | None:
    """Uncommitted changes to tracked files, or untracked files under DIRTY_IF_UNTRACKED."""
    out = _git("status", "--porcelain", "--untracked-files=all", "--", ".", IGNORED, root=root)
    if out is None:
        return None
    return any(not line.startswith("??") or line[3:].startswith(DIRTY_IF_UNTRACKED)
               for line in out.splitlines() if line.strip())


def source_state(root: Path = CHECKOUT) -> dict[str, Any]:
    """{"commit", "dirty", "version"}: what run.json and benchmark JSONs record."""
    return {"commit": git_commit(root), "dirty": git_dirty(root), "version": __version__}
