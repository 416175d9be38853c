"""Fit a task head from a few labelled examples, in numpy, in well under a second.

The head is the sub-network's last Linear op (features -> logits). It starts from what the
supernet already knows: the shared classifier's rows for classes it was trained on, and for new
classes the imprinted direction of their examples' mean feature (Qi et al., "Low-shot learning
with imprinted weights", 2018), scaled like the shared rows. A softmax regression then fits
every row to the examples, with a pull back toward that start:

    minimise  mean_i CE(softmax(W f_i + b), y_i)
              + sum_r lam_r / 2 * (s2 * ||W_r - W0_r||^2 + (b_r - b0_r)^2),     s2 = mean_i ||f_i||^2

s2 makes the pulls scale-free (features scaled by a, weights by 1/a: the same problem). A row
the supernet trained on thousands of images is pulled hard (`pull`); an imprinted row, a guess
from k examples, lightly (`pull_new`). Features after ReLU-family activations all point into one
orthant, so new rows are imprinted on features centred at the mean feature of the bundle's
all-class calibration images, with the bias that puts that mean at the shared rows' median
logit: then an imprinted row does not outbid the shared rows on every image. The
objective is strongly convex, so accelerated gradient descent with the step 1/L (L from the
features' largest singular value) converges in a fixed number of steps with nothing to tune
but `lam`. Every setting is fixed in `HeadFitConfig` and was chosen on validation data
(benchmarks/fewshot.py --split val); none of it reads test images.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class HeadFitConfig:
    """The fit's settings, fixed before any test figure was looked at (see the module docstring)."""

    # chosen on Fashion's validation split (benchmarks/results/fewshot_fashion-mnist_val.json): the best
    # mean accuracy at 10 shots over new- and known-class tasks among 7 pairs; the pairs lie within 0.4 pp
    pull: float = 1.0           # lam for a known class's row (the shared classifier's), relative to the features' scale
    pull_new: float = 0.001     # lam for a new class's imprinted row
    steps: int = 300            # accelerated gradient steps (the fit is strongly convex: 300 reach ~1e-6)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class FittedHead:
    """The fitted rows, in the order of the labels, and how the fit went (for the user and tests)."""

    weight: np.ndarray   # (labels, features)
    bias: np.ndarray     # (labels,)
    train_accuracy: float
    start_accuracy: float
    loss: float


def imprint(features: np.ndarray, labels: np.ndarray, rows: int, norm: float, bias: float, centre: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
    """One row per label 0..rows-1: the mean of its examples' L2-normalised features about
    `centre`, normalised and scaled to `norm`; its bias puts `centre` at logit `bias`."""
    centred = features - centre
    unit = centred / np.maximum(np.linalg.norm(centred, axis=1, keepdims=True), 1e-12)
    weight = np.zeros((rows, features.shape[1]), dtype=np.float64)
    for r in range(rows):
        mean = unit[labels == r].mean(axis=0)
        weight[r] = norm * mean / max(float(np.linalg.norm(mean)), 1e-12)
    return weight, bias - weight @ centre


def start_head(features: np.ndarray, labels: np.ndarray, shared_weight: np.ndarray, shared_bias: np.ndarray,
               known_rows: list[int | None], centre: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The head a fit starts from: for label r, row known_rows[r] of the shared classifier, or
    (None: a class the supernet never saw) its imprinted row at the shared rows' median norm, about
    `centre` (the mean feature of the bundle's calibration images; None: the origin) at the
    shared rows' median logit there."""
    centre = np.zeros(features.shape[1]) if centre is None else np.asarray(centre, dtype=np.float64)
    norm = float(np.median(np.linalg.norm(shared_weight, axis=1)))
    bias = float(np.median(shared_weight @ centre + shared_bias))
    imprinted_w, imprinted_b = imprint(features, labels, len(known_rows), norm, bias, centre)
    weight, b = imprinted_w.copy(), imprinted_b.copy()
    for r, row in enumerate(known_rows):
        if row is not None:
            weight[r], b[r] = shared_weight[row], shared_bias[row]
    return weight, b


def accuracy(features: np.ndarray, labels: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> float:
    return float(np.mean((features @ weight.T + bias).argmax(1) == labels))


def fit_head(features: np.ndarray, labels: np.ndarray, weight0: np.ndarray, bias0: np.ndarray,
             config: HeadFitConfig = HeadFitConfig(), new_rows: np.ndarray | None = None) -> FittedHead:
    """Softmax regression on (features, labels) pulled toward (weight0, bias0); `new_rows` (bool
    per row) take `pull_new`, the rest `pull`. See the module docstring. float64 inside: the fit
    is tiny, and its result must not depend on summation order."""
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    w0, b0 = np.asarray(weight0, dtype=np.float64), np.asarray(bias0, dtype=np.float64)
    n, k = len(f), len(w0)
    s2 = float(np.mean(np.sum(f * f, axis=1))) or 1.0
    new = np.zeros(k, dtype=bool) if new_rows is None else np.asarray(new_rows, dtype=bool)
    lam_b = np.where(new, config.pull_new, config.pull)
    lam_w = (lam_b * s2)[:, None]
    onehot = np.zeros((n, k))
    onehot[np.arange(n), y] = 1.0
    # Lipschitz constant of the gradient: softmax CE's Hessian is below 1/2 per sample
    lipschitz = 0.5 * float(np.linalg.norm(np.hstack([f, np.ones((n, 1))]), 2)) ** 2 / n + \
        max(float(lam_w.max()), float(lam_b.max()))
    strong = min(float(lam_w.min()), float(lam_b.min()))
    q = np.sqrt(strong / lipschitz)
    momentum = (1 - q) / (1 + q)
    step = 1.0 / lipschitz

    def gradient(w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        z = f @ w.T + b
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        loss = -float(np.mean(np.log(np.maximum(p[np.arange(n), y], 1e-300))))
        p -= onehot
        p /= n
        return p.T @ f + lam_w * (w - w0), p.sum(axis=0) + lam_b * (b - b0), loss

    w, b = w0.copy(), b0.copy()
    w_prev, b_prev = w, b
    for _ in range(config.steps):
        vw, vb = w + momentum * (w - w_prev), b + momentum * (b - b_prev)
        gw, gb, _ = gradient(vw, vb)
        w_prev, b_prev = w, b
        w, b = vw - step * gw, vb - step * gb
    _, _, loss = gradient(w, b)
    return FittedHead(w.astype(np.float32), b.astype(np.float32), accuracy(f, y, w, b), accuracy(f, y, w0, b0), loss)
