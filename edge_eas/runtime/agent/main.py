"""The device agent: `python -m edge_eas.runtime --bundle model.eas --scenarios s.json`.

Prints one JSON object per line (the dataclasses of messages.py) so the host can parse results
as they stream over SSH: a "hello" line (environment), one "measurement" (or "error") line per
scenario, and "done".
With `--heartbeat S`, "heartbeat" lines fill any silence longer than S seconds (agent/output.py),
so the host can tell a slow device from a dead link.
A scenario that fails is reported and the others continue. Exit status: 0 when every
scenario was measured, 3 when some failed, 2 on a bad invocation (bundle, scenario file).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from edge_eas import __version__
from edge_eas.net.arch import Arch
from edge_eas.net.budget import Budget
from edge_eas.runtime.agent.output import AgentOutput
from edge_eas.runtime.agent.messages import Adapted, Done, Fatal, Hello, MeasurementLine, ScenarioError
from edge_eas.runtime.engines.registry import auto_engines, engine_choices, engine_warning, split_engine
from edge_eas.runtime.timing import INTERLEAVE_GROUP


def measurement_id(bundle_sha: str, run_id: str, scenario: str, engine: str, threads: int | None, batch: int) -> str:
    """Stable across re-sends of the same result, so the host's store never duplicates it."""
    key = f"{bundle_sha}|{run_id}|{scenario}|{engine}|{threads}|{batch}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def load_scenarios(path: Path) -> list[dict[str, Any]]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read scenarios file {path}: {exc}") from None
    items = doc["scenarios"] if isinstance(doc, dict) else doc
    if not isinstance(items, list):
        raise ValueError(f"{path}: expected a list of scenarios")
    return [dict(s, id=str(s.get("id", i))) for i, s in enumerate(items)]


@dataclass(frozen=True)
class AgentSettings:
    """How every scenario of this invocation is specialised and timed (built once in main)."""

    engine: str = "auto"
    threads: int | None = None
    warmup: int = 10
    runs: int = 50
    batch_size: int = 1
    run_id: str = "adhoc"


def prepare_scenario(rt: Any, sc: dict[str, Any], settings: AgentSettings) -> Any:
    """Specialise one scenario (generate or take its arch, extract, recalibrate, build the engine);
    {"head": NAME} is a head adapted on this device before (`--examples`)."""
    if sc.get("head"):
        return rt.load_head(sc["head"], engine=settings.engine, threads=settings.threads)
    arch = Arch.from_dict(sc["arch"]) if sc.get("arch") else None
    return rt.specialize(sc["classes"], Budget.in_scenario(sc), engine=settings.engine, threads=settings.threads,
                         arch=arch, min_accuracy=sc.get("min_accuracy"))


def measurement_line(rt: Any, sc: dict[str, Any], m: Any, stats: dict[str, Any],
                     settings: AgentSettings) -> MeasurementLine:
    stats = dict(stats)
    env = stats.pop("environment")
    ran, asked = stats.pop("threads"), stats.pop("threads_requested")
    budget = Budget.in_scenario(sc)
    return MeasurementLine(
        scenario=sc["id"],
        measurement_id=measurement_id(rt.bundle.sha256, settings.run_id, sc["id"], m.engine, settings.threads,
                                      settings.batch_size),
        classes=list(m.classes),
        budget=budget.to_dict() if budget is not None else {},
        arch=m.arch.to_dict(), mflops=m.mflops, params=m.params, predicted_ms=m.predicted_ms, engine=m.engine,
        threads=ran, batch_size=settings.batch_size, stats=stats, timings_ms=m.timings_ms, environment=env,
        bundle_sha256=rt.bundle.sha256, runtime_version=__version__, threads_requested=asked,
        warnings=measurement_warnings(settings.engine, m.engine, asked, ran),
        min_accuracy=sc.get("min_accuracy"), prediction=m.prediction.to_dict() if m.prediction is not None else None)


def adapt(rt: Any, args: argparse.Namespace, settings: AgentSettings) -> Adapted:
    """`--examples DIR`: Runtime.specialize(examples=...) with the head saved beside the bundle."""
    budget = Budget.of(args.budget) if args.budget else None
    m = rt.specialize(budget=budget, examples=args.examples, engine=settings.engine, threads=settings.threads,
                      min_accuracy=args.min_accuracy, head_name=args.head_name, new_class_rule=args.new_class_rule)
    head = m.head
    return Adapted(head.name, str(m.head_path), list(head.labels), list(head.class_ids), m.arch.to_dict(),
                   list(head.task_classes), m.mflops, m.params, m.predicted_ms, head.fit, m.timings_ms,
                   rt.bundle.sha256, __version__)


