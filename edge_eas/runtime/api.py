"""Runtime: load a bundle, specialise it to a task and budget (or to your examples), and hand
back a SpecializedModel (runtime/model.py) ready on its engine."""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from edge_eas.cost.flops import macs, params
from edge_eas.cost.latency_models import LatencyModels
from edge_eas.net.budget import Budget, BudgetLike
from edge_eas.net.preprocess import Preprocess
from edge_eas.net.space import Arch, SearchSpace
from edge_eas.net.tasks import Task
from edge_eas.archgen.accuracy import Prediction
from edge_eas.archgen.accuracy import from_bundle as accuracy_from_bundle
from edge_eas.archgen.generator import from_bundle
from edge_eas.archgen.targets import meet_target
from edge_eas.format.bundle_reader import Bundle, open_bundle
from edge_eas.runtime.calibration_images import CalibrationLike, load_calibration
from edge_eas.runtime.engines import Calibration, engine_warning, pick_engine, split_engine
from edge_eas.runtime.model import SpecializedModel, timed_call
from edge_eas.net.folded import FoldedNet, fold_bn
from edge_eas.runtime.timing import SpeedReference
from edge_eas.runtime.recalibrate import recalibrate
from edge_eas.format.signing import KeyLike, SignatureError, verify

from edge_eas.net.slicing import slice_subnet
from edge_eas.runtime.trust import TrustError, TrustStore
from edge_eas.common.fileio import atomic_write_bytes
from edge_eas.runtime.adapt import fit_examples, mean_feature, nearest_known, task_vector
from edge_eas.runtime.adapted_head import AdaptedHead, check_name, default_name, head_path, list_heads
from edge_eas.runtime.examples import ExamplesLike, load_examples
from edge_eas.runtime.head_fit import HeadFitConfig


