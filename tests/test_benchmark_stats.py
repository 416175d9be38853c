"""The statistics every benchmark comparison reports: paired bootstrap p-values and Holm's
correction over the comparisons a table makes."""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's benchmarks/ package

from benchmarks.common import bootstrap_ci, bootstrap_p, holm, paired  # noqa: E402


def test_holm_steps_down_and_stops_at_the_first_failure() -> None:
    # m = 3: thresholds 0.05/3, 0.05/2, 0.05 in p order; 0.03 > 0.025 stops the walk, so 0.04 fails too
    assert holm({"a": 0.01, "b": 0.04, "c": 0.03}) == {"a": True, "c": False, "b": False}
    assert holm({"a": 0.001, "b": 0.02, "c": 0.04}) == {"a": True, "b": True, "c": True}
    # a single comparison is an ordinary test
    assert holm({"x": 0.049}) == {"x": True} and holm({"x": 0.051}) == {"x": False}


def test_bootstrap_p_agrees_with_the_interval() -> None:
    rng = np.random.default_rng(0)
    clear = rng.normal(1.0, 1.0, 60)
    lo, hi = bootstrap_ci(clear, 0)
    assert lo > 0 and bootstrap_p(clear, 0) < 0.05
    noise = rng.normal(0.0, 1.0, 60)
    noise -= noise.mean()  # a mean difference of exactly 0: resampled means fall on both sides equally
    assert bootstrap_p(noise, 0) > 0.8
    assert bootstrap_p(np.zeros(10), 0) == 1.0  # identical picks: no evidence at all


def test_paired_reports_the_p_value_beside_the_verdict() -> None:
    rows = {"a": [{"test_accuracy": 0.9 + 0.01 * i} for i in range(20)],
            "b": [{"test_accuracy": 0.85 + 0.01 * i + 0.002 * (i % 3)} for i in range(20)]}
    c = paired(rows, "a", list(range(20)), 0)["b"]
    assert c["verdict"] == "win" and c["p_value"] < 0.05 and c["mean_pp"] > 0