def measurement_warnings(engine_asked: str, engine_ran: str, threads_asked: int | None,
                         threads_ran: int | None) -> list[str]:
    """Why a measurement is filed under another engine variant or other threads than were asked."""
    out = []
    if split_engine(engine_asked)[1] is not None and engine_ran != engine_asked:
        out.append(engine_warning(engine_asked, engine_ran))
    if threads_asked != threads_ran:
        out.append(threads_warning(engine_ran, threads_asked, threads_ran))
    return out


def threads_warning(engine: str, asked: int | None, ran: int | None) -> str:
    """Why a measurement is filed under other threads than were asked for."""
    what = f"{ran} thread{'s' * (ran != 1)}" if ran is not None else "the library default (not readable here)"
    fix = " (install threadpoolctl: the runtime extra has it)" if engine == "numpy" and ran is None else ""
    return f"{engine}: asked for {asked} threads, ran with {what}{fix}; filed under what ran"


def run_group(rt: Any, group: list[dict[str, Any]], settings: AgentSettings,
              reference: Any = None) -> list[MeasurementLine | ScenarioError]:
    """Specialise a group of scenarios, then time them interleaved; one line per scenario, in
    order. A scenario that fails is an 'error' line; the others are still measured."""
    # lazy: the agent's first line goes out before numpy and the bundle reader load (slow boards)
    from edge_eas.runtime.model import benchmark_many
    lines: dict[str, MeasurementLine | ScenarioError] = {}
    ready: list[tuple[dict[str, Any], Any]] = []
    for sc in group:
        try:
            ready.append((sc, prepare_scenario(rt, sc, settings)))
        except Exception as exc:  # one bad scenario must not lose the others' results
            lines[sc["id"]] = _error(sc, exc)

    def bench(models: list[Any]) -> list[dict[str, Any]]:
        return benchmark_many(models, warmup=settings.warmup, runs=settings.runs, batch_size=settings.batch_size,
                              reference=reference)

    try:
        stats: list[dict[str, Any] | None] = list(bench([m for _, m in ready]))
    except Exception:  # an engine failed while timing: find which, one at a time
        stats = []
        for sc, m in ready:
            try:
                stats.append(bench([m])[0])
            except Exception as exc:
                stats.append(None)
                lines[sc["id"]] = _error(sc, exc)
    for (sc, m), st in zip(ready, stats):
        if st is not None:
            lines[sc["id"]] = measurement_line(rt, sc, m, st, settings)
    return [lines[sc["id"]] for sc in group]


