"""`edge_eas export-subnet`: one generated sub-network as a standalone .pte (ExecuTorch) or
.tflite file, for apps that run a native runtime but not edge_eas itself: uint8 NHWC image in,
softmax probabilities out, labels and layout in NAME.json beside it (runtime/app_io.py)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Mapping

from edge_eas import __version__
from edge_eas.commands.budget_args import add_budget_arguments, budget_of
from edge_eas.common.fileio import atomic_write_bytes
from edge_eas.common.console import emit_json
from edge_eas.net.tasks import parse_classes
from edge_eas.common.requirements import HOST, Need, modules, tflite_builder
from edge_eas.cost.flops import macs, params
from edge_eas.data import run_dataset
from edge_eas.host.rundir import load_supernet, RunDir
from edge_eas.host.bundle import DEFAULT_CALIBRATION_PER_CLASS, calibration_set
from edge_eas.net.folded import FoldedNet, fold_bn
from edge_eas.net.preprocess import Preprocess
from edge_eas.runtime.engines.base import Calibration
from edge_eas.runtime.app_io import AppIO, sidecar, sidecar_bytes
from edge_eas.workflows.specialise import specialise


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", type=Path, metavar="RUN")
    p.add_argument("--classes", required=True, help="task: comma-separated class ids")
    add_budget_arguments(p)
    p.add_argument("--format", required=True, choices=["pte", "tflite"])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--batch-size", type=int, default=1, help="static batch size of the exported graph")
    p.add_argument("--int8", action="store_true",
                   help="a full-integer graph (tflite): int8 weights per channel and int8 activations at ranges "
                        f"calibrated on {DEFAULT_CALIBRATION_PER_CLASS} training images per class, as a default bundle "
                        "carries them; uint8 image in and float probabilities out as ever")


def requires(args: argparse.Namespace) -> list[Need]:
    need = modules(*HOST, why="extracting the sub-network")
    if args.format == "pte":
        return need + modules("torch", "executorch", why="writing a .pte")
    return need + tflite_builder("writing a .tflite")


def run(args: argparse.Namespace) -> int:
    # torch, the data and the engines' builders load when the command runs, not with the CLI's parser
    # lazy: loads torch only when this command runs (the CLI imports every command for its parser)
    from edge_eas.host.evaluate import TaskEvaluator
    from edge_eas.supernet import recalibrate_bn

    if args.batch_size < 1:
        raise ValueError("--batch-size must be >= 1")
    if args.int8 and args.format != "tflite":
        raise ValueError("--int8 writes a .tflite (--format tflite); ExecuTorch's int8 path needs its own "
                         "quantiser, not exported yet")
    spec = specialise(args.run_dir, parse_classes(args.classes), budget_of(args), args.target, args.engine,
                      args.threads)
    arch, task = spec.arch, spec.task
    net, meta = load_supernet(RunDir(args.run_dir))
    sub = net.extract(arch, classes=list(task.classes))
    if not meta.get("untrained"):  # an `edge_eas init` run has no data; its initial statistics stay
        data = run_dataset(meta, resolution=net.space.resolution)
        recalibrate_bn(sub, TaskEvaluator(net, data).calibration_batches())  # all-class BN statistics
    weights = {k: v.detach().cpu().numpy() for k, v in sub.state_dict().items() if not k.endswith("num_batches_tracked")}
    folded = fold_bn(weights, net.space, arch)
    app = AppIO(mean=tuple(meta["preprocess"]["mean"]), std=tuple(meta["preprocess"]["std"]))
    ranges = _int8_ranges(folded, meta) if args.int8 else None
    n = len(task.classes)
    doc = sidecar(args.format, app, (args.batch_size, *net.space.input_shape), task.classes,
                  [meta["class_names"][k] for k in task.classes],
                  {"arch": arch.to_dict(), "mflops": macs(net.space, arch, n) / 1e6, "params": params(net.space, arch, n),
                   "untrained": bool(meta.get("untrained")), "edge_eas_version": __version__,
                   "precision": "int8" if args.int8 else "float32"})
    if args.format == "pte":
        # lazy: an engine module loads only when that engine is used
        from edge_eas.runtime.engines.executorch_engine import export_pte
        export_pte(folded, args.out, batch_size=args.batch_size, app=app)
    else:
        # lazy: an engine module loads only when that engine is used
        from edge_eas.runtime.engines.tflite_engine import build_tflite
        atomic_write_bytes(args.out, build_tflite(folded, args.batch_size, app=app, metadata=sidecar_bytes(doc),
                                                  ranges=ranges))
    side = args.out.with_suffix(".json")
    atomic_write_bytes(side, sidecar_bytes(doc))
    result = {"out": str(args.out), "sidecar": str(side), "bytes": args.out.stat().st_size,
              "classes": list(task.classes), **doc}
    if args.json:
        emit_json(result)
    else:
        shape = doc["input"]["shape"]
        print(f"wrote {args.out} ({result['bytes'] / 1024:.1f} KiB, {args.format}) and {side}: {doc['mflops']:.3f} "
              f"MFLOPs; input '{doc['input']['name']}' uint8 NHWC {shape} (raw pixels, normalised inside), output "
              f"'{doc['output']['name']}' softmax over {doc['labels']}")
    return 0


def _int8_ranges(folded: FoldedNet, meta: dict[str, Any]) -> Mapping[str, tuple[float, float]]:
    """Activation ranges on the training images a default bundle carries (one range for every
    tensor for an untrained run, whose exports are for latency only)."""
    # lazy: an engine module loads only when that engine is used
    from edge_eas.runtime.engines.tflite_engine import ranges_for
    if meta.get("untrained"):
        return ranges_for(folded, Calibration.random(folded.input_shape))
    images = calibration_set(meta, DEFAULT_CALIBRATION_PER_CLASS)["images"]
    return ranges_for(folded, Calibration(Preprocess.from_dict(meta["preprocess"])(images)))
