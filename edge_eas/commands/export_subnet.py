"""`edge_eas export-subnet`: one generated sub-network as a standalone .pte (ExecuTorch), .tflite
or .onnx file, for apps that run a native runtime but not edge_eas itself: uint8 NHWC image in,
softmax probabilities out, labels and layout in NAME.json beside it (runtime/app_io.py; inside a
.tflite as a metadata entry, inside an .onnx as the metadata property `edge_eas`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Mapping

from edge_eas import __version__
from edge_eas.commands.budget_args import add_budget_arguments, budget_of
from edge_eas.common.fileio import atomic_write_bytes
from edge_eas.common.console import emit_json
from edge_eas.errors import UserError
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
    p.add_argument("run_dir", type=Path, metavar="RUN_OR_BUNDLE",
                   help="a run directory or a bundle (with --classes and a budget: from a bundle, exactly the "
                        "network Runtime.specialize gives, and no torch needed), or with --head the bundle the head "
                        "was fitted on")
    p.add_argument("--classes", help="task: comma-separated class ids")
    p.add_argument("--head", type=Path, metavar="FILE",
                   help="an adapted head (specialize --examples / Runtime.specialize(examples=...) saved it beside "
                        "the bundle): its arch and its labels, new classes included, exactly as the runtime runs them")
    add_budget_arguments(p, required=False)
    p.add_argument("--format", required=True, choices=["pte", "tflite", "onnx"],
                   help="onnx: any batch (its first dimension is N), for onnxruntime, TensorRT and the rest")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--batch-size", type=int, default=1,
                   help="static batch size of the exported graph (pte, tflite; an .onnx takes any batch)")
    p.add_argument("--int8", action="store_true",
                   help="a full-integer graph (tflite): int8 weights per channel and int8 activations at ranges "
                        f"calibrated on {DEFAULT_CALIBRATION_PER_CLASS} training images per class, as a default bundle "
                        "carries them; uint8 image in and float probabilities out as ever")


def requires(args: argparse.Namespace) -> list[Need]:
    from_bundle = args.head is not None or args.run_dir.is_file()
    need = [] if from_bundle else modules(*HOST, why="extracting the sub-network")
    if args.format == "pte":
        return need + modules("torch", "executorch", why="writing a .pte")
    if args.format == "onnx":
        return need  # the .onnx writer is edge_eas's own, numpy only (runtime/engines/onnx_graph.py)
    return need + tflite_builder("writing a .tflite")


def run(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        raise ValueError("--batch-size must be >= 1")
    if args.int8 and args.format != "tflite":
        raise ValueError("--int8 writes a .tflite (--format tflite); ExecuTorch's and ONNX's int8 paths need "
                         "their own quantisers, not exported yet")
    if args.head is not None:
        if args.classes or budget_of(args) is not None:
            raise UserError("--head carries its arch and labels: drop --classes and the budget")
        return _write(args, *_runtime_model(args))
    if not args.classes or budget_of(args) is None:
        raise UserError("give the task and budget (--classes 0,3,7 --budget mflops=5), or --head FILE")
    if args.run_dir.is_file():  # a bundle: the device runtime's own model, no torch needed
        return _write(args, *_runtime_model(args))
    # torch, the data and the engines' builders load when the command runs, not with the CLI's parser
    # lazy: loads torch only when this command runs (the CLI imports every command for its parser)
    from edge_eas.host.evaluate import TaskEvaluator
    from edge_eas.supernet import recalibrate_bn

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
    info = {"arch": arch.to_dict(), "mflops": macs(net.space, arch, n) / 1e6, "params": params(net.space, arch, n),
            "untrained": bool(meta.get("untrained"))}
    return _write(args, folded, app, list(task.classes), [meta["class_names"][k] for k in task.classes], info, ranges)


def _runtime_model(args: argparse.Namespace) -> tuple[FoldedNet, AppIO, list[int | None], list[str], dict[str, Any],
                                                      Mapping[str, tuple[float, float]] | None]:
    """The runtime's own model from a bundle, for an adapted head (--head) or a task and budget:
    the same generation, extraction, BN statistics and head the device runs, so the file answers
    as `Runtime.specialize` does."""
    # lazy: the device runtime loads only on this path
    from edge_eas.runtime import Runtime
    if not args.run_dir.is_file():
        raise UserError(f"--head needs the bundle it was fitted on (a .eas file), not {args.run_dir}")
    rt = Runtime.load(args.run_dir)
    if args.head is not None:
        m = rt.load_head(args.head, engine="numpy")
    else:
        if budget_of(args).kind == "ms":
            raise UserError("export from a bundle with an MFLOPs or params budget (ms budgets need the device's "
                            "engine: Runtime.specialize on the device)")
        m = rt.specialize(parse_classes(args.classes), budget_of(args), engine="numpy")
    pre = rt.preprocess
    ranges = None
    if args.int8:
        # lazy: an engine module loads only when that engine is used
        from edge_eas.runtime.engines.tflite_engine import ranges_for
        ranges = ranges_for(m.folded, m.calibration)
    info = {"arch": m.arch.to_dict(), "mflops": m.mflops, "params": m.params, "untrained": rt.untrained,
            "head": m.head.summary() if m.head else None}
    ids = [None if c < 0 else c for c in m.classes]
    return m.folded, AppIO(mean=pre.mean, std=pre.std), ids, list(m.class_names), info, ranges


def _write(args: argparse.Namespace, folded: FoldedNet, app: AppIO, class_ids: list[int | None], labels: list[str],
           info: dict[str, Any], ranges: Mapping[str, tuple[float, float]] | None) -> int:
    """The standalone file and its NAME.json sidecar."""
    c, h, w = folded.input_shape
    batch = "N" if args.format == "onnx" else args.batch_size
    doc = sidecar(args.format, app, (batch, c, h, w), class_ids, labels,
                  {**info, "edge_eas_version": __version__, "precision": "int8" if args.int8 else "float32"})
    if args.format == "onnx":
        # lazy: an engine module loads only when that engine is used
        from edge_eas.runtime.engines.onnx_engine import build_onnx
        atomic_write_bytes(args.out, build_onnx(folded, app=app, metadata=sidecar_bytes(doc).decode()))
    elif args.format == "pte":
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
              "classes": class_ids, **doc}
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
