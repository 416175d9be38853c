"""`edge_eas specialize`: the generator's arch for one task and budget, in one forward pass; or,
with `--min-accuracy`, the cheapest arch the accuracy predictor says is good enough for the task
(the most accurate within the budget when one is given too)."""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_eas.commands.budget_args import add_budget_arguments, budget_of
from edge_eas.common.console import emit_json, info
from edge_eas.net.tasks import Task, parse_classes
from edge_eas.common.requirements import HOST, Need, modules
from edge_eas.cost.flops import macs, params
from edge_eas.data import run_dataset
from edge_eas.host.rundir import load_supernet, RunDir
from edge_eas.errors import UserError
from edge_eas.workflows.specialise import adapt_to_examples, specialise, specialise_for_accuracy


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", type=Path, metavar="RUN_DIR_OR_BUNDLE")
    p.add_argument("--classes", help="task: comma-separated class ids, e.g. 0,3,7 (or --examples)")
    p.add_argument("--examples", type=Path, metavar="DIR",
                   help="your own labelled images, one sub-folder per label (a class name of the bundle, or a new "
                        "one): the task is those labels, and its head is fitted on them in numpy as a device does "
                        "(Runtime.specialize(examples=...)) and saved beside the bundle (BUNDLE's stem + .heads/)")
    p.add_argument("--head-name", help="name of the saved head (default: from the labels)")
    p.add_argument("--new-class-rule", choices=["all", "nearest"], default="all",
                   help="the generator's task vector for labels the bundle does not know: all classes (default), "
                        "or the known classes the shared head finds nearest to them")
    add_budget_arguments(p, required=False)
    p.add_argument("--min-accuracy", type=float, metavar="PERCENT",
                   help="the accuracy the task needs, e.g. 95: the cheapest network predicted to reach it (margin "
                        "included; ms on --target where it has a latency model, else MFLOPs). With a budget too: the "
                        "most accurate one within it. Uses the run's accuracy predictor (fitted by `edge_eas train`, or "
                        "later by `edge_eas fit-accuracy RUN`). A target the prediction reaches but its margin does not gets "
                        "the likeliest network, flagged target_certain=false")
    p.add_argument("--no-eval", action="store_true", help="skip the task-accuracy evaluation")


def requires(args: argparse.Namespace) -> list[Need]:
    """A bundle specialises with numpy alone (as on a device); a run directory needs the host tools."""
    return [] if args.source.is_file() or args.examples is not None else modules(
        *HOST, why="specialising from a run directory")


