"""What fitting a task head costs on the arm64 stand-in (Debian arm64 under qemu, over SSH), against
the same call on this host: the device agent's `--examples DIR` for 10 labels x 20 images at
1 thread (numpy), its own timing of features plus fit, and the emulation's slowdown factor.

The labels are the held-out run's classes plus its held-out ones (new to it), 20 training images
each, written as one .npy stack per label folder (the stand-in has no Pillow).

    python -m benchmarks.fewshot_arm64 --held-out-run RUN_H [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import add_allow_dirty, require_clean_tree, save_result
from benchmarks.cost_model_arm64 import agent_lines
from edge_eas.data import load_dataset
from edge_eas.devices.targets import load_target
from edge_eas.host.bundle import export_bundle
from edge_eas.host.rundir import RunDir
from edge_eas.remote.deploy import deploy
from edge_eas.remote.ssh_options import ssh_options
from edge_eas.remote.ssh_runner import SSHRunner
from edge_eas.runtime import Runtime
from tests.labs.arm64_lab import Arm64Lab

SHOTS = 20


def examples_folder(meta: dict[str, Any], out: Path) -> Path:
    """One folder per class of the data set (held-out ones under their names), 20 train images each."""
    data = load_dataset(meta["data"], seed=meta["config"]["seed"])
    x, y = data.split("train")
    rng = np.random.default_rng(0)
    for c, name in enumerate(data.class_names):
        folder = out / name.replace("/", "-")
        folder.mkdir(parents=True)
        np.save(folder / "images.npy", x[rng.permutation(np.where(y == c)[0])[:SHOTS]])
    return out


def fit_seconds(lines: list[dict[str, Any]]) -> float:
    adapted = [ln for ln in lines if ln.get("type") == "adapted"]
    if not adapted:
        raise RuntimeError(f"no adapted line from the agent: {lines[-1:]}")
    return float(adapted[0]["fit"]["seconds"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--held-out-run", type=Path, required=True)
    ap.add_argument("--repeats", type=int, default=3)
    add_allow_dirty(ap)
    args = ap.parse_args()
    require_clean_tree(args.allow_dirty)
    meta = RunDir(args.held_out_run).meta()
    with tempfile.TemporaryDirectory(prefix="eas-fewshot-arm64-") as tmp:
        root = Path(tmp)
        bundle = root / "model.eas"
        export_bundle(args.held_out_run, bundle)
        rt = Runtime.load(bundle, trusted_keys=[])
        budget = float(np.sqrt(rt.generator.cost(rt.space.smallest()) * rt.generator.cost(rt.space.largest())))
        folder = examples_folder(meta, root / "examples")
        agent = ["--examples", None, "--budget", f"mflops={budget:.4f}", "--engine", "numpy", "--threads", "1"]
        local = []
        for _ in range(args.repeats):
            argv = [sys.executable, "-m", "edge_eas.runtime", "--bundle", str(bundle),
                    *[str(folder) if a is None else a for a in agent]]
            out = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=True)
            local.append(fit_seconds([json.loads(ln) for ln in out.stdout.splitlines() if ln.startswith("{")]))
        device = []
        lab = Arm64Lab(root / "lab").start()
        try:
            target = load_target(str(lab.write_target(engine="numpy", threads=1, command_timeout=900.0)))
            opts = ssh_options(target)
            deploy(target, opts, bundle, allow_unsigned=True)  # a stand-in device, any bundle
            runner = SSHRunner(target, opts, bundle=bundle)
            session = runner.session()
            remote = session.expand(f"{runner.layout.root}/examples")
            for label_dir in sorted(folder.iterdir()):
                session.makedirs(f"{remote}/{label_dir.name}")
                session.write_bytes((label_dir / "images.npy").read_bytes(), f"{remote}/{label_dir.name}/images.npy")
            for _ in range(args.repeats):
                t0 = time.monotonic()
                device.append(fit_seconds(agent_lines(runner, [remote if a is None else a for a in agent])))
                print(f"arm64 stand-in: fit {device[-1]:.2f} s (agent call {time.monotonic() - t0:.0f} s)", flush=True)
            runner.close()
        finally:
            lab.close()
    result = {"held_out_run": str(args.held_out_run), "labels": len(rt.classes) + len(meta["config"]["hold_out_classes"]),
              "shots": SHOTS, "threads": 1, "engine": "numpy", "budget_mflops": budget, "repeats": args.repeats,
              "what": "the agent's own timing of features (examples and calibration images) plus the head fit",
              "local_seconds": local, "arm64_seconds": device,
              "local_median_s": float(np.median(local)), "arm64_median_s": float(np.median(device)),
              "slowdown": float(np.median(device) / np.median(local))}
    print(f"fit: local {result['local_median_s']:.2f} s, arm64 stand-in {result['arm64_median_s']:.2f} s "
          f"({result['slowdown']:.1f}x)")
    save_result("fewshot_arm64", result, args.allow_dirty)


if __name__ == "__main__":
    main()
