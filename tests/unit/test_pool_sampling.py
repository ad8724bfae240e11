"""Pool rows in the loss and in the epochs: the distillation term alone, the pool's share of each epoch."""

from __future__ import annotations

import pytest
import torch

from cpfd.config import DistillConfig
from cpfd.data.loader import PooledSplit, epoch_rows, training_order
from cpfd.data.tensors import SplitTensors
from cpfd.distill import distillation_loss, kl_to_teacher, pool_weights


def _split(n: int, first_id: int, labelled: bool = True) -> SplitTensors:
    return SplitTensors(
        frames=torch.zeros((n, 1, 2, 2, 3), dtype=torch.uint8),
        input_ids=torch.arange(n).view(n, 1),
        attention_mask=torch.ones((n, 1), dtype=torch.int64),
        dense=torch.zeros((n, 0)),
        labels=torch.arange(n) % 2 if labelled else torch.full((n,), -1),
        video_ids=torch.arange(first_id, first_id + n),
        block_rows=8,
    )


@pytest.mark.parametrize("form", ["decoupled", "coupled"])
def test_a_pool_row_costs_only_its_weighted_distillation_term(form):
    torch.manual_seed(0)
    s, t = torch.randn(4, 3, requires_grad=True), torch.randn(4, 3)
    labels = torch.tensor([0, 2, -1, -1])
    w = torch.tensor([1.0, 0.5, 2.0, 0.25])
    loss = distillation_loss(s, labels, t, w, 0.7, 2.0, form)
    kd = kl_to_teacher(s, t, 2.0)
    ce = torch.nn.functional.cross_entropy(s[:2], labels[:2], reduction="none")
    labelled = (
        (1 - 0.7) * ce + 0.7 * w[:2] * kd[:2] if form == "decoupled" else (1 - 0.7 * w[:2]) * ce + 0.7 * w[:2] * kd[:2]
    )
    expected = (labelled.sum() + (0.7 * w[2:] * kd[2:]).sum()) / 4
    assert torch.allclose(loss, expected)
    (grad,) = torch.autograd.grad(loss, s)
    other = distillation_loss(s, torch.tensor([0, 2, -1, -1]), t, w, 0.7, 2.0, form)
    assert torch.allclose(other, loss) and grad[2:].abs().sum() > 0
    zero_kd = distillation_loss(s, labels, t, torch.tensor([1.0, 0.5, 0.0, 0.0]), 0.7, 2.0, form)
    (g0,) = torch.autograd.grad(zero_kd, s)
    assert torch.count_nonzero(g0[2:]) == 0  # a pool row with weight 0 sends no gradient at all


def test_pool_weights_follow_the_method_without_a_label():
    logits = torch.tensor([[4.0, 0.0], [0.0, 0.1], [0.0, 6.0]])
    pfd = pool_weights(logits, DistillConfig(method="pfd", pool_weight=0.5))
    assert torch.equal(pfd, torch.full((3,), 0.5))
    cpfd = pool_weights(logits, DistillConfig(method="cpfd", weighting="true_class", pool_weight=2.0))
    assert torch.isclose(cpfd.mean(), torch.tensor(2.0))  # mean-normalised over the pool, times pool_weight
    assert cpfd[1] < cpfd[0] < cpfd[2]  # the unsure row weighs least: true_class reads the teacher's own argmax
    correct = pool_weights(logits, DistillConfig(method="cpfd", weighting="correct"))
    assert torch.equal(correct, torch.ones(3))


def test_an_epoch_holds_every_labelled_row_and_its_share_of_the_pool_cycling_through_it():
    train, pool = _split(20, 0), _split(50, 1000, labelled=False)
    split = PooledSplit(train, pool, pool_per_epoch=30)
    assert epoch_rows(split) == 50 and len(split) == 70
    seen = []
    for epoch in range(5):
        order = training_order(split, seed=3, epoch=epoch, window=10_000)
        assert len(order) == 50
        assert sorted(order[order < 20].tolist()) == list(range(20))
        drawn = order[order >= 20] - 20
        assert len(drawn) == 30 and len(set(drawn.tolist())) == 30
        seen.append(set(drawn.tolist()))
    assert set().union(*seen[:2]) == set(range(50))  # two epochs of 30 cover the pool of 50
    assert torch.equal(training_order(split, 3, 1, 10_000), training_order(split, 3, 1, 10_000))  # resumable


def test_a_batch_mixes_labelled_and_pool_rows_and_says_which_is_which():
    split = PooledSplit(_split(4, 0), _split(6, 100, labelled=False), pool_per_epoch=6)
    idx = torch.tensor([5, 1, 9, 0])
    batch = split.batch(idx)
    assert batch["index"].tolist() == [1, 0, 5, 9]
    assert batch["labels"].tolist() == [1, 0, -1, -1]
    assert batch["input_ids"].view(-1).tolist() == [1, 0, 1, 5]  # rows 1, 0 of train; 1, 5 of the pool
    only_pool = split.batch(torch.tensor([7, 8]))
    assert only_pool["labels"].tolist() == [-1, -1]


def test_settings_that_cannot_run_are_refused():
    from pydantic import ValidationError

    for bad in ({"pool_weight": -1}, {"pool_ratio": 0}, {"pool_ratio": 1000}, {"pool_weight": float("nan")}):
        with pytest.raises(ValidationError, match="pool_"):
            DistillConfig(**bad)
