"""A run of a width- and resolution-elastic space end to end (issue #31): a 28 px grey folder
trains the `fashion` preset (sampled widths and input sides), the generator learns through its
straight-through width and resolution gates, the bundle carries cost tables with those
dimensions, and the torch-free runtime picks, within a budget, a network that runs narrower
and smaller than the native input yet takes the native image."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_eas.cost.flops import mflops
from edge_eas.net.space import Arch, SearchSpace
from edge_eas.runtime.api import Runtime

CLI = [sys.executable, "-m", "edge_eas.cli"]


@pytest.fixture(scope="module")
def elastic_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from PIL import Image
    root = tmp_path_factory.mktemp("elastic")
    rng = np.random.default_rng(0)
    for split, n in (("train", 16), ("test", 4)):
        for c, name in enumerate(("top", "middle", "bottom")):
            (root / "ds" / split / name).mkdir(parents=True)
            for i in range(n):
                img = rng.integers(0, 60, (28, 28))
                img[c * 9:(c + 1) * 9] += 150  # a class is a bright band: learnable in one epoch
                Image.fromarray(img.astype(np.uint8)).save(root / "ds" / split / name / f"{i}.png")
    run = root / "run"
    out = subprocess.run([*CLI, "train", "--data", f"folder:{root / 'ds'}", "--out", str(run), "--epochs", "1",
                          "--batch-size", "8", "--generator-steps", "8", "--no-accuracy-predictor", "--json"],
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr
    return run


def test_the_run_trains_the_elastic_space(elastic_run: Path) -> None:
    meta = json.loads((elastic_run / "run.json").read_text())
    space = SearchSpace.from_dict(meta["space"])
    assert space.name == "fashion" and space.resolutions == (16, 20, 24, 28) and space.has_widths
    gen = json.loads((elastic_run / "generator.json").read_text())
    table = np.asarray(gen["cost_tables"]["mflops"]["table"])
    assert table.shape[3:] == (3, 3, 4)  # in width, out width, resolution


def test_specialize_cli_and_runtime_meet_small_budgets_with_narrow_low_resolution_networks(
        elastic_run: Path, tmp_path: Path) -> None:
    space = SearchSpace.from_dict(json.loads((elastic_run / "run.json").read_text())["space"])
    budget = 1.5 * mflops(space, space.smallest(), 2)
    out = subprocess.run([*CLI, "specialize", str(elastic_run), "--classes", "0,2", "--budget", f"mflops={budget}",
                          "--no-eval", "--json"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    arch = Arch.from_dict(json.loads(out.stdout)["arch"])
    assert mflops(space, arch, 2) <= budget and arch.resolution < 28 and arch.widths != space.largest().widths
    bundle = tmp_path / "model.eas"
    subprocess.run([*CLI, "export", str(elastic_run), "--out", str(bundle)], check=True, capture_output=True,
                   timeout=300)
    rt = Runtime.load(bundle)
    images = np.random.default_rng(1).integers(0, 256, (5, 1, 28, 28), dtype=np.uint8)  # native size
    picked = {}
    for engine in ("numpy", "tflite"):
        sub = rt.specialize(classes=[0, 2], budget=f"mflops={budget}", engine=engine)
        assert sub.arch == arch
        picked[engine] = sub.predict(images)
    assert picked["numpy"].shape == (5, 2)
    np.testing.assert_allclose(picked["numpy"], picked["tflite"], atol=1e-4)
