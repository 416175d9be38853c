"""Accuracy targets: one evaluation pass gives every task's accuracy, the predictor's numpy path
is its torch twin, its margin comes from held-out archs only, and `specialize --min-accuracy`
answers with the cheapest predicted-good-enough network, or one clear line when none is."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from edge_eas.archgen.accuracy import AccuracyPredictor, arch_features
from edge_eas.format.manifest import AccuracyMeta
from edge_eas.data import run_dataset
from edge_eas.host.accuracy_fit import PredictorNet, load_predictor
from edge_eas.host.evaluate import TaskEvaluator, task_accuracy
from edge_eas.host.rundir import RunDir, load_supernet
from edge_eas.net.space import PRESETS, Arch
from edge_eas.net.tasks import Task

CLI = [sys.executable, "-m", "edge_eas.cli"]


def test_one_pass_gives_every_tasks_accuracy(tiny_run: Path) -> None:
    net, meta = load_supernet(RunDir(tiny_run))
    data = run_dataset(meta, resolution=net.space.resolution)
    ev = TaskEvaluator(net, data, split="val")
    rng = np.random.default_rng(0)
    for arch in (net.space.smallest(), net.space.largest(), net.space.sample(rng)):
        logits, labels = ev.split_logits(arch)
        for classes in ((0, 1), (2, 5, 7), (1, 3, 4, 8, 9), tuple(range(10))):
            assert task_accuracy(logits, labels, classes) == pytest.approx(ev.accuracy(arch, Task(classes)), abs=1e-12)


def test_numpy_predictor_is_the_torch_net() -> None:
    space = PRESETS["fashion"]
    rng = np.random.default_rng(1)
    vecs = np.stack([space.encode(space.sample(rng)) for _ in range(40)])
    torch.manual_seed(0)
    net = PredictorNet(arch_features(space, vecs[:1]).shape[1] + 10, 32).eval()
    for p in net.parameters():  # spread the outputs so the comparison is not made near a flat sigmoid
        torch.nn.init.normal_(p, std=0.3)
    errors = AccuracyMeta(images_per_class=500.0, se_residual_p10=-1.3, se_residual_p90=1.1)
    pred = AccuracyPredictor(space, 10, {k: v.detach().numpy() for k, v in net.state_dict().items()}, errors)
    task = [0, 2, 4, 6]
    with torch.no_grad():
        want = torch.sigmoid(net(torch.from_numpy(pred.inputs(vecs, [task] * len(vecs))))).numpy()
    assert np.abs(pred.predict_vectors(vecs, task) - want).max() < 1e-5
    # an ensemble (members m0., m1.) averages its members' logits
    torch.manual_seed(1)
    other = PredictorNet(net.fc1.in_features, 32).eval()
    for p in other.parameters():
        torch.nn.init.normal_(p, std=0.3)
    pair = {f"m{i}.{k}": v.detach().numpy() for i, n in enumerate((net, other)) for k, v in n.state_dict().items()}
    ens = AccuracyPredictor(space, 10, pair, errors)
    x = torch.from_numpy(pred.inputs(vecs, [task] * len(vecs)))
    with torch.no_grad():
        mean_logit = ((net(x) + other(x)) / 2).numpy()
    assert np.abs(ens.predict_vectors(vecs, task) - torch.sigmoid(torch.from_numpy(mean_logit)).numpy()).max() < 1e-5
    # the margin is the held-out p90 over-prediction (1.3 standard errors) until a calibrated one is larger
    assert pred.margin == pytest.approx(1.3)
    p = pred.predict(space.decode(vecs[0]), task)
    se = np.sqrt(p.accuracy * (1 - p.accuracy) / (500 * len(task)))  # the task's 2000 validation images
    assert p.safe == pytest.approx(p.accuracy - 1.3 * se) and p.high == pytest.approx(p.accuracy + 1.1 * se)
    assert p.low <= p.safe <= p.accuracy <= p.high
    from dataclasses import replace
    wider = replace(pred, errors=replace(errors, margin_se=2.0))
    assert wider.margin == 2.0 and wider.predict(space.decode(vecs[0]), task).safe == pytest.approx(p.accuracy - 2 * se)
    # the same prediction is surer on a task with more images: a 2-class task has half the margin's pp of 8 classes
    two, eight = (float(pred.safe(np.asarray([0.9]), t)[0]) for t in ([0, 1], list(range(8))))
    assert 0.9 - two == pytest.approx(2 * (0.9 - eight))


def test_members_trained_together_learn_as_if_alone() -> None:
    """The fit trains its MLPs as one stacked model: a member must not feel the others."""
    from edge_eas.host.accuracy_fit import AccuracyFitConfig, MemberData, train_members
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(size=(300, 6)), np.eye(4)[rng.integers(0, 4, 300)]], 1).astype(np.float32)
    x[:, -4:] += np.eye(4)[rng.integers(0, 4, 300)]  # a multi-hot task part, as the fit's rows end
    y = rng.uniform(0.5, 1.0, 300)
    cfg = AccuracyFitConfig(steps=40, batch_size=32, hidden=16)
    alone = train_members([MemberData(x, y, 3)], cfg, 4)[0]
    together = train_members([MemberData(x[:200], 1 - y[:200], 1), MemberData(x, y, 3)], cfg, 4)[1]
    for k, v in alone.items():
        assert torch.allclose(v, together[k], atol=1e-5), k
    net = PredictorNet(10, 16)
    net.load_state_dict(alone)  # the state of a PredictorNet, what the numpy predictor reads


def test_inactive_blocks_do_not_change_the_features() -> None:
    space = PRESETS["fashion"]
    arch = space.smallest()
    vec = space.encode(arch)
    other = vec.copy()
    other[space.decisions.kernel_index(space.decisions.n_slots - 1)] = 1  # a slot the smallest does not run
    assert np.array_equal(arch_features(space, vec[None]), arch_features(space, other[None]))


@pytest.mark.slow
def test_fit_then_min_accuracy_from_the_cli(tiny_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    fit = subprocess.run([*CLI, "fit-accuracy", str(run), "--archs", "30", "--steps", "1500", "--json"], capture_output=True, text=True)
    assert fit.returncode == 0, fit.stderr
    doc = json.loads((run / "accuracy.json").read_text())

    # the margin is the p10 residual of the held-out archs (never fitted) on the fitted tasks, in
    # binomial standard errors of the task's validation images
    predictor = load_predictor(RunDir(run))
    net, meta = load_supernet(RunDir(run))
    data = run_dataset(meta, resolution=net.space.resolution)
    ev = TaskEvaluator(net, data, split="val")
    held = [Arch.from_dict(a) for a in doc["archs"]["held_out"]]
    assert len(held) == 6 and doc["archs"]["fit"] == 24
    res = []
    assert doc["images_per_class"] == len(ev.split_logits(held[0])[1]) / 10
    for arch in held:
        logits, labels = ev.split_logits(arch)
        vec = net.space.encode(arch)[None]
        for t in doc["tasks"]["fit"]:
            n = doc["images_per_class"] * len(t)
            p = float(np.clip(predictor.predict_vectors(vec, t)[0], 0.5 / n, 1 - 0.5 / n))
            res.append((task_accuracy(logits, labels, t) - p) / np.sqrt(p * (1 - p) / n))
    assert np.percentile(res, 10) == pytest.approx(doc["se_residual_p10"], abs=1e-3)
    # ... or the margin calibrated on answers (cross-fitted on the two halves of the images), the larger
    cal = doc["margin_calibration"]
    assert predictor.margin == pytest.approx(max(0.0, -np.percentile(res, 10), doc["margin_se"]), abs=1e-3)
    assert cal["margin_se"] == doc["margin_se"] and f"{doc['margin_se']:.1f}" in cal["rates"]
    from edge_eas.host.accuracy_margin import GRID, RATE
    assert cal["rates"][f"{doc['margin_se']:.1f}"] >= RATE or doc["margin_se"] == GRID[-1]
    assert all(rate < RATE for m, rate in cal["rates"].items() if float(m) < doc["margin_se"])
    # refitting reuses the measurements the run keeps, and gives the same predictor
    again = subprocess.run([*CLI, "fit-accuracy", str(run), "--archs", "30", "--steps", "1500", "--json"], capture_output=True, text=True)
    assert again.returncode == 0 and "reusing the measurements" in again.stderr, again.stderr
    assert json.loads((run / "accuracy.json").read_text())["weights_sha256"] == doc["weights_sha256"]

    # a reachable target: the answer names its prediction, and its safe prediction reaches the target
    target = 100 * (predictor.predict(net.space.smallest(), [0, 1]).safe - 0.001)
    ok = subprocess.run([*CLI, "specialize", str(run), "--classes", "0,1", "--min-accuracy", f"{target:.3f}",
                         "--no-eval", "--json"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    answer = json.loads(ok.stdout)
    assert answer["predicted_accuracy_safe"] >= target / 100 - 1e-9
    assert answer["predicted_interval"][0] <= answer["predicted_accuracy"] <= answer["predicted_interval"][1]
    # nothing cheaper than the smallest, which already reaches it
    assert answer["arch"] == net.space.smallest().to_dict()

    # with a budget too: the most accurate predicted within it
    both = subprocess.run([*CLI, "specialize", str(run), "--classes", "0,1", "--min-accuracy", "1",
                           "--budget", "mflops=0.5", "--no-eval", "--json"], capture_output=True, text=True)
    assert both.returncode == 0, both.stderr
    assert json.loads(both.stdout)["mflops"] <= 0.5

    # a plain budget answer reports its predicted accuracy too, on the host and on the device
    plain = subprocess.run([*CLI, "specialize", str(run), "--classes", "0,1", "--budget", "mflops=0.5", "--no-eval",
                            "--json"], capture_output=True, text=True)
    assert plain.returncode == 0, plain.stderr
    plain_doc = json.loads(plain.stdout)
    assert plain_doc["predicted_accuracy"] == pytest.approx(
        predictor.predict(Arch.from_dict(plain_doc["arch"]), [0, 1]).accuracy, abs=1e-9)

    # the pareto front of a run with a predictor shows its predictions beside the measurements
    front = subprocess.run([*CLI, "pareto", str(run), "--classes", "0,1", "--steps", "2", "--plot",
                            str(tmp_path / "front.png"), "--json"], capture_output=True, text=True)
    assert front.returncode == 0, front.stderr
    for point in json.loads(front.stdout)["points"]:
        assert point["predicted_accuracy"] == pytest.approx(
            predictor.predict(Arch.from_dict(point["arch"]), [0, 1]).accuracy, abs=1e-9)

    # the bundle carries the predictor: the device answers as the host does
    from edge_eas.host.bundle import export_bundle
    from edge_eas.runtime import Runtime
    bundle = tmp_path / "model.eas"
    export_bundle(run, bundle)
    on_device = Runtime.load(bundle).specialize([0, 1], min_accuracy=target / 100, engine="numpy")
    assert on_device.arch.to_dict() == answer["arch"]
    assert on_device.prediction is not None
    assert on_device.prediction.accuracy == pytest.approx(answer["predicted_accuracy"], abs=1e-6)
    by_budget = Runtime.load(bundle).specialize([0, 1], "mflops=0.5", engine="numpy")
    assert by_budget.arch.to_dict() == plain_doc["arch"]
    assert by_budget.prediction is not None
    assert by_budget.prediction.accuracy == pytest.approx(plain_doc["predicted_accuracy"], abs=1e-6)
    # bench scenarios may carry a target (here one every scenario's task can reach): each line
    # reports the prediction, stored with it
    from edge_eas.remote.scenarios import make_scenarios
    tasks = [sc["classes"] for sc in make_scenarios(net.space, 10, 3, 0, min_accuracy=0.5)]
    reach = 100 * min(predictor.predict(net.space.largest(), t).safe for t in tasks) - 0.01
    bench = subprocess.run([*CLI, "bench", "--target", "local", "--bundle", str(bundle), "--scenarios", "3",
                            "--min-accuracy", f"{reach:.3f}", "--runs", "30", "--warmup", "1", "--engine", "numpy",
                            "--threads", "1", "--store", str(tmp_path / "m.sqlite"), "--json"],
                           capture_output=True, text=True, env={**os.environ, "EDGE_EAS_HOME": str(tmp_path / "home")})
    report = json.loads(bench.stdout)
    rows = report["devices"][0]["rows"]
    assert len(rows) == 3 and [r["classes"] for r in rows] == tasks, bench.stderr
    for r in rows:
        assert r["min_accuracy"] == pytest.approx(round(reach, 3) / 100)
        assert r["predicted_accuracy_safe"] >= r["min_accuracy"] - 1e-9 and "budget_mflops" not in r
    from_bundle = subprocess.run([*CLI, "specialize", str(bundle), "--classes", "0,1", "--min-accuracy",
                                  f"{target:.3f}", "--json"], capture_output=True, text=True)
    assert from_bundle.returncode == 0, from_bundle.stderr
    assert json.loads(from_bundle.stdout)["arch"] == answer["arch"]

    # an unreachable target: one line, the best there is, non-zero exit, no traceback
    bad = subprocess.run([*CLI, "specialize", str(run), "--classes", "0,1", "--min-accuracy", "100", "--no-eval"],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and "the best is" in lines[0], bad.stderr

    # a target only the margin puts out of reach: the likeliest network (the highest safe
    # prediction), flagged as not certain in the JSON and in one stderr line, exit 0
    from edge_eas import generator as G
    from edge_eas.archgen.targets import candidate_vectors
    gen = G.load(run)
    cand = candidate_vectors(gen, [0, 1], "mflops", gen.cost_table("mflops", None))
    pred = predictor.predict_vectors(cand, [0, 1])
    safe = predictor.safe(pred, [0, 1])
    assert pred.max() - safe.max() > 1e-4
    between = 100 * (safe.max() + pred.max()) / 2
    likely = subprocess.run([*CLI, "specialize", str(run), "--classes", "0,1", "--min-accuracy", f"{between:.4f}",
                             "--no-eval", "--json"], capture_output=True, text=True)
    assert likely.returncode == 0, likely.stderr
    doc = json.loads(likely.stdout)
    assert doc["target_certain"] is False and doc["predicted_accuracy_safe"] == pytest.approx(safe.max(), abs=1e-6)
    assert "not a certain one" in likely.stderr and "Traceback" not in likely.stderr
    assert answer["target_certain"] is True

    neither = subprocess.run([*CLI, "specialize", str(run), "--classes", "0,1"], capture_output=True, text=True)
    assert neither.returncode != 0 and "--min-accuracy" in neither.stderr and "Traceback" not in neither.stderr
