"""The accuracy predictor's inference path, in plain numpy (runs on devices without torch).

(arch, task) -> predicted accuracy on the task's classes. The host fits it on validation
measurements of the BN-recalibrated supernet (host/accuracy_fit.py) and ships it in the bundle
next to the generator, so that "the cheapest network good enough for my classes" is answered
on the device as a budget is. Its error on architectures it never saw gives the safety margin:
an answer counts as meeting a target only when its prediction lowered by the margin does, as an
ms budget is met by a latency prediction raised by the device's learnt margin. Errors and margin
are counted in binomial standard errors, sqrt(p (1 - p) / n) with n the task's validation
images: measured, the held-out residuals in these units have the same spread from 85 % to
99.5 % accuracy, where a margin in pp or in logits is several times too wide at one end or too
narrow at the other.

Input: each decision of the space as a one-hot of its choice (a block's kernel and expand only
while the block runs), then the task's classes as a multi-hot. An MLP (fc1, fc2, ... with ReLU
between; `host/accuracy_fit.PredictorNet` is its torch twin) maps it to a logit. A few such
MLPs, fitted from different seeds (weights m0.fc1..., m1.fc1...), average their logits: the
ensemble ranks held-out archs better and over-predicts less than one. The prediction is the
mean logit's sigmoid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from edge_eas.archgen.mlp import layer_names, mlp_forward, task_features
from edge_eas.format.bundle_reader import Bundle
from edge_eas.format.manifest import AccuracyMeta
from edge_eas.net.space import Arch, SearchSpace


def arch_features(space: SearchSpace, vecs: np.ndarray) -> np.ndarray:
    """(N, sum of choice counts) float32: every decision's choice one-hot, a block's kernel and
    expand zeroed where the block does not run (so archs that differ only there look alike)."""
    vecs = np.asarray(vecs, dtype=np.int64).reshape(len(vecs), -1)
    lay = space.decisions
    active = lay.active(vecs)
    parts = []
    for d, size in enumerate(lay.sizes):
        hot = np.zeros((len(vecs), size), dtype=np.float32)
        hot[np.arange(len(vecs)), vecs[:, d]] = 1.0
        slot = lay.decision_slots[d]
        if slot >= 0:
            hot *= active[:, slot:slot + 1]
        parts.append(hot)
    return np.concatenate(parts, 1)


@dataclass(frozen=True)
class Prediction:
    """A predicted accuracy with the interval its held-out residuals give (10th-90th percentile),
    and `safe`: the prediction lowered by the margin, what a target is checked against."""

    accuracy: float
    low: float
    high: float
    safe: float

    def to_dict(self) -> dict[str, float]:
        return {"predicted_accuracy": self.accuracy, "predicted_interval": [self.low, self.high],
                "predicted_accuracy_safe": self.safe}


@dataclass
class AccuracyPredictor:
    space: SearchSpace
    num_classes: int
    weights: dict[str, np.ndarray]
    errors: AccuracyMeta   # its held-out residuals and margin, in standard errors

    def __post_init__(self) -> None:
        # an ensemble: members m0., m1., ... (one member may have no prefix); the logit is their mean
        prefixes = sorted({k.split(".")[0] + "." if not k.startswith("fc") else "" for k in self.weights})
        self._members = [({k[len(p):]: v for k, v in self.weights.items() if k.startswith(p) and
                           k[len(p):].startswith("fc")}) for p in prefixes]
        self._layers = [layer_names(m) for m in self._members]

    @property
    def margin(self) -> float:
        """The safety margin, in standard errors: the calibrated one where the fit made it, never
        below the held-out networks' p90 over-prediction."""
        held_out = max(0.0, -self.errors.se_residual_p10)
        return held_out if self.errors.margin_se is None else max(held_out, self.errors.margin_se)

    def standard_error(self, p: np.ndarray, classes: Sequence[int]) -> np.ndarray:
        """sqrt(p (1 - p) / n) of a task with n = its validation images; p is kept half an image
        from 0 and 1, so that a near-certain prediction still has an error."""
        n = self.errors.images_per_class * len(classes)
        p = np.clip(p, 0.5 / n, 1 - 0.5 / n)
        return np.sqrt(p * (1 - p) / n)

    def inputs(self, vecs: np.ndarray, tasks: Sequence[Sequence[int]]) -> np.ndarray:
        """[arch features | task multi-hot], one row per (vector, task) pair."""
        return np.concatenate([arch_features(self.space, vecs), task_features(tasks, self.num_classes)], 1)

    def logits(self, x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float32)
        return np.mean([mlp_forward(m, names, x)[:, 0] for m, names in zip(self._members, self._layers)], 0)

    def predict_vectors(self, vecs: np.ndarray, classes: Sequence[int]) -> np.ndarray:
        """(N,) predicted accuracy of each choice vector on one task."""
        vecs = np.asarray(vecs, dtype=np.int64).reshape(-1, len(self.space.decision_sizes()))
        task = np.broadcast_to(task_features([classes], self.num_classes), (len(vecs), self.num_classes))
        return sigmoid(self.logits(np.concatenate([arch_features(self.space, vecs), task], 1)).astype(np.float64))

    def safe(self, p: np.ndarray, classes: Sequence[int]) -> np.ndarray:
        """Predictions lowered by the margin: what a target is checked against."""
        return p - self.margin * self.standard_error(p, classes)

    def safe_vectors(self, vecs: np.ndarray, classes: Sequence[int]) -> np.ndarray:
        return self.safe(self.predict_vectors(vecs, classes), classes)

    def predict(self, arch: Arch, classes: Sequence[int]) -> Prediction:
        return self.interval(float(self.predict_vectors(self.space.encode(arch)[None, :], classes)[0]), classes)

    def interval(self, p: float, classes: Sequence[int]) -> Prediction:
        """One prediction with its held-out interval and safe value."""
        se = float(self.standard_error(np.asarray(p), classes))
        return Prediction(p, max(0.0, p + self.errors.se_residual_p10 * se),
                          min(1.0, p + self.errors.se_residual_p90 * se), p - self.margin * se)


def sigmoid(z: Any) -> Any:
    return 1.0 / (1.0 + np.exp(-np.asarray(z, dtype=np.float64))) if np.ndim(z) else float(1.0 / (1.0 + np.exp(-z)))


def from_arrays(space: dict[str, Any], num_classes: int, weights: dict[str, np.ndarray],
                errors: AccuracyMeta) -> AccuracyPredictor:
    """The predictor of a run directory (accuracy.json) or a bundle's manifest entry."""
    return AccuracyPredictor(SearchSpace.from_dict(space), num_classes,
                             {k: np.asarray(v, dtype=np.float32) for k, v in weights.items()}, errors)


def from_bundle(bundle: Bundle) -> AccuracyPredictor | None:
    """The predictor a verified bundle carries; None when it was exported without one."""
    m = bundle.manifest
    if m.accuracy is None or "accuracy.safetensors" not in m.members:
        return None
    return from_arrays(m.space, len(m.class_names), bundle.tensors("accuracy.safetensors"), m.accuracy)
