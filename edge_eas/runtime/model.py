"""A specialised sub-network on its engine (`SpecializedModel`), and how networks are timed
(`benchmark_many`): what `Runtime.specialize` and `Runtime.load_head` hand back, and what the
agent, profiling and the benchmarks time."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from edge_eas.net.folded import FoldedNet
from edge_eas.net.preprocess import Preprocess
from edge_eas.net.space import Arch
from edge_eas.archgen.accuracy import Prediction
from edge_eas.runtime.adapted_head import AdaptedHead
from edge_eas.runtime.engines import Calibration, create_engine, engine_spec
from edge_eas.runtime.environment import describe
from edge_eas.runtime.timing import INTERLEAVE_GROUP, SpeedReference, measure_many, on_fixed_input


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


@dataclass
class SpecializedModel:
    """One generated sub-network, extracted, BN-recalibrated and ready on an engine."""

    arch: Arch
    classes: tuple[int, ...]
    class_names: list[str]
    mflops: float
    params: int
    predicted_ms: float | None
    engine: str
    threads: int | None
    folded: FoldedNet
    preprocess: Preprocess
    timings_ms: dict[str, float] = field(default_factory=dict)
    prediction: Prediction | None = None  # the predicted task accuracy, where the bundle carries a predictor
    calibration: Calibration | None = field(default=None, repr=False)  # images int8 engines calibrate on
    head: AdaptedHead | None = None   # a task head fitted on the device from examples (specialize(examples=))
    head_path: Path | None = None     # where that head is saved beside the bundle
    _engines: dict[int, Any] = field(default_factory=dict, repr=False)

    def _engine(self, batch: int) -> Any:
        if batch not in self._engines:
            self._engines[batch] = self.new_engine(batch)
        return self._engines[batch]

    def new_engine(self, batch: int = 1) -> Any:
        """A fresh instance of this model's engine (calibrated engines reuse its ranges)."""
        return create_engine(self.engine, self.folded, batch_size=batch, threads=self.threads,
                             calibration=self.calibration)

    def logits(self, images: np.ndarray) -> np.ndarray:
        x = self.preprocess(images)
        return self._engine(len(x)).run(x)

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Probabilities over the task's classes, columns in `self.classes` order."""
        return softmax(self.logits(images))

    def predict_classes(self, images: np.ndarray) -> np.ndarray:
        """The bundle's class id of each image's top column (an adapted head with new classes has
        no ids for them: use `predict_labels`)."""
        if any(c < 0 for c in self.classes):
            raise ValueError("this model's head has new classes, which have no class id: use predict_labels")
        return np.asarray(self.classes)[self.logits(images).argmax(1)]

    def predict_labels(self, images: np.ndarray) -> list[str]:
        """The label (class name, or a new class's name) of each image's top column."""
        return [self.class_names[i] for i in self.logits(images).argmax(1)]

    def threads_used(self, batch_size: int = 1) -> tuple[int | None, int | None]:
        """(the threads its measurements are filed under, the threads read back from the
        engine's library). The first is `threads` when the engine honoured it, what ran instead
        when it did not, None for the library default."""
        engine = self._engine(batch_size)
        read_back = getattr(engine, "threads_read_back", engine.threads)
        # the library default stays filed as the default (key t0), whatever size it has
        return (None if self.threads is None else engine.threads), read_back

    def benchmark(self, warmup: int = 10, runs: int = 50, batch_size: int = 1) -> dict[str, Any]:
        """Latency of the network alone (preprocessing excluded) on a fixed random batch."""
        return benchmark_many([self], warmup=warmup, runs=runs, batch_size=batch_size)[0]

    def summary(self) -> dict[str, Any]:
        out = {"arch": self.arch.to_dict(), "classes": list(self.classes), "labels": list(self.class_names),
               "mflops": self.mflops, "params": self.params, "predicted_ms": self.predicted_ms,
               "engine": self.engine, "threads": self.threads, "timings_ms": self.timings_ms}
        if self.head is not None:
            out["head"] = {**self.head.summary(), "path": str(self.head_path) if self.head_path else None}
        return out


def timed_call(m: SpecializedModel, batch_size: int = 1) -> Callable[[], Any]:
    """The model's engine on a fixed random batch (preprocessing excluded): what is timed."""
    return on_fixed_input(m._engine(batch_size), m.folded.input_shape, batch_size)


ENGINE_INSTANCES = 2
"""Engine instances timed per network in a bench; the fastest counts. On the 2-core VM of
the quick start about 1 in 12 TFLite instances of a digits network ran 10-35 % slower than
its twins for its whole life, while its group's speed reference ran at full speed: a
per-instance penalty, not a slow stretch. It made a calibrated model miss such rows by up
to 27 %. Two instances per network make a network's figure its own, not its instance's."""


def instance_calls(m: SpecializedModel, batch_size: int = 1, instances: int = ENGINE_INSTANCES
                   ) -> list[Callable[[], Any]]:
    """The model's engine and `instances - 1` fresh ones, each on the fixed batch. ExecuTorch
    gets one: a second instance would lower the network again (seconds)."""
    fns = [timed_call(m, batch_size)]
    if not engine_spec(m.engine).slow_build:
        for _ in range(instances - 1):
            engine = m.new_engine(batch_size)
            fns.append(on_fixed_input(engine, m.folded.input_shape, batch_size))
    return fns


def benchmark_many(models: Sequence[SpecializedModel], warmup: int = 10, runs: int = 50, batch_size: int = 1,
                   reference: SpeedReference | None = None, instances: int = ENGINE_INSTANCES) -> list[dict[str, Any]]:
    """Latency of several networks under one protocol: in groups of INTERLEAVE_GROUP, their
    timed samples interleaved (runtime/timing.py), so every network of a group meets the same
    machine states; with a `reference`, a group met in a slow stretch is retimed. Each network
    runs as `instances` engine instances and its figures are the fastest instance's."""
    stats: list[dict[str, Any]] = []
    for start in range(0, len(models), INTERLEAVE_GROUP):
        calls = [instance_calls(m, batch_size, instances) for m in models[start:start + INTERLEAVE_GROUP]]
        fns = [fn for per_model in calls for fn in per_model]
        measured = (reference.measure(fns, warmup=warmup, runs=runs) if reference is not None
                    else measure_many(fns, warmup=warmup, runs=runs))
        at = 0
        for per_model in calls:
            mine = measured[at:at + len(per_model)]
            at += len(per_model)
            best = min(mine, key=lambda st: st["latency_ms"])
            stats.append({**best, "instances": len(mine), "instance_latency_ms": [st["latency_ms"] for st in mine]})
    out = []
    for m, st in zip(models, stats):
        used, read_back = m.threads_used(batch_size)
        out.append({**st, "engine": m.engine, "threads": used, "threads_requested": m.threads,
                    "batch_size": batch_size, "predicted_ms": m.predicted_ms,
                    "environment": describe(used, read_back)})
    return out