def _error(sc: dict[str, Any], exc: Exception) -> ScenarioError:
    return ScenarioError(sc["id"], f"{type(exc).__name__}: {exc}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m edge_eas.runtime", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", type=Path, required=True)
    p.add_argument("--scenarios", type=Path, help='JSON list of {id, classes, budget|arch|min_accuracy}, budget as '
                                                  '{"ms": 12} (or "ms=12"; the older budget_mflops|budget_params|'
                                                  'budget_ms read too), min_accuracy a fraction (with or without '
                                                  'a budget)')
    p.add_argument("--engine", default="auto", help=f"one of {', '.join(engine_choices())}, or auto: the first "
                                                   f"installed of {', '.join(auto_engines())} (the default)")
    p.add_argument("--threads", type=int)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--run-id", default="adhoc", help="host's bench run id (part of each measurement id)")
    p.add_argument("--skip", default="", help="comma-separated scenario ids already measured")
    p.add_argument("--target", help="which of the bundle's latency models to use")
    p.add_argument("--latency-models", type=Path, help="JSON latency models (default: latency_models.json beside "
                                                       "the bundle, as deploy ships them); checked against FILE.sig "
                                                       "under a trust store")
    p.add_argument("--trusted-key", type=Path, action="append", default=[], help="refuse bundles not signed by it")
    p.add_argument("--profile-blocks", action="store_true", help="micro-benchmark every block config (cost model)")
    p.add_argument("--reference-ms", action="append", default=[], metavar="ENGINE=MS", type=_engine_ms,
                   help="the fastest the speed reference ran on this device before (from the host's store): a run "
                        "that starts in a slow stretch is then retimed, not taken as the norm")
    p.add_argument("--calibration", type=Path, metavar="DIR_OR_NPY",
                   help="your own images for BN recalibration (needed when the bundle carries none)")
    p.add_argument("--examples", type=Path, metavar="DIR",
                   help="fit a task head on these labelled images (one sub-folder per label: a class name of the "
                        "bundle or a new one) within --budget or --min-accuracy, save it beside the bundle and "
                        "print an 'adapted' line")
    p.add_argument("--budget", metavar="KIND=VALUE", help="with --examples: mflops=5, params=2e5 or ms=3")
    p.add_argument("--min-accuracy", type=float, metavar="FRACTION",
                   help="with --examples of known classes only: the accuracy the task needs, e.g. 0.95")
    p.add_argument("--head-name", help="with --examples: the saved head's name (default: from the labels)")
    p.add_argument("--new-class-rule", choices=["all", "nearest"], default="all",
                   help="with --examples: the generator's task vector for new labels")
    p.add_argument("--heartbeat", type=_positive, metavar="SECONDS",
                   help="write a heartbeat line whenever nothing else was written for this long")
    return p.parse_args(argv)


def _engine_ms(text: str) -> tuple[str, float]:
    engine, sep, ms = text.partition("=")
    if not sep or not engine:
        raise argparse.ArgumentTypeError(f"expected ENGINE=MS, got {text!r}")
    return engine, _positive(ms)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    settings = AgentSettings(args.engine, args.threads, args.warmup, args.runs, args.batch_size, args.run_id)
    with AgentOutput(sys.stdout, args.heartbeat) as out:
        return _run(args, settings, out)


def _run(args: argparse.Namespace, settings: AgentSettings, out: AgentOutput) -> int:
    out.phase("loading")
    # numpy and the bundle reader load after the first sign of life (slow boards)
    # lazy: the agent's first line goes out before numpy and the bundle reader load (slow boards)
    from edge_eas.cost.latency_models import LatencyModels
    from edge_eas.runtime import Runtime
    # lazy: the agent's first line goes out before numpy and the bundle reader load (slow boards)
    from edge_eas.runtime.environment import describe
    try:
        rt = Runtime.load(args.bundle, trusted_keys=args.trusted_key or None, target=args.target,
                          calibration=args.calibration)
        shipped = LatencyModels.beside(args.bundle)  # where deploy puts the target's models
        models = args.latency_models or (shipped if shipped.is_file() else None)
        if models is not None:
            rt.load_latency_models(models)
        scenarios = load_scenarios(args.scenarios) if args.scenarios else []
    except (ValueError, OSError) as exc:
        out.emit(Fatal(str(exc)))
        print(f"edge_eas.runtime: error: {exc}", file=sys.stderr)
        return 2
    out.emit(Hello(__version__, rt.bundle.sha256, describe(settings.threads), len(scenarios), rt.trust_status(),
                   rt.untrained))
    if args.examples is not None:
        out.phase("fitting a task head")
        try:
            out.emit(adapt(rt, args, settings))
        except (ValueError, OSError) as exc:  # bad examples or budget: nothing was written
            out.emit(Fatal(str(exc)))
            print(f"edge_eas.runtime: error: {exc}", file=sys.stderr)
            return 2
    if args.profile_blocks:
        # lazy: the agent's first line goes out before numpy and the bundle reader load (slow boards)
        from edge_eas.runtime.agent.profile import profile_blocks
        out.phase("profiling blocks")
        for row in profile_blocks(rt, engine=settings.engine, threads=settings.threads, warmup=settings.warmup,
                                  runs=settings.runs, reference_hints=dict(args.reference_ms)):
            out.emit(row)
    skip = {s for s in args.skip.split(",") if s}
    todo = [sc for sc in scenarios if sc["id"] not in skip]
    failed = 0
    reference = None
    if todo:
        out.phase("timing the speed reference")
        try:
            reference = rt.speed_reference(settings.engine, settings.threads, settings.batch_size, settings.warmup,
                                           settings.runs, hints=dict(args.reference_ms))
        except Exception as exc:  # the scenarios are still measured, without regime checks
            print(f"edge_eas.runtime: warning: no speed reference ({type(exc).__name__}: {exc})", file=sys.stderr)
    for start in range(0, len(todo), INTERLEAVE_GROUP):
        group = todo[start:start + INTERLEAVE_GROUP]
        ids = [sc["id"] for sc in group]
        out.phase(f"scenarios {ids[0]}..{ids[-1]}" if len(ids) > 1 else f"scenario {ids[0]}")
        for line in run_group(rt, group, settings, reference):
            failed += isinstance(line, ScenarioError)
            out.emit(line)
    out.emit(Done(failed))
    return 3 if failed else 0
