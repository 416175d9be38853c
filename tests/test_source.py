"""What a result records of its source: the commit, and whether the checkout had changes that
would make the result not trace to it (untracked modules in the package or the benchmarks count;
a stray file elsewhere and a benchmark's own results do not)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from edge_eas.common.source import git_commit, git_dirty, source_state


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout


def test_dirty_counts_tracked_changes_and_untracked_modules_only(tmp_path: Path) -> None:
    _git(tmp_path, "init", "-q")
    (tmp_path / "edge_eas").mkdir()
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "edge_eas" / "a.py").write_text("A = 1\n")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "one")
    assert git_commit(tmp_path) == _git(tmp_path, "rev-parse", "--short", "HEAD").strip()
    assert git_dirty(tmp_path) is False
    (tmp_path / "notes.txt").write_text("scratch\n")                  # beside the code: not what runs
    (tmp_path / "benchmarks" / "results" / "x.json").write_text("{}")  # a benchmark's own output
    assert git_dirty(tmp_path) is False
    (tmp_path / "benchmarks" / "new_bench.py").write_text("")         # an untracked benchmark module
    assert git_dirty(tmp_path) is True
    (tmp_path / "benchmarks" / "new_bench.py").unlink()
    (tmp_path / "edge_eas" / "b.py").write_text("")                   # an untracked package module
    assert git_dirty(tmp_path) is True
    (tmp_path / "edge_eas" / "b.py").unlink()
    (tmp_path / "edge_eas" / "a.py").write_text("A = 2\n")            # a tracked change
    assert git_dirty(tmp_path) is True


def test_without_a_checkout_the_source_is_unknown_not_clean(tmp_path: Path) -> None:
    state = source_state(tmp_path)
    assert state["commit"] is None and state["dirty"] is None and state["version"]


def test_a_training_run_records_its_source(tiny_run: Path) -> None:
    meta = json.loads((tiny_run / "run.json").read_text())
    root = Path(__file__).resolve().parents[1]
    assert meta["source"]["commit"] == git_commit(root) and isinstance(meta["source"]["dirty"], bool)
