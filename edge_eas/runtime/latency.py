"""The latency protocol: warm-up, >= 30 timed samples, median / p90 / mean / std / CV, noisy
measurements repeated (up to `retries` times) and flagged if still noisy.

A sub-millisecond network timed one inference at a time sits on the timer's and the
scheduler's noise floor (digits-sized nets take 20-200 us), so each timed sample repeats the
inference until the sample lasts at least MIN_SAMPLE_S, and the figures are per inference
(sample time / repeats). The repeat count and the per-sample median are reported with them."""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

MIN_RUNS = 30
NOISY_CV = 0.15
MIN_SAMPLE_S = 0.002   # each timed sample lasts at least this long
MAX_REPEAT = 10_000


def summarize(times_s: list[float]) -> dict[str, float]:
    ms = np.asarray(times_s) * 1000.0
    mean = float(ms.mean())
    std = float(ms.std(ddof=1)) if len(ms) > 1 else 0.0
    return {"median_ms": float(np.median(ms)), "p90_ms": float(np.percentile(ms, 90)), "mean_ms": mean,
            "std_ms": std, "min_ms": float(ms.min()), "cv": std / mean if mean > 0 else 0.0, "runs": int(len(ms))}


def repeats_for(fn: Callable[[], Any], min_sample_s: float = MIN_SAMPLE_S) -> int:
    """How many calls of `fn` one timed sample needs to last `min_sample_s` (fn already warm):
    from the median of a few single calls, so one preempted call does not shrink it."""
    singles = []
    for _ in range(5):
        t = time.perf_counter()
        fn()
        singles.append(time.perf_counter() - t)
    one = max(float(np.median(singles)), 1e-7)
    return int(min(MAX_REPEAT, max(1, np.ceil(min_sample_s / one))))


def measure(fn: Callable[[], Any], warmup: int = 10, runs: int = 50, retries: int = 2,
            min_sample_s: float = MIN_SAMPLE_S) -> dict[str, Any]:
    """Time `fn` per the protocol: `runs` samples of `repeat` calls each, figures per call. The
    CV uses the middle 80 % of samples so one preemption does not mark a run noisy; a
    measurement whose CV stays above NOISY_CV after retries is flagged."""
    if runs < MIN_RUNS:
        raise ValueError(f"runs must be >= {MIN_RUNS} for a trustworthy median/p90, got {runs}")
    if warmup < 0:
        raise ValueError("warmup must be >= 0")
    for _ in range(warmup):
        fn()
    repeat = repeats_for(fn, min_sample_s)
    attempts = 0
    while True:
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            for _ in range(repeat):
                fn()
            times.append((time.perf_counter() - t) / repeat)
        stats = summarize(times)
        stats["repeat"] = repeat
        stats["sample_median_ms"] = stats["median_ms"] * repeat
        trimmed = sorted(times)[len(times) // 10: len(times) - len(times) // 10]
        stats["cv_trimmed"] = summarize(trimmed)["cv"]
        attempts += 1
        if stats["cv_trimmed"] <= NOISY_CV or attempts > retries:
            stats["noisy"] = stats["cv_trimmed"] > NOISY_CV
            stats["attempts"] = attempts
            stats["warmup"] = warmup
            return stats
