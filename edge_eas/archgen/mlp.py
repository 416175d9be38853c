"""The numpy forward of the small MLPs the device runs (the generator, the accuracy predictor):
layers fc1, fc2, ... as safetensors weights, ReLU between them."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from edge_eas.net.tasks import Task


def layer_names(weights: Mapping[str, np.ndarray]) -> list[str]:
    """fc1, fc2, ... in order (fc10 after fc9)."""
    return sorted({k.split(".")[0] for k in weights if k.startswith("fc")}, key=lambda name: int(name[2:]))


def mlp_forward(weights: Mapping[str, np.ndarray], layers: Sequence[str], x: np.ndarray) -> np.ndarray:
    h = x
    for i, name in enumerate(layers):
        h = h @ weights[f"{name}.weight"].T + weights[f"{name}.bias"]
        if i < len(layers) - 1:
            h = np.maximum(h, 0.0)
    return h


def task_features(tasks: Sequence[Sequence[int]], num_classes: int) -> np.ndarray:
    """(N, num_classes) float32 multi-hot of each task's classes: both MLPs' task input."""
    hot = np.zeros((len(tasks), num_classes), dtype=np.float32)
    for i, classes in enumerate(tasks):
        hot[i, list(Task.create(classes, num_classes).classes)] = 1.0
    return hot
