import numpy as np
import pytest
import torch

from edge_eas.tasks import Task, TaskSampler, parse_classes, task_mask
from edge_eas.train import MASKED_LOGIT, masked_cross_entropy


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
