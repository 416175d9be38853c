"""`edge_eas export-subnet`: one generated sub-network as a standalone .pte (ExecuTorch) or
.tflite file, for devices that run a native runtime but not edge_eas itself."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..console import emit_json
from ..tasks import Task, parse_classes
from ..requirements import HOST, Need, modules, tflite_builder


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", type=Path, metavar="RUN")
    p.add_argument("--classes", required=True, help="task: comma-separated class ids")
    budget = p.add_mutually_exclusive_group(required=True)
    budget.add_argument("--budget-mflops", type=float)
    budget.add_argument("--budget-params", type=float)
    p.add_argument("--format", required=True, choices=["pte", "tflite"])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--batch-size", type=int, default=1, help="static batch size of the exported graph")


def requires(args: argparse.Namespace) -> list[Need]:
    need = modules(*HOST, why="extracting the sub-network")
    if args.format == "pte":
        return need + modules("torch", "executorch", why="writing a .pte")
    return need + tflite_builder("writing a .tflite")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from .. import generator as G
    from ..fileio import atomic_write_bytes
    from ..cost.flops import macs, params
    from ..data import load_dataset
    from ..evaluate import TaskEvaluator
    from ..rundir import RunDir, load_supernet
    from ..runtime.folded import fold_bn
    from ..supernet import recalibrate_bn

    if args.batch_size < 1:
        raise ValueError("--batch-size must be >= 1")
    gen = G.load(args.run_dir)
    task = Task.create(parse_classes(args.classes), gen.num_classes)
    kind, budget = ("mflops", args.budget_mflops) if args.budget_mflops is not None else ("params", args.budget_params)
    arch = gen.generate([list(task.classes)], budgets=[budget], kind=kind)[0]
    net, meta = load_supernet(RunDir(args.run_dir))
    sub = net.extract(arch, classes=list(task.classes))
    if not meta.get("untrained"):  # an `edge_eas init` run has no data; its initial statistics stay
        data = load_dataset(meta["data"], resolution=net.space.resolution, seed=meta["config"]["seed"])
        recalibrate_bn(sub, TaskEvaluator(net, data).calibration_batches())  # all-class BN statistics
    weights = {k: v.detach().cpu().numpy() for k, v in sub.state_dict().items() if not k.endswith("num_batches_tracked")}
    folded = fold_bn(weights, net.space, arch)
    if args.format == "pte":
        from ..runtime.engines.executorch_engine import export_pte
        export_pte(folded, args.out, batch_size=args.batch_size)
    else:
        from ..runtime.engines.tflite_engine import build_tflite
        atomic_write_bytes(args.out, build_tflite(folded, args.batch_size))
    doc = {"out": str(args.out), "format": args.format, "classes": list(task.classes), "arch": arch.to_dict(),
           "mflops": macs(net.space, arch, len(task.classes)) / 1e6, "params": params(net.space, arch, len(task.classes)),
           "input": [args.batch_size, *net.space.input_shape], "preprocess": meta["preprocess"],
           "bytes": args.out.stat().st_size}
    if args.json:
        emit_json(doc)
    else:
        print(f"wrote {args.out} ({doc['bytes'] / 1024:.1f} KiB, {args.format}): arch {arch.to_json()}, "
              f"{doc['mflops']:.3f} MFLOPs; input {doc['input']} float32 normalised with mean "
              f"{np.round(meta['preprocess']['mean'], 4).tolist()} std {np.round(meta['preprocess']['std'], 4).tolist()}")
    return 0