class Runtime:
    """A verified bundle plus its numpy generator and cost models."""

    def __init__(self, bundle: Bundle, target: str | None = None, calibration: np.ndarray | None = None) -> None:
        self.bundle = bundle
        self._user_calibration = calibration
        self._trust: TrustStore | None = None
        self._keys: list[KeyLike] | None = None
        m = bundle.manifest
        self.space = SearchSpace.from_dict(m.space)
        self.untrained = m.untrained  # an `edge_eas init` run: latency work only
        self.classes: list[str] = list(m.class_names)
        self.num_classes = len(self.classes)
        self.preprocess = Preprocess.from_dict(m.preprocess)
        self.generator = from_bundle(bundle)
        self.accuracy_predictor = accuracy_from_bundle(bundle)  # None: exported without one
        self._state: dict[str, np.ndarray] | None = None
        self._calib: np.ndarray | None = None
        models: dict[str, Any] = dict(m.cost_models)
        if target is None and len(models) == 1:
            target = next(iter(models))
        self.target = target
        self.latency_models = LatencyModels.from_dict(models.get(target, {}) if target else {})

    @classmethod
    def load(cls, path: str | Path, trusted_keys: Iterable[KeyLike] | None = None,
             target: str | None = None, calibration: CalibrationLike | None = None) -> "Runtime":
        """Open and verify the bundle (hashes; signature when trusted keys are given).
        `target` picks the device's latency models (needed for ms budgets). `calibration`:
        your own images for BN recalibration (uint8/float NCHW array, a .npy file, or a folder
        of images), needed when the bundle was exported with `--calibration-images 0`."""
        trust = None if trusted_keys is not None else TrustStore.find()
        keys = list(trusted_keys) if trusted_keys is not None else (list(trust.keys) if trust else None)
        bundle = open_bundle(path, keys, allow_unsigned=trust.allow_unsigned if trust else frozenset())
        if trust is not None:
            trust.check_bundle(bundle.signed_by is not None, bundle.sha256)
        images = load_calibration(calibration, Preprocess.from_dict(bundle.manifest.preprocess)) \
            if calibration is not None else None
        rt = cls(bundle, target, images)
        rt._trust, rt._keys = trust, keys
        return rt

    def trust_status(self) -> dict[str, Any]:
        """What vouched for the loaded bundle: reported by the agent, so bench reports record it."""
        signed = self.bundle.signed_by is not None
        return {"store": str(self._trust.path) if self._trust else None, "signed_by": self.bundle.signed_by,
                "verified": signed, "unsigned_allowed": bool(self._trust and not signed)}

    def load_latency_models(self, path: str | Path) -> None:
        """Latency models from a JSON file (as `edge_eas calibrate` writes it), checked against its
        `.sig` whenever this runtime checks bundles: under a trust store or with trusted keys an
        unsigned or tampered model is refused, never silently used to pick archs."""
        p = Path(path)
        data = p.read_bytes()
        sig_path = Path(str(p) + ".sig")
        signature = json.loads(sig_path.read_text()) if sig_path.is_file() else None
        if self._trust is not None:
            self._trust.verify_document(data, signature, f"latency model {p}")
        elif self._keys:
            try:
                verify(data, signature, self._keys)
            except SignatureError as exc:
                raise TrustError(f"refused: latency model {p}: {exc}") from None
        doc = json.loads(data)
        if not isinstance(doc, dict):
            raise ValueError(f"latency model {p}: not a latency models file (a JSON object)")
        self.add_latency_models(LatencyModels.from_dict(doc))

    def add_latency_models(self, models: LatencyModels | dict[str, Any]) -> None:
        """Latency models pushed to the device after the bundle: newer than the bundle's own
        (a models file, or engine/threads -> model dict)."""
        self.latency_models.merge(models if isinstance(models, LatencyModels) else LatencyModels.from_dict(models))

    def _calibration_images(self) -> np.ndarray:
        if self._user_calibration is not None:
            return self._user_calibration
        images, _ = self.bundle.calibration()
        if len(images) == 0:
            raise ValueError("this bundle carries no calibration images (exported with --calibration-images 0): "
                             "give your own with Runtime.load(..., calibration=IMAGES) or the agent's --calibration")
        return images

    def _calibration_input(self, images: np.ndarray) -> np.ndarray:
        if self._calib is None:
            self._calib = self.preprocess(images)
        return self._calib

    @property
    def state(self) -> dict[str, np.ndarray]:
        if self._state is None:
            self._state = self.bundle.supernet_state()
        return self._state

    def latency_model(self, engine: str, threads: int | None) -> Any:
        """The calibrated per-block latency model for this engine/threads, if there is one for
        this bundle's space (one fitted for another space is never used)."""
        return self.latency_models.for_space(self.space).get(engine, threads)

    def _pick_engine(self, engine: str) -> str:
        """What will run for `engine`: for "auto" the best one installed, for "onnxruntime" the best
        execution provider (the engines registry decides). A pinned variant that is missing
        ("onnxruntime:tensorrt" without TensorRT) runs the next one down, with a warning."""
        picked = pick_engine(engine)
        if split_engine(engine)[1] is not None and picked != engine:
            warnings.warn(engine_warning(engine, picked), stacklevel=3)
        return picked

    def speed_reference(self, engine: str = "auto", threads: int | None = None, batch_size: int = 1,
                        warmup: int = 10, runs: int = 50, hints: dict[str, float] | None = None) -> SpeedReference:
        """The smallest arch over every class on this engine, settled: the fixed network a bench
        times inside each group (runtime/timing.py). `hints`: engine -> the fastest this
        reference ran on this device before (the host keeps them in its store)."""
        m = self.specialize(classes=list(range(self.num_classes)), arch=self.space.smallest(), engine=engine,
                            threads=threads)
        ref = SpeedReference(timed_call(m, batch_size))
        ref.settle(hint_ms=(hints or {}).get(m.engine), warmup=warmup, runs=runs)
        return ref

    def _generate(self, task: Task, budget: Budget | None, engine: str, threads: int | None) -> Arch:
        if budget is None:
            raise ValueError("give exactly one budget: budget='mflops=1.5' (or 'params=2e5', 'ms=4'), or min_accuracy")
        return self.generator.generate_for(task.classes, budget, self._ms_model(budget.kind, engine, threads))

    def _ms_model(self, kind: str, engine: str, threads: int | None) -> Any:
        model = self.latency_model(engine, threads) if kind == "ms" else None
        if kind == "ms" and model is None:
            raise ValueError(f"no latency model for engine {engine!r} with {threads or 'default'} threads in "
                             f"this bundle: calibrate the target (edge_eas calibrate) or budget in MFLOPs")
        return model

    def _meet(self, task: Task, min_accuracy: float, budget: Budget | None, engine: str,
              threads: int | None) -> tuple[Arch, Prediction]:
        """The cheapest arch predicted to reach `min_accuracy` (ms where this engine has a latency
        model, else MFLOPs), or with a budget the most accurate predicted within it."""
        if self.accuracy_predictor is None:
            raise ValueError("this bundle carries no accuracy predictor: run `edge_eas fit-accuracy RUN` on the "
                             "host and export the bundle again")
        if not 0 < min_accuracy <= 1:
            raise ValueError(f"min_accuracy is a fraction in (0, 1], got {min_accuracy!r}")
        kind = budget.kind if budget is not None else ("ms" if self.latency_model(engine, threads) else "mflops")
        table = self.generator.cost_table(kind, self._ms_model(kind, engine, threads))
        answer = meet_target(self.generator, self.accuracy_predictor, task.classes, min_accuracy, kind, table,
                             budget.value if budget is not None else None)
        return answer.arch, answer.prediction

    def specialize(self, classes: Sequence[int] | None = None, budget: BudgetLike | None = None, *,
                   engine: str = "auto", threads: int | None = None, arch: Arch | None = None,
                   budget_mflops: float | None = None, budget_params: float | None = None,
                   budget_ms: float | None = None, min_accuracy: float | None = None,
                   examples: ExamplesLike | None = None, head_name: str | None = None, save_head: bool = True,
                   new_class_rule: str = "all", fit: HeadFitConfig = HeadFitConfig()) -> SpecializedModel:
        """Generate (or take) an arch for the task within the budget (a Budget, "ms=4",
        {"ms": 4}, or the older budget_mflops= / budget_params= / budget_ms=), extract it,
        recalibrate its BN on the bundle's calibration images of all classes (the distribution the
        supernet trained on), and prepare the engine. With `min_accuracy` (a fraction, e.g. 0.95)
        the arch is the cheapest the bundle's accuracy predictor says reaches it on the task,
        margin included (with a budget too: the most accurate predicted within it); the answer
        carries the prediction, and a target nothing reaches raises TargetUnreachable.

        With `examples` ({label: images} or a folder of label folders, runtime/examples.py) the
        task is the examples' labels, known classes or new ones, and its head is fitted here in
        numpy (runtime/head_fit.py); the arch's task vector covers new classes as
        `new_class_rule` says (runtime/adapt.py). The head is saved beside the bundle as
        `head_name` (default: from the labels) unless `save_head` is False; `load_head` brings
        it back after a restart."""
        if examples is not None:
            return self._adapt(examples, classes, Budget.given(budget, budget_mflops, budget_params, budget_ms),
                               engine, threads, arch, min_accuracy, head_name, save_head, new_class_rule, fit)
        if classes is None:
            raise ValueError("give the task: classes=[...] (class ids), or examples={label: images}")
        t0 = time.perf_counter()
        task = Task.create(classes, self.num_classes)
        name = self._pick_engine(engine)
        arch, prediction = self._choose(task, Budget.given(budget, budget_mflops, budget_params, budget_ms), name,
                                        threads, arch, min_accuracy)
        t1 = time.perf_counter()
        folded, calibration = self._extract(arch, task.classes)
        return self._ready(arch, task.classes, [self.classes[c] for c in task.classes], folded, calibration, name,
                           threads, prediction, {"generate": (t1 - t0) * 1000,
                                                 "extract": (time.perf_counter() - t1) * 1000})

    def _choose(self, task: Task, budget: Budget | None, engine: str, threads: int | None, arch: Arch | None,
                min_accuracy: float | None) -> tuple[Arch, Prediction | None]:
        """The arch for the task (generated, met to an accuracy target, or given) and what the
        accuracy predictor says of it."""
        prediction = None
        if arch is None and min_accuracy is not None:
            arch, prediction = self._meet(task, min_accuracy, budget, engine, threads)
        elif arch is None:
            arch = self._generate(task, budget, engine, threads)
        else:
            self.space.validate(arch)
        if prediction is None and self.accuracy_predictor is not None:  # every answer says what it should reach
            prediction = self.accuracy_predictor.predict(arch, task.classes)
        return arch, prediction

    def _extract(self, arch: Arch, classes: Sequence[int] | None) -> tuple[FoldedNet, Calibration]:
        """The arch's weights (classifier rows of `classes`; None: all), BN recalibrated, folded."""
        weights = slice_subnet(self.state, self.space, arch, classes)
        # BN statistics from the calibration images of *all* classes: the distribution the supernet
        # was trained on (task-only statistics cost ~3 pp on digits' largest arch). An untrained
        # run (edge_eas init) has no such images and keeps its initial statistics: its figures
        # are latencies, which do not depend on them.
        if self.untrained and self._user_calibration is None:
            calibration = Calibration.random(self.space.input_shape)  # int8 ranges: latency work only
        else:
            calibration = Calibration(self._calibration_input(self._calibration_images()))
            weights = recalibrate(weights, self.space, arch, calibration.images)
        return fold_bn(weights, self.space, arch), calibration

    def _ready(self, arch: Arch, classes: Sequence[int], labels: list[str], folded: FoldedNet,
               calibration: Calibration, engine: str, threads: int | None, prediction: Prediction | None,
               timings_ms: dict[str, float], head: AdaptedHead | None = None,
               saved: Path | None = None) -> SpecializedModel:
        """The model on its engine, built once (its build time is part of the answer's timings)."""
        t0 = time.perf_counter()
        n = len(labels)
        sm = SpecializedModel(arch=arch, classes=tuple(classes), class_names=labels,
                              mflops=macs(self.space, arch, n) / 1e6, params=params(self.space, arch, n),
                              predicted_ms=None, engine=engine, threads=threads, folded=folded,
                              preprocess=self.preprocess, prediction=prediction, calibration=calibration, head=head,
                              head_path=saved)
        built = sm._engine(1)
        if built.name != engine:  # a provider its library lists but could not load: filed under what ran
            warnings.warn(getattr(built, "warning", None) or f"{engine} ran as {built.name}", stacklevel=3)
            sm.engine = built.name
        model = self.latency_model(sm.engine, threads)
        sm.predicted_ms = model.predict(self.space, arch) if model else None
        sm.timings_ms = {**timings_ms, "engine_build": (time.perf_counter() - t0) * 1000}
        return sm

    def _adapt(self, source: ExamplesLike, classes: Sequence[int] | None, budget: Budget | None, engine: str,
               threads: int | None, arch: Arch | None, min_accuracy: float | None, head_name: str | None,
               save: bool, rule: str, fit: HeadFitConfig) -> SpecializedModel:
        """specialize(examples=...): every check first (nothing is written on bad input), then the
        arch for the task vector, the all-class network's features, the fit, the save."""
        t0 = time.perf_counter()
        examples = load_examples(source, self.preprocess, self.classes)
        if classes is not None:
            missing = sorted(set(int(c) for c in classes) - {c for c in examples.class_ids if c is not None})
            if missing:
                raise ValueError(f"class {missing[0]} is in classes but has no examples: an adapted task is its "
                                 f"examples' labels (drop examples= to use the shared head)")
        if min_accuracy is not None and examples.new_labels:
            raise ValueError(f"an accuracy target needs classes the bundle knows: {examples.new_labels[0]!r} is new, "
                             f"and nothing predicts accuracy on it; give a budget")
        name = check_name(head_name) if head_name is not None else default_name(examples.labels)
        target = head_path(self.bundle.path, name) if save else None
        engine_name = self._pick_engine(engine)
        t1 = time.perf_counter()
        vector = task_vector(examples, self.num_classes, rule)
        chosen, prediction = self._choose(Task.create(vector, self.num_classes), budget, engine_name, threads, arch,
                                          min_accuracy)
        folded_all, calibration = self._extract(chosen, None)
        if rule == "nearest" and examples.new_labels:
            vector = task_vector(examples, self.num_classes, rule, nearest_known(folded_all, examples))
            again, prediction = self._choose(Task.create(vector, self.num_classes), budget, engine_name, threads,
                                             arch, min_accuracy)
            if again != chosen:
                chosen = again
                folded_all, calibration = self._extract(chosen, None)
        if examples.new_labels:
            prediction = None  # the predictor knows the bundle's classes only
        t2 = time.perf_counter()
        fitted = fit_examples(folded_all, examples, mean_feature(folded_all, calibration.images), fit)
        t3 = time.perf_counter()
        head = AdaptedHead(name, examples.labels, examples.class_ids, fitted.weight, fitted.bias, chosen,
                           tuple(vector), self.bundle.sha256, examples.hashes,
                           {**fit.to_dict(), "new_class_rule": rule, "train_accuracy": fitted.train_accuracy,
                            "start_accuracy": fitted.start_accuracy, "loss": fitted.loss,
                            "examples": examples.counts(), "seconds": t3 - t2},
                           budget.to_dict() if budget is not None else None)
        if target is not None:
            atomic_write_bytes(target, head.to_bytes())
        ids = [-1 if c is None else c for c in examples.class_ids]
        return self._ready(chosen, ids, list(examples.labels), folded_all.with_classifier(fitted.weight, fitted.bias),
                           calibration, engine_name, threads, prediction,
                           {"examples": (t1 - t0) * 1000, "generate_extract": (t2 - t1) * 1000,
                            "fit": (t3 - t2) * 1000}, head, target)

    def heads(self) -> list[str]:
        """Names of the adapted heads saved beside this bundle."""
        return list_heads(self.bundle.path)

    def load_head(self, head: str | Path, *, engine: str = "auto", threads: int | None = None) -> SpecializedModel:
        """A head saved by `specialize(examples=...)` (its name, or a path) on its arch again: after
        a restart, the same model. A head fitted on another bundle is refused."""
        path = Path(head) if Path(head).suffix == ".safetensors" or Path(head).is_file() \
            else head_path(self.bundle.path, str(head))
        if not path.is_file():
            have = self.heads()
            raise ValueError(f"no adapted head {str(head)!r} beside {self.bundle.path} "
                             f"({'saved: ' + ', '.join(have) if have else 'none saved yet'})")
        loaded = AdaptedHead.from_bytes(path.read_bytes(), str(path))
        if loaded.bundle_sha256 != self.bundle.sha256:
            raise ValueError(f"{path} was fitted on bundle {loaded.bundle_sha256[:12]}, not on this one "
                             f"({self.bundle.sha256[:12]}): fit it again with specialize(examples=...)")
        self.space.validate(loaded.arch)
        t0 = time.perf_counter()
        folded, calibration = self._extract(loaded.arch, None)
        prediction = None
        if self.accuracy_predictor is not None and None not in loaded.class_ids:
            prediction = self.accuracy_predictor.predict(loaded.arch, tuple(sorted(c for c in loaded.class_ids
                                                                                   if c is not None)))
        ids = [-1 if c is None else c for c in loaded.class_ids]
        return self._ready(loaded.arch, ids, list(loaded.labels), folded.with_classifier(loaded.weight, loaded.bias),
                           calibration, self._pick_engine(engine), threads, prediction,
                           {"extract": (time.perf_counter() - t0) * 1000}, loaded, path)
