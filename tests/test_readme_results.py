"""`python -m benchmarks.readme_results --check`: a README table whose JSON does not trace to a
clean commit is named, and the check fails."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from benchmarks import readme_results

HEAD = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=readme_results.ROOT, capture_output=True,
                      text=True).stdout.strip()


@pytest.mark.parametrize("doc, problem", [
    ({"benchmark": "generator"}, "generator.json: no commit or dirty flag"),
    ({"benchmark": "generator", "commit": HEAD}, "generator.json: no commit or dirty flag"),
    ({"benchmark": "generator", "commit": HEAD, "dirty": True}, "generator.json: written from a dirty tree"),
    ({"benchmark": "generator", "commit": HEAD, "dirty": None}, "generator.json: written from a dirty tree"),
    ({"benchmark": "generator", "commit": HEAD, "dirty": False}, None),
])
def test_check_names_each_json_that_does_not_trace_to_a_clean_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                      doc: dict, problem: str | None) -> None:
    monkeypatch.setattr(readme_results, "RESULTS", tmp_path)
    (tmp_path / "generator.json").write_text(json.dumps(doc))
    problems = readme_results.check(max_behind=None)
    assert problems == [] if problem is None else (len(problems) == 1 and problems[0].startswith(problem))
    assert readme_results.check(max_behind=0) == problems  # at the head: never too old


def test_provenance_says_how_far_behind_the_head_a_json_is() -> None:
    assert "at the head's edge_eas/" in readme_results.provenance({"commit": HEAD}, "x")
    assert readme_results.commits_behind(HEAD) == 0
    assert readme_results.commits_behind("0000000") is None and readme_results.commits_behind(None) is None
    assert "behind the head" not in readme_results.provenance({"commit": "0000000"}, "x")
