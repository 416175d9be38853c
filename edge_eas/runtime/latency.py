"""The latency protocol: warm-up, >= 30 timed runs, median / p90 / mean / std / CV, noisy
measurements repeated (up to `retries` times) and flagged if still noisy."""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

MIN_RUNS = 30
NOISY_CV = 0.15


def summarize(times_s: list[float]) -> dict[str, float]:
    ms = np.asarray(times_s) * 1000.0
    mean = float(ms.mean())
    std = float(ms.std(ddof=1)) if len(ms) > 1 else 0.0
    return {"median_ms": float(np.median(ms)), "p90_ms": float(np.percentile(ms, 90)), "mean_ms": mean,
            "std_ms": std, "min_ms": float(ms.min()), "cv": std / mean if mean > 0 else 0.0, "runs": int(len(ms))}


def measure(fn: Callable[[], Any], warmup: int = 10, runs: int = 50, retries: int = 2) -> dict[str, Any]:
    """Time `fn` per the protocol. The CV uses the middle 80 % of runs so one preemption does
    not mark a run noisy; a run whose CV stays above NOISY_CV after retries is flagged."""
    if runs < MIN_RUNS:
        raise ValueError(f"runs must be >= {MIN_RUNS} for a trustworthy median/p90, got {runs}")
    if warmup < 0:
        raise ValueError("warmup must be >= 0")
    for _ in range(warmup):
        fn()
    attempts = 0
    while True:
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        stats = summarize(times)
        trimmed = sorted(times)[len(times) // 10: len(times) - len(times) // 10]
        stats["cv_trimmed"] = summarize(trimmed)["cv"]
        attempts += 1
        if stats["cv_trimmed"] <= NOISY_CV or attempts > retries:
            stats["noisy"] = stats["cv_trimmed"] > NOISY_CV
            stats["attempts"] = attempts
            stats["warmup"] = warmup
            return stats
