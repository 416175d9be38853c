"""The README's first command, timed from scratch: `edge_eas quickstart --out DIR` in a fresh
directory (and a fresh EDGE_EAS_HOME), then its report's headline figures and plots saved as
benchmarks/results/quickstart.json and quickstart_*.png for the README.

    python benchmarks/quickstart.py [--out /tmp/qs-bench]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_allow_dirty, RESULTS, require_clean_tree, save_result  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/edge-eas-quickstart-bench"))
    add_allow_dirty(ap)
    args = ap.parse_args()
    require_clean_tree(args.allow_dirty)
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    env = {**os.environ, "EDGE_EAS_HOME": str(args.out / "home")}
    cmd = ["edge_eas", "quickstart", "--out", str(args.out / "qs")]
    start = time.perf_counter()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if res.returncode != 0:
        sys.exit(f"quickstart failed: {res.stderr.strip().splitlines()[-1:]}")
    report = json.loads((args.out / "qs" / "report.json").read_text())
    plots = []
    for p in report["plots"]:
        dest = RESULTS / f"quickstart_{Path(p).name}"
        shutil.copyfile(args.out / "qs" / Path(p).name if not Path(p).is_absolute() else p, dest)
        plots.append(dest.name)
    cal = report["calibration"]
    save_result("quickstart", {
        "quickstart_command": " ".join(cmd[:3]) + " DIR",
        "wall_seconds": round(wall, 1), "reported_seconds": round(report["seconds"], 1),
        "engine": report["engine"], "scenarios": report["scenarios"],
        "mflops_within_budget": report["mflops_budgets"]["within_budget"],
        "mean_task_accuracy": report["mflops_budgets"]["mean_task_accuracy"],
        "latency_model_held_out": {"fit_n": cal["held_out"]["fit_n"], "n": cal["held_out"]["after"]["n"],
                                   "within_10pct_before": cal["held_out"]["before"]["within_10pct"],
                                   "within_10pct_after": cal["held_out"]["after"]["within_10pct"],
                                   "mape_after": cal["held_out"]["after"]["mape"]},
        "ms_predicted_within_budget": report["ms_budgets"]["predicted_within_budget"],
        "ms_measured_within_budget": report["ms_budgets"]["measured_within_budget"],
        "plots": plots}, allow_dirty=args.allow_dirty)


if __name__ == "__main__":
    main()
