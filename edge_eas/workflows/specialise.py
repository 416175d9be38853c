"""One task and budget -> one generated sub-network, from a run directory or a bundle: what
`edge_eas specialize` reports and `edge_eas export-subnet` exports. The source is opened (a
bundle verified) once. The device does the same on its own in `Runtime.specialize`; both turn
a budget into a cost table through `ArchGenerator.cost_table`."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence, Union

from edge_eas import generator as G
from edge_eas.archgen.accuracy import AccuracyPredictor, Prediction
from edge_eas.archgen.accuracy import from_bundle as accuracy_from_bundle
from edge_eas.archgen.generator import ArchGenerator, from_bundle
from edge_eas.archgen.targets import meet_target
from edge_eas.common.paths import models_file
from edge_eas.cost.latency import LatencyModel, model_key
from edge_eas.cost.latency_models import LatencyModels
from edge_eas.devices.targets import load_target
from edge_eas.errors import UserError
from edge_eas.format.bundle_reader import open_bundle
from edge_eas.host.rundir import RunDir
from edge_eas.net.budget import Budget, BudgetLike
from edge_eas.net.space import Arch, SearchSpace
from edge_eas.net.tasks import Task
from edge_eas.runtime.engines import engine_candidates

if TYPE_CHECKING:
    from edge_eas.runtime.model import SpecializedModel


@dataclass(frozen=True)
class Specialisation:
    """The generated arch for one task and budget (`latency`: the model an ms budget used)."""

    task: Task
    budget: Budget | None     # None: an accuracy target alone (`specialise_for_accuracy`)
    arch: Arch
    space: SearchSpace
    num_classes: int
    generation_ms: float
    latency: LatencyModel | None
    untrained: bool
    prediction: Prediction | None = None   # the accuracy predictor's, where one answered
    min_accuracy: float | None = None

    @property
    def target_certain(self) -> bool | None:
        """Whether the answer reaches `min_accuracy` margin included (False: the prediction
        reaches it, the margin does not - the likeliest candidate); None without a target."""
        if self.min_accuracy is None or self.prediction is None:
            return None
        return self.prediction.safe >= self.min_accuracy

    @property
    def predicted_ms(self) -> float | None:
        return self.latency.predict(self.space, self.arch) if self.latency is not None else None


class Source:
    """A run directory or a bundle, opened once: its generator, whether it is untrained
    (`edge_eas init`) and the latency models it carries per target."""

    def __init__(self, path: Path, generator: ArchGenerator, untrained: bool,
                 cost_models: Mapping[str, Any]) -> None:
        self.path, self.generator, self.untrained, self.cost_models = path, generator, untrained, cost_models
        self.space, self.num_classes = generator.space, generator.num_classes

    @classmethod
    def open(cls, path: Path) -> "Source":
        p = Path(path)
        if p.is_dir():
            generator = G.load(p)
            return cls(p, generator, bool(RunDir(p).meta().get("untrained")), LatencyModels.run_document(p))
        if p.is_file():
            bundle = open_bundle(p)
            return cls(p, from_bundle(bundle), bundle.manifest.untrained, bundle.manifest.cost_models)
        raise UserError(f"{p} is neither a run directory nor a bundle file")

    def accuracy_predictor(self) -> AccuracyPredictor:
        """The predictor `--min-accuracy` answers with: a run's (`edge_eas fit-accuracy`) or the one
        a bundle carries."""
        predictor = self.optional_predictor()
        if predictor is None:
            fix = (f"fit one with `edge_eas fit-accuracy {self.path}`" if self.path.is_dir()
                   else "run `edge_eas fit-accuracy RUN` and export the bundle again")
            raise UserError(f"{self.path} has no accuracy predictor: {fix}")
        return predictor

    def optional_predictor(self) -> AccuracyPredictor | None:
        """The run's or bundle's accuracy predictor; None where there is none (budget answers then
        carry no prediction)."""
        if self.path.is_dir():
            # lazy: safetensors and torch load only on this path
            from edge_eas.host.accuracy_fit import load_predictor
            run = RunDir(self.path)
            return load_predictor(run) if run.accuracy_meta_path.is_file() else None
        return accuracy_from_bundle(open_bundle(self.path))

    def latency_model(self, target_name: str | None, engine: str | None = None,
                      threads: int | None = None) -> LatencyModel:
        """The target's calibrated model for this space (engine and threads: the target's unless
        given): the one this run (or bundle) carries first, else the one `edge_eas calibrate`
        wrote on this host."""
        if not target_name:
            raise UserError("an ms budget needs --target: latency depends on the device")
        target = load_target(target_name)
        engine, threads = engine or target.engine, threads or target.threads
        # "auto" is resolved on the device (the best engine installed there): take whichever was calibrated
        engines = engine_candidates(engine)
        sources = [LatencyModels.from_dict(self.cost_models.get(target.name, {})),
                   LatencyModels.read(models_file(target.name))]
        for name in engines:
            for models in sources:
                model = models.for_space(self.space).get(name, threads)
                if model is not None:
                    return model
        keys = [model_key(name, threads) for name in engines]
        raise UserError(f"no calibrated latency model for {target.name} ({' or '.join(keys)}) and this search space: "
                        f"run `edge_eas bench --target {target.name} --calibrate` with this run's bundle first")


def specialise(source: Union[Path, Source], classes: Sequence[int], budget: BudgetLike, target: str | None = None,
               engine: str | None = None, threads: int | None = None) -> Specialisation:
    """The generator's arch for the task within the budget, in one forward pass plus the budget
    repair; an ms budget through `target`'s latency model (engine, threads: the target's)."""
    src = source if isinstance(source, Source) else Source.open(Path(source))
    budget = Budget.of(budget)
    task = Task.create(classes, src.num_classes)
    latency = src.latency_model(target, engine, threads) if budget.kind == "ms" else None
    table = src.generator.cost_table(budget.kind, latency)  # what the budget is met against (margin included)
    start = time.perf_counter()
    arch = src.generator.generate([list(task.classes)], [budget.value], budget.kind, table=table)[0]
    generation_ms = (time.perf_counter() - start) * 1000
    predictor = src.optional_predictor()
    prediction = predictor.predict(arch, task.classes) if predictor is not None else None
    return Specialisation(task, budget, arch, src.space, src.num_classes, generation_ms, latency, src.untrained,
                          prediction)


def specialise_for_accuracy(source: Union[Path, Source], classes: Sequence[int], min_accuracy: float,
                            budget: BudgetLike | None = None, target: str | None = None, engine: str | None = None,
                            threads: int | None = None) -> Specialisation:
    """The cheapest sub-network predicted (margin included) to reach `min_accuracy` (in [0, 1])
    on the task: cheapest in ms on `target` where it has a latency model, else in MFLOPs. With a
    budget too, the most accurate predicted one within it, which must reach the target as well.
    A target only the margin puts out of reach gets the likeliest candidate (`target_certain`
    False); one no prediction reaches raises TargetUnreachable, naming the best there is."""
    if not 0 < min_accuracy <= 1:
        raise UserError(f"--min-accuracy must be a percentage in (0, 100], got {100 * min_accuracy:g}")
    src = source if isinstance(source, Source) else Source.open(Path(source))
    task = Task.create(classes, src.num_classes)
    given = Budget.of(budget) if budget is not None else None
    kind = given.kind if given is not None else ("ms" if target else "mflops")
    latency = src.latency_model(target, engine, threads) if kind == "ms" else None
    table = src.generator.cost_table(kind, latency)
    predictor = src.accuracy_predictor()
    start = time.perf_counter()
    answer = meet_target(src.generator, predictor, task.classes, min_accuracy, kind, table,
                         given.value if given is not None else None)
    return Specialisation(task, given, answer.arch, src.space, src.num_classes, (time.perf_counter() - start) * 1000,
                          latency, src.untrained, answer.prediction, min_accuracy)


def adapt_to_examples(bundle: Path, examples: Path, budget: BudgetLike | None, target: str | None = None,
                      engine: str | None = None, threads: int | None = None, head_name: str | None = None,
                      min_accuracy: float | None = None, new_class_rule: str = "all") -> "SpecializedModel":
    """`specialize BUNDLE --examples DIR`: what the device does in `Runtime.specialize(examples=...)`,
    here on the host, with the head saved beside the bundle. An ms budget uses `target`'s latency
    model (the bundle's, then the one `edge_eas calibrate` wrote on this host)."""
    # lazy: the device runtime loads only for this command (the CLI imports every command for its parser)
    from edge_eas.runtime import Runtime
    if bundle.is_dir():
        raise UserError(f"--examples fits a head on a bundle, as a device does, and saves it beside the bundle: "
                        f"export one first (edge_eas export {bundle} --out model.eas) and pass that")
    if not bundle.is_file():
        raise UserError(f"{bundle} is neither a run directory nor a bundle file")
    chosen = Budget.of(budget) if budget is not None else None
    if chosen is None and min_accuracy is None:
        raise UserError("give a budget (--budget KIND=VALUE) or an accuracy target (--min-accuracy PERCENT)")
    spec = load_target(target) if target else None
    rt = Runtime.load(bundle, target=spec.name if spec else None)
    if spec is not None:
        rt.add_latency_models(LatencyModels.read(models_file(spec.name)))
    if chosen is not None and chosen.kind == "ms" and spec is None:
        raise UserError("an ms budget needs --target: latency depends on the device")
    try:
        return rt.specialize(budget=chosen, examples=examples, engine=engine or (spec.engine if spec else "auto"),
                             threads=threads or (spec.threads if spec else None), head_name=head_name,
                             min_accuracy=min_accuracy, new_class_rule=new_class_rule)
    except ValueError as exc:
        raise UserError(str(exc)) from None
