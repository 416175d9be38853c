"""Few-shot calibration of a device's latency model from whole sub-network measurements.

The model is linear in per-arch features (pointwise MACs, depthwise MACs, bytes moved, conv
layers, a constant), with the roofline prior's coefficients as the starting point. With few
measurements the fit is a ridge pull towards the prior (in relative terms), solved as a
non-negative least-squares problem on relative errors, then refit without outliers
(> 3 MADs). Profiled per-block entries, when present, are kept as they are.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Sequence

import numpy as np
from scipy.optimize import nnls

from ..space import Arch, SearchSpace
from .latency import LatencyModel, block_features, fixed_features


def arch_features(space: SearchSpace, arch: Arch, num_classes: int) -> np.ndarray:
    """latency.FEATURES summed over the whole network, then 1 for the constant."""
    f = fixed_features(space, num_classes) + sum(block_features(c) for c in space.active_blocks(arch))
    return np.append(f, 1.0)


def fit(model: LatencyModel, space: SearchSpace, archs: Sequence[Arch], measured_ms: Sequence[float],
        prior_weight: float = 0.05) -> LatencyModel:
    """A copy of `model` with coefficients fitted to the measurements."""
    y = np.asarray(measured_ms, dtype=np.float64)
    if len(y) == 0:
        return model
    X = np.stack([arch_features(space, a, model.num_classes) for a in archs])
    coef0, const0 = model.prior_coef()
    theta0 = np.append(coef0, const0)
    keep = np.ones(len(y), dtype=bool)
    theta = theta0
    for _ in range(2):  # fit, drop outliers, refit
        theta = _ridge_nnls(X[keep], y[keep], theta0, prior_weight)
        rel = np.abs(X @ theta - y) / y
        mad = np.median(np.abs(rel - np.median(rel))) + 1e-9
        new_keep = rel <= np.median(rel) + 3 * 1.4826 * mad
        if new_keep.sum() < max(3, len(y) // 2) or (new_keep == keep).all():
            break
        keep = new_keep
    fitted = replace(model, coef=tuple(float(c) for c in theta[:-1]), const_ms=float(theta[-1]),
                     source="calibrated" if not model.entries else "profiled+calibrated",
                     fit={"measurements": int(len(y)), "outliers": int((~keep).sum()), "prior_weight": prior_weight})
    return fitted


def _ridge_nnls(X: np.ndarray, y: np.ndarray, theta0: np.ndarray, weight: float) -> np.ndarray:
    """min sum((X theta - y) / y)^2 + weight * n * sum((theta - theta0) / theta0)^2, theta >= 0.
    Solved in the scaled variable u = theta / theta0 so both terms are relative."""
    A = (X * theta0) / y[:, None]
    b = np.ones(len(y))
    lam = np.sqrt(weight * max(1, len(y)) / len(theta0))
    A_aug = np.vstack([A, lam * np.eye(len(theta0))])
    b_aug = np.concatenate([b, lam * np.ones(len(theta0))])
    u, _ = nnls(A_aug, b_aug)
    return u * theta0


def kendall_tau(a: Sequence[float], b: Sequence[float]) -> float:
    from scipy.stats import kendalltau
    if len(a) < 2:
        return float("nan")
    return float(kendalltau(a, b).statistic)


def accuracy_report(predicted: Sequence[float], measured: Sequence[float]) -> dict[str, Any]:
    """RMSE (ms), MAPE, share within +-10 %, Kendall tau: how the model does on held-out archs."""
    p, m = np.asarray(predicted, dtype=np.float64), np.asarray(measured, dtype=np.float64)
    rel = np.abs(p - m) / m
    return {"n": int(len(m)), "rmse_ms": float(np.sqrt(np.mean((p - m) ** 2))), "mape": float(rel.mean()),
            "within_10pct": float((rel <= 0.10).mean()), "kendall_tau": kendall_tau(p, m)}
