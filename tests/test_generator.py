"""The numpy generator: torch parity, repair always within budget, clear errors."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st

import edge_eas.generator as G
from edge_eas.cost.flops import macs, params
from edge_eas.errors import UserError
from edge_eas.generator import ArchGenerator, budget_features, generator_inputs
from edge_eas.host.generator_train import GeneratorConfig, GeneratorNet, train_generator
from edge_eas.host.rundir import RunDir
from edge_eas.net.space import SearchSpace


def _random_generator(preset: str, seed: int = 0) -> tuple[ArchGenerator, GeneratorNet]:
    space = SearchSpace.preset(preset)
    torch.manual_seed(seed)
    net = GeneratorNet(10, space.decision_sizes(), hidden=32)
    with torch.no_grad():  # the real init zeroes the last layer; random logits exercise repair
        net.fc2.weight.normal_(0, 1.0)
        net.fc2.bias.normal_(0, 1.0)
    gen = ArchGenerator(space, 10, {k: v.numpy() for k, v in net.state_dict().items()})
    return gen, net


GENS = {p: _random_generator(p) for p in ("digits", "cifar")}


@pytest.mark.parametrize("preset", ["digits", "cifar"])
def test_numpy_logits_and_argmax_equal_torch(preset: str) -> None:
    gen, net = GENS[preset]
    rng = np.random.default_rng(0)
    tasks = [sorted(rng.choice(10, size=int(rng.integers(1, 11)), replace=False).tolist()) for _ in range(64)]
    lo, hi = gen.bounds("mflops")
    budgets = rng.uniform(lo, hi, size=64)
    x = generator_inputs(gen.task_matrix(tasks), budget_features(budgets, lo, hi), "mflops")
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    got = gen.logits(x)
    assert np.abs(ref - got).max() < 1e-4
    splits = np.cumsum(gen.space.decision_sizes())[:-1]
    assert all((a.argmax(1) == b.argmax(1)).all() for a, b in zip(np.split(ref, splits, 1), np.split(got, splits, 1)))


@pytest.mark.parametrize("preset", ["digits", "cifar"])
@given(data=st.data())
def test_repair_never_exceeds_budget(preset: str, data: st.DataObject) -> None:
    gen, _ = GENS[preset]
    space = gen.space
    n = data.draw(st.integers(1, 20))
    tasks = [data.draw(st.lists(st.integers(0, 9), min_size=1, max_size=10, unique=True)) for _ in range(n)]
    lo, hi = gen.bounds("mflops")
    budgets = [data.draw(st.floats(lo, hi * 1.5)) for _ in range(n)]
    archs = gen.generate(tasks, budgets)
    for arch, b in zip(archs, budgets):
        assert space.contains(arch)
        assert macs(space, arch) / 1e6 <= b + 1e-9
    plo, phi = gen.bounds("params")
    pb = [data.draw(st.floats(plo, phi)) for _ in range(n)]
    for arch, b in zip(gen.generate(tasks, budgets=pb, kind="params"), pb):
        assert params(space, arch) <= b


def test_exact_minimum_budget_gives_smallest_arch() -> None:
    gen, _ = GENS["digits"]
    lo, _ = gen.bounds("mflops")
    assert gen.generate([[1, 2]], [lo]) == [gen.space.smallest()]


@pytest.mark.parametrize("tasks, budgets, needle", [
    ([[1, 2]], [0.01], "minimum feasible budget is 0.267"),
    ([[1, 12]], [1.0], "out of range"),
    ([[3, 3]], [1.0], "more than once"),
    ([[]], [1.0], "empty"),
    ([[1, 2]], [1.0, 2.0], "1 tasks but 2 budgets"),
    ([[1, 2]], [float("nan")], "minimum feasible budget"),
])
def test_clear_errors(tasks: list, budgets: list, needle: str) -> None:
    gen, _ = GENS["digits"]
    with pytest.raises(ValueError, match=needle):
        gen.generate(tasks, budgets)


def test_load_names_one_of_a_runs_generators(tiny_run: Path, tiny_bundle: Path, tmp_path: Path) -> None:
    """`generator.load(run, name=...)`: the task-agnostic baseline the benchmarks compare against,
    beside the task-specialised generator; a bundle ships only the latter."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    with pytest.raises(UserError, match="train-generator .* --task-agnostic"):
        G.load(run, name="generator-agnostic")
    train_generator(RunDir(run), GeneratorConfig(steps=5, scenarios_per_step=4, images_per_scenario=16,
                                                 task_agnostic=True, out_name="generator-agnostic"))
    default, named, agnostic = G.load(run), G.load(run, name="generator"), G.load(run, name="generator-agnostic")
    assert all(np.array_equal(default.weights[k], named.weights[k]) for k in default.weights)
    assert not all(np.array_equal(default.weights[k], agnostic.weights[k]) for k in default.weights)
    assert len(agnostic.generate([[1, 2], [0, 3, 7]], [1.0, 2.0])) == 2
    with pytest.raises(UserError, match="only the task-specialised generator"):
        G.load(tiny_bundle, name="generator-agnostic")