def run(args: argparse.Namespace) -> int:
    # numpy and the generator load when the command runs, not when the CLI's parser is built

    budget = budget_of(args)
    if args.examples is not None:
        if args.classes:
            raise UserError("--examples gives the task (its label folders): drop --classes")
        return _adapted(args, budget)
    if not args.classes:
        raise UserError("give the task: --classes 0,3,7 (class ids), or --examples DIR (your own labelled images)")
    classes = parse_classes(args.classes)
    if args.min_accuracy is not None:
        spec = specialise_for_accuracy(args.source, classes, args.min_accuracy / 100, budget, args.target,
                                       args.engine, args.threads)
    elif budget is None:
        raise UserError("give a budget (--budget KIND=VALUE) or an accuracy target (--min-accuracy PERCENT)")
    else:
        spec = specialise(args.source, classes, budget, args.target, args.engine, args.threads)
    arch, space, n = spec.arch, spec.space, spec.num_classes
    doc = {"classes": list(spec.task.classes), "budget": spec.budget.to_dict() if spec.budget else None,
           "arch": arch.to_dict(), "mflops": macs(space, arch, n) / 1e6, "params": params(space, arch, n),
           "generation_ms": spec.generation_ms, "accuracy": None}
    if spec.min_accuracy is not None:
        doc["min_accuracy"] = spec.min_accuracy
        doc["target_certain"] = spec.target_certain
    if spec.prediction is not None:
        doc.update(spec.prediction.to_dict())
    if spec.latency is not None:
        doc["predicted_ms"] = spec.predicted_ms
    doc["untrained"] = spec.untrained
    if args.source.is_dir() and not args.no_eval and not doc["untrained"]:
        doc["accuracy"] = _task_accuracy(args.source, arch, spec.task)
    if spec.target_certain is False:
        p = spec.prediction
        info(f"warning: {100 * spec.min_accuracy:.2f}% is within this network's prediction ({100 * p.accuracy:.2f}%) "
             f"but not its margin ({100 * p.safe:.2f}%): the likeliest network, not a certain one")
    if args.json:
        emit_json(doc)
        return 0
    wants = [f"budget {spec.budget.value:g} {spec.budget.unit}"] if spec.budget else []
    wants += [f"at least {100 * spec.min_accuracy:.2f}% accuracy"] if spec.min_accuracy is not None else []
    print(f"task {doc['classes']}, {', '.join(wants)}")
    print(f"arch {arch.to_json()}")
    print(f"{doc['mflops']:.4f} MFLOPs, {doc['params']:,} params, generated in {spec.generation_ms:.2f} ms")
    if spec.prediction is not None:
        p = spec.prediction
        print(f"predicted task accuracy {100 * p.accuracy:.2f}% (80% interval {100 * p.low:.2f}-{100 * p.high:.2f}%; "
              f"{100 * p.safe:.2f}% after the margin)")
    if "predicted_ms" in doc:
        print(f"predicted latency on {args.target}: {doc['predicted_ms']:.4f} ms")
    if doc["accuracy"] is not None:
        print(f"task accuracy {100 * doc['accuracy']:.2f}% (test split, BN recalibrated)")
    elif doc["untrained"]:
        print("untrained run (edge_eas init): no accuracy; the arch and its cost are what it is for")
    return 0


def _adapted(args: argparse.Namespace, budget) -> int:  # type: ignore[no-untyped-def]
    m = adapt_to_examples(args.source, args.examples, budget, args.target, args.engine, args.threads,
                          args.head_name, args.min_accuracy / 100 if args.min_accuracy is not None else None,
                          args.new_class_rule)
    doc = m.summary()
    if m.prediction is not None:
        doc.update(m.prediction.to_dict())
    if args.json:
        emit_json(doc)
        return 0
    head = m.head
    fit = head.fit
    new = [lab for lab, cid in zip(head.labels, head.class_ids) if cid is None]
    print(f"labels {list(head.labels)}" + (f" (new: {new})" if new else " (all known to the bundle)"))
    print(f"arch {m.arch.to_json()} for task vector {list(head.task_classes)}")
    print(f"{m.mflops:.4f} MFLOPs, {m.params:,} params" +
          (f", predicted {m.predicted_ms:.4f} ms on {args.target}" if m.predicted_ms is not None else ""))
    print(f"head fitted on {sum(fit['examples'])} examples in {1000 * fit['seconds']:.0f} ms: accuracy on them "
          f"{100 * fit['start_accuracy']:.1f}% at the start, {100 * fit['train_accuracy']:.1f}% fitted "
          f"(examples seen by the fit: not an estimate of accuracy on new images)")
    print(f"saved {m.head_path} (load it again with Runtime.load_head({head.name!r}); export it with "
          f"edge_eas export-subnet {args.source} --head {m.head_path} --format tflite --out NAME.tflite)")
    return 0


def _task_accuracy(run_dir: Path, arch, task: Task) -> float:  # type: ignore[no-untyped-def]
    # torch: only a run directory's accuracy needs it (a bundle specialises with numpy alone)
    # lazy: loads torch only when this command runs (the CLI imports every command for its parser)
    from edge_eas.host.evaluate import TaskEvaluator

    net, meta = load_supernet(RunDir(run_dir))
    data = run_dataset(meta, resolution=net.space.resolution)
    return TaskEvaluator(net, data).accuracy(arch, task)
