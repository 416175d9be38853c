"""`edge_eas specialize`: the generator's arch for one task and budget, in one forward pass."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from edge_eas.common.console import emit_json
from edge_eas.net.tasks import Task, parse_classes
from edge_eas.common.requirements import HOST, Need, modules


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", type=Path, metavar="RUN_DIR_OR_BUNDLE")
    p.add_argument("--classes", required=True, help="task: comma-separated class ids, e.g. 0,3,7")
    budget = p.add_mutually_exclusive_group(required=True)
    budget.add_argument("--budget-mflops", type=float, help="budget in millions of MACs")
    budget.add_argument("--budget-params", type=float, help="budget in parameters")
    budget.add_argument("--budget-ms", type=float, help="latency budget on --target (needs a calibrated model)")
    p.add_argument("--target", help="device whose latency model turns ms budgets into archs (with --budget-ms)")
    p.add_argument("--engine", help="engine of the latency model (default: the target's)")
    p.add_argument("--threads", type=int, help="threads of the latency model (default: the target's)")
    p.add_argument("--no-eval", action="store_true", help="skip the task-accuracy evaluation")


def requires(args: argparse.Namespace) -> list[Need]:
    """A bundle specialises with numpy alone (as on a device); a run directory needs the host tools."""
    return [] if args.source.is_file() else modules(*HOST, why="specialising from a run directory")


def run(args: argparse.Namespace) -> int:
    from edge_eas import generator as G
    from edge_eas.cost.flops import macs, params

    gen = G.load(args.source)
    task = Task.create(parse_classes(args.classes), gen.num_classes)
    table = model = None
    if args.budget_ms is not None:
        kind, budget = "ms", args.budget_ms
        model = _latency_model(args, gen.space)
        table = model.budget_table(gen.space)  # what the budget is met against (margin included)
    elif args.budget_mflops is not None:
        kind, budget = "mflops", args.budget_mflops
    else:
        kind, budget = "params", args.budget_params
    start = time.perf_counter()
    arch = gen.generate([list(task.classes)], [budget], kind, table=table)[0]
    gen_ms = (time.perf_counter() - start) * 1000
    doc = {"classes": list(task.classes), "budget": {kind: budget}, "arch": arch.to_dict(),
           "mflops": macs(gen.space, arch, gen.num_classes) / 1e6, "params": params(gen.space, arch, gen.num_classes),
           "generation_ms": gen_ms, "accuracy": None}
    if model is not None:
        doc["predicted_ms"] = model.predict(gen.space, arch)
    doc["untrained"] = _untrained(args.source)
    if args.source.is_dir() and not args.no_eval and not doc["untrained"]:
        doc["accuracy"] = _task_accuracy(args.source, arch, task)
    if args.json:
        emit_json(doc)
        return 0
    print(f"task {doc['classes']}, budget {budget:g} {G.UNITS[kind]}")
    print(f"arch {arch.to_json()}")
    print(f"{doc['mflops']:.4f} MFLOPs, {doc['params']:,} params, generated in {gen_ms:.2f} ms")
    if "predicted_ms" in doc:
        print(f"predicted latency on {args.target}: {doc['predicted_ms']:.4f} ms")
    if doc["accuracy"] is not None:
        print(f"task accuracy {100 * doc['accuracy']:.2f}% (test split, BN recalibrated)")
    elif doc["untrained"]:
        print("untrained run (edge_eas init): no accuracy; the arch and its cost are what it is for")
    return 0


def _untrained(source: Path) -> bool:
    if source.is_dir():
        from edge_eas.host.rundir import RunDir
        return bool(RunDir(source).meta().get("untrained"))
    from edge_eas.format.bundle_reader import open_bundle
    return bool(open_bundle(source).manifest.get("untrained"))


def _task_accuracy(run_dir: Path, arch, task: Task) -> float:  # type: ignore[no-untyped-def]
    from edge_eas.data import load_dataset
    from edge_eas.host.evaluate import TaskEvaluator
    from edge_eas.host.rundir import RunDir, load_supernet

    net, meta = load_supernet(RunDir(run_dir))
    data = load_dataset(meta["data"], resolution=net.space.resolution, seed=meta["config"]["seed"])
    return TaskEvaluator(net, data).accuracy(arch, task)


def _latency_model(args: argparse.Namespace, space):  # type: ignore[no-untyped-def]
    """The target's calibrated model for this space: from the run (or bundle) first, else the
    user's model file."""
    import json

    from edge_eas.cost.latency import load_run_models, model_for, model_key
    from edge_eas.errors import UserError
    from edge_eas.common.paths import models_dir
    from edge_eas.devices.targets import load_target

    if not args.target:
        raise UserError("--budget-ms needs --target: latency depends on the device")
    target = load_target(args.target)
    engine, threads = args.engine or target.engine, args.threads or target.threads
    # "auto" is resolved on the device (TFLite when installed, else numpy): take whichever was calibrated
    engines = ("tflite", "numpy", "executorch", "torch") if engine == "auto" else (engine,)
    keys = [model_key(e, threads) for e in engines]
    sources: list[dict] = []
    if args.source.is_dir():
        sources.append(load_run_models(args.source).get(target.name, {}))
    else:
        from edge_eas.format.bundle_reader import open_bundle
        sources.append(open_bundle(args.source).manifest.get("cost_models", {}).get(target.name, {}))
    user_file = models_dir() / f"{target.name}.json"
    if user_file.is_file():
        sources.append(json.loads(user_file.read_text()))
    for key in keys:
        for models in sources:
            model = model_for(models, key, space)
            if model is not None:
                return model
    raise UserError(f"no calibrated latency model for {target.name} ({' or '.join(keys)}) and this search space: "
                    f"run `edge_eas bench --target {target.name} --calibrate` with this run's bundle first")
