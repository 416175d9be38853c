"""Few-shot calibration of a device's latency model from whole sub-network measurements.

The model is linear in per-arch features (pointwise MACs, depthwise MACs per kernel size,
bytes moved, conv layers, a constant), starting from the roofline prior's coefficients. With
very few measurements only a scale and offset of the current model are fitted; with more,
all coefficients by non-negative least squares on relative errors. Profiled per-block entries,
when present, are kept and only the unprofiled remainder is fitted.

The loss is Huber on relative errors (iteratively reweighted): a timing spoilt by a preempted
core pulls the fit as an outlier should, linearly, not quadratically. `validate` then decides on
held-out architectures whether the fit is kept at all (see calibration.calibrate_rows).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Sequence

import numpy as np
from scipy.optimize import nnls

from edge_eas.net.space import Arch, SearchSpace
from edge_eas.cost.features import block_features, fixed_features
from edge_eas.cost.latency import block_key, LatencyModel


HUBER_K = 1.345          # the usual Huber constant, in robust standard deviations of relative error
MIN_SCALE = 0.01         # below 1 % relative error nothing is an outlier
HUBER_ITERATIONS = 8


def arch_features(space: SearchSpace, arch: Arch, num_classes: int) -> np.ndarray:
    """features.FEATURES summed over the whole network, then 1 for the constant."""
    f = fixed_features(space, num_classes, arch.resolution, space.stage_widths(arch)[-1])
    f = f + sum(block_features(c) for c in space.active_blocks(arch))
    return np.append(f, 1.0)


def fit(model: LatencyModel, space: SearchSpace, archs: Sequence[Arch], measured_ms: Sequence[float],
        prior_weight: float = 1e-5, min_full_fit: int = 8) -> LatencyModel:
    """A copy of `model` fitted to whole-network measurements (relative errors, NNLS).

    With fewer than `min_full_fit` measurements only a scale and an offset of the current
    model's predictions are fitted (two unknowns); with more, every feature coefficient, with a
    light ridge towards the current coefficients for stability. Huber loss (IRLS) on relative
    errors: residuals beyond HUBER_K robust standard deviations are down-weighted."""
    y = np.asarray(measured_ms, dtype=np.float64)
    if len(y) == 0:
        return model
    X = np.stack([arch_features(space, a, model.num_classes) for a in archs])
    coef0, const0 = model.coefficients()
    theta0 = np.append(coef0, const0)
    if model.entries:  # profiled blocks are measured directly: only the rest is modelled
        X = np.stack([_residual_features(model, space, a) for a in archs])
    # a profiled table already has the shape: only its scale and offset are fitted
    full = len(y) >= min_full_fit and not model.entries
    w = np.ones(len(y))
    for _ in range(HUBER_ITERATIONS):  # IRLS: weights from the last fit's relative residuals
        theta = _solve(X, y, theta0, prior_weight, full, model, space, archs, w)
        rel = (_predict_rows(X, theta, model, space, archs) - y) / y
        delta = HUBER_K * max(1.4826 * float(np.median(np.abs(rel - np.median(rel)))), MIN_SCALE)
        new_w = np.minimum(1.0, delta / np.maximum(np.abs(rel), 1e-12))
        if np.allclose(new_w, w, atol=1e-3):
            break
        w = new_w
    if isinstance(theta, tuple):  # scale/offset of the current model
        scale, offset = theta
        coef = tuple(float(c) * scale for c in coef0)
        const = float(const0) * scale + offset
        entries = {k: v * scale for k, v in model.entries.items()}
        fixed = model.fixed_ms * scale if model.fixed_ms is not None else None
    else:
        coef, const = tuple(float(c) for c in theta[:-1]), float(theta[-1])
        entries, fixed = model.entries, model.fixed_ms
    return replace(model, coef=coef, const_ms=const, entries=dict(entries), fixed_ms=fixed,
                   source="calibrated" if not model.entries else "profiled+calibrated",
                   fit={"measurements": int(len(y)), "downweighted": int((w < 1).sum()), "loss": "huber",
                        "kind": "features" if full else "scale+offset"})


def _residual_features(model: LatencyModel, space: SearchSpace, arch: Arch) -> np.ndarray:
    """Features of the blocks the profiled table does not cover (plus the constant)."""
    f = np.zeros(len(model.coefficients()[0]))
    if model.fixed_ms is None:
        f = f + fixed_features(space, model.num_classes, arch.resolution, space.stage_widths(arch)[-1])
    for c in space.active_blocks(arch):
        if block_key(c) not in model.entries:
            f = f + block_features(c)
    return np.append(f, 1.0)


def _known_ms(model: LatencyModel, space: SearchSpace, arch: Arch) -> float:
    """The part of a prediction that comes from profiled entries (not refitted)."""
    known = sum(model.entries.get(block_key(c), 0.0) for c in space.active_blocks(arch))
    return known + (model.fixed_ms or 0.0)


def _solve(X: np.ndarray, y: np.ndarray, theta0: np.ndarray, weight: float, full: bool, model: LatencyModel,
           space: SearchSpace, archs: Sequence[Arch], w: np.ndarray) -> Any:
    known = np.array([_known_ms(model, space, a) for a in archs])
    sw = np.sqrt(w)
    if not full:
        base = np.array([model.predict(space, a) for a in archs])
        A = np.stack([base, np.ones(len(y))], 1) / y[:, None] * sw[:, None]
        (scale, offset), _ = nnls(A, sw)
        return (float(scale), float(offset))
    return _ridge_nnls(X * sw[:, None], (y - known) * sw, y, theta0, weight)


def _predict_rows(X: np.ndarray, theta: Any, model: LatencyModel, space: SearchSpace, archs: Sequence[Arch]) -> np.ndarray:
    if isinstance(theta, tuple):
        return np.array([model.predict(space, a) for a in archs]) * theta[0] + theta[1]
    return X @ theta + np.array([_known_ms(model, space, a) for a in archs])


def _ridge_nnls(X: np.ndarray, target: np.ndarray, y: np.ndarray, theta0: np.ndarray, weight: float) -> np.ndarray:
    """min sum((X theta - target) / y)^2 + weight * sum((theta - theta0) / theta0)^2, theta >= 0,
    solved in u = theta / theta0 so that every coefficient is on the same scale."""
    scale = np.where(theta0 > 0, theta0, 1.0)
    A = (X * scale) / y[:, None]
    b = target / y
    lam = np.sqrt(weight * len(y))
    A_aug = np.vstack([A, lam * np.eye(len(scale))])
    b_aug = np.concatenate([b, lam * np.ones(len(scale))])
    u, _ = nnls(A_aug, b_aug)
    return u * scale


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
