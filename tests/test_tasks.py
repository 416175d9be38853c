import numpy as np
import pytest
import torch

from edge_eas.net.tasks import Task, TaskSampler, parse_classes, task_mask
from edge_eas.host.train import MASKED_LOGIT, masked_cross_entropy


def test_task_is_sorted_and_validated() -> None:
    assert Task.create([7, 1, 4], 10).classes == (1, 4, 7)
    with pytest.raises(ValueError, match="out of range"):
        Task.create([1, 10], 10)
    with pytest.raises(ValueError, match="more than once"):
        Task.create([1, 1], 10)
    with pytest.raises(ValueError, match="empty"):
        Task.create([], 10)
    with pytest.raises(ValueError, match="out of range"):
        Task.create([-1], 10)


def test_parse_classes() -> None:
    assert parse_classes("1, 4,7") == [1, 4, 7]
    with pytest.raises(ValueError, match="not an integer"):
        parse_classes("1,x")


def test_task_dropout_masks_contain_label_and_have_sampled_sizes() -> None:
    sampler = TaskSampler(10, 2, 5, full_prob=0.0)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, size=2000)
    masks = sampler.masks_containing(labels, rng)
    assert masks[np.arange(2000), labels].all()
    sizes = masks.sum(1)
    assert sizes.min() == 2 and sizes.max() == 5
    assert set(np.unique(sizes)) == {2, 3, 4, 5}
    full = TaskSampler(10, 2, 5, full_prob=1.0).masks_containing(labels, rng)
    assert full.all()


def test_masked_cross_entropy_ignores_dropped_classes() -> None:
    logits = torch.tensor([[2.0, 0.5, 9.0, -1.0]])
    mask = torch.tensor([[True, True, False, False]])
    y = torch.tensor([0])
    got = masked_cross_entropy(logits.masked_fill(~mask, MASKED_LOGIT), y, mask, smoothing=0.1)
    sub = logits[:, :2]
    want = torch.nn.functional.cross_entropy(sub, y, label_smoothing=0.1)
    assert torch.allclose(got, want, atol=1e-6)
    assert task_mask([0, 1], 4).tolist() == [True, True, False, False]


FASHION_GROUPS = ((0, 2, 4, 6), (5, 7, 9), (1, 3, 8))


def test_in_group_tasks_stay_inside_one_superclass() -> None:
    rng = np.random.default_rng(0)
    sampler = TaskSampler(10, 2, 5, groups=FASHION_GROUPS, in_group_prob=1.0)
    for _ in range(200):
        t = sampler.sample(rng)
        assert any(set(t.classes) <= set(g) for g in FASHION_GROUPS) and 2 <= len(t) <= 4
    labels = rng.integers(0, 10, size=2000)
    masks = sampler.masks_containing(labels, rng)
    assert masks[np.arange(2000), labels].all()
    for lab, m in zip(labels, masks):
        group = next(g for g in FASHION_GROUPS if lab in g)
        assert set(np.flatnonzero(m)) <= set(group) and m.sum() >= 2


def test_in_group_ratio_is_honoured() -> None:
    rng = np.random.default_rng(1)
    sampler = TaskSampler(10, 2, 5, groups=FASHION_GROUPS, in_group_prob=0.5)
    tasks = [set(sampler.sample(rng).classes) for _ in range(4000)]
    inside = [any(t <= set(g) for g in FASHION_GROUPS) for t in tasks]
    # random 2-5-class tasks fall inside a group by chance ~10 % of the time: 0.5 + 0.5 * 0.1
    assert 0.5 < float(np.mean(inside)) < 0.62
    labels = rng.integers(0, 10, size=4000)
    masks = sampler.masks_containing(labels, rng)
    within = [set(np.flatnonzero(m)) <= set(next(g for g in FASHION_GROUPS if lab in g))
              for lab, m in zip(labels, masks)]
    assert 0.5 < float(np.mean(within)) < 0.62


def test_groups_must_be_disjoint_and_in_range() -> None:
    with pytest.raises(ValueError, match="disjoint"):
        TaskSampler(10, groups=((0, 1), (1, 2)), in_group_prob=0.5)
    with pytest.raises(ValueError, match="disjoint"):
        TaskSampler(4, groups=((0, 9),), in_group_prob=0.5)


def _teacher_step_loss(tmp_path, teacher_all_classes: bool) -> tuple[float, float, float]:
    """One supernet step on digits: the loss it reports for the largest, and that network's
    full-class and task-masked cross-entropy on the same batch, computed before the step."""
    import copy

    import torch

    from edge_eas.host.train import TrainConfig, Trainer, masked
    cfg = TrainConfig(epochs=1, batch_size=32, random_subnets=0, task_full_prob=0.0, label_smoothing=0.0,
                      teacher_all_classes=teacher_all_classes)
    trainer = Trainer(cfg, tmp_path / f"run-{teacher_all_classes}")
    idx = trainer.epoch_indices()[0]
    rng = copy.deepcopy(trainer.data_rng)
    x, y, mask = trainer._batch(idx)
    trainer.data_rng = rng  # the step draws the same augmentation and the same tasks
    with torch.no_grad():
        raw = trainer._forward(x, trainer.space.largest())
    full = masked_cross_entropy(masked(raw, None), y, None).item()
    task = masked_cross_entropy(masked(raw, mask), y, mask).item()
    return trainer.train_step(idx)["loss"], full, task


def test_teacher_learns_every_class_or_only_the_task(tmp_path) -> None:
    reported, full, task = _teacher_step_loss(tmp_path, True)
    assert task < full - 1e-3  # tasks of 2-5 of 10 classes: the masked loss is the smaller one
    assert abs(reported - full) < 1e-4
    reported, full, task = _teacher_step_loss(tmp_path, False)
    assert abs(reported - task) < 1e-4
