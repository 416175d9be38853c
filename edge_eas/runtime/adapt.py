"""From a sub-network with the shared all-class classifier and a user's examples to a fitted task
head: the features, the rule that picks the task vector for new classes, and the fit.

Features always come from the numpy engine (the reference every engine matches to 1e-4), with
BN on the bundle's all-class statistics: the examples never touch BN (task-only statistics cost
2.34 pp in benchmarks/calibration_images.py, and a handful of images is noisier still).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from edge_eas.net.folded import FoldedNet
from edge_eas.runtime.engines.numpy_engine import NumpyEngine
from edge_eas.runtime.examples import Examples
from edge_eas.runtime.head_fit import FittedHead, HeadFitConfig, fit_head, start_head
from edge_eas.runtime.model import softmax

FEATURE_BATCH = 16
"""Images per numpy forward when computing features: small, because the fit's extra memory is
mostly the widest activation map times the batch (at 28 px a 6x expansion of 96 channels is
1.8 MB per image)."""
NEW_CLASS_RULES = ("all", "nearest")
"""How the generator's task vector covers classes it never saw:
- "all": the all-class vector (plus nothing else to decide: new classes could be anything);
- "nearest": the known labels plus, per new label, the known class the shared head puts most
  probability on over its examples (on the all-class network at the same budget)."""


def features(folded: FoldedNet, inputs: np.ndarray, batch: int = FEATURE_BATCH) -> np.ndarray:
    """(N, features) for preprocessed NCHW inputs, in batches (bounded memory for big folders)."""
    return _run_batched(folded.features(), inputs, batch).reshape(len(inputs), -1)


def _run_batched(folded: FoldedNet, inputs: np.ndarray, batch: int) -> np.ndarray:
    """`folded` on the numpy engine, `batch` inputs at a time."""
    engine = NumpyEngine(folded, batch_size=batch)
    return np.concatenate([engine.run(inputs[i:i + batch]) for i in range(0, len(inputs), batch)])


def fit_examples(folded_all: FoldedNet, examples: Examples, centre: np.ndarray,
                 config: HeadFitConfig = HeadFitConfig()) -> FittedHead:
    """The head for the examples' labels on `folded_all` (a net whose classifier has a row for
    every class of the bundle): shared rows for known labels, imprinted about `centre` (see
    `mean_feature`) for new ones, then the fit."""
    f = features(folded_all, examples.inputs)
    shared = folded_all.classifier()
    w0, b0 = start_head(f, examples.targets, shared.weight, shared.bias, list(examples.class_ids), centre)
    return fit_head(f, examples.targets, w0, b0, config, np.array([c is None for c in examples.class_ids]))


def mean_feature(folded_all: FoldedNet, calibration_inputs: np.ndarray) -> np.ndarray:
    """The mean feature of the bundle's calibration images (every class the supernet knows): the
    centre new classes are imprinted about."""
    return features(folded_all, calibration_inputs).mean(axis=0)


def nearest_known(folded_all: FoldedNet, examples: Examples) -> list[int]:
    """Per new label, the known class (not already a label) the shared classifier puts the most
    mean probability on over the label's examples."""
    taken = {c for c in examples.class_ids if c is not None}
    p = softmax(_run_batched(folded_all, examples.inputs, FEATURE_BATCH))
    out: list[int] = []
    for row, cid in enumerate(examples.class_ids):
        if cid is not None:
            continue
        mean = p[examples.targets == row].mean(0)
        mean[sorted(taken | set(out))] = -1.0
        out.append(int(mean.argmax()))
    return out


def task_vector(examples: Examples, num_classes: int, rule: str, nearest: Sequence[int] = ()) -> list[int]:
    """The classes the generator is asked for: the known labels, and for new ones as `rule` says."""
    if rule not in NEW_CLASS_RULES:
        raise ValueError(f"new_class_rule must be one of {', '.join(NEW_CLASS_RULES)}, got {rule!r}")
    known = sorted(c for c in examples.class_ids if c is not None)
    if not examples.new_labels:
        return known
    if rule == "all":
        return list(range(num_classes))
    return sorted(set(known) | set(nearest))
