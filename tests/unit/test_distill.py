"""Losses and confidence weights against values worked out by hand on small tensors."""

import math

import pytest
import torch
import torch.nn.functional as F

from cpfd.config import DistillConfig
from cpfd.distill import distillation_loss, example_weights, kl_to_teacher, raw_weights

# teacher logits: a confident correct row, a uniform row, a confident wrong row
T_LOGITS = torch.tensor([[2.0, 0.0], [0.0, 0.0], [0.0, 3.0]])
LABELS = torch.tensor([0, 1, 0])
SIG2 = 1 / (1 + math.exp(-2))  # softmax([2, 0])[0] = 0.880797
SIG3 = 1 / (1 + math.exp(-3))  # 0.952574


def test_confidence_true_class():
    c = raw_weights(T_LOGITS, LABELS, "true_class")
    assert c.tolist() == pytest.approx([SIG2, 0.5, 1 - SIG3], abs=1e-6)


def test_confidence_max_prob():
    c = raw_weights(T_LOGITS, LABELS, "max_prob")
    assert c.tolist() == pytest.approx([SIG2, 0.5, SIG3], abs=1e-6)


def test_confidence_entropy():
    def one_minus_norm_entropy(p):
        h = -(p * math.log(p) + (1 - p) * math.log(1 - p))
        return 1 - h / math.log(2)

    c = raw_weights(T_LOGITS, LABELS, "entropy")
    assert c.tolist() == pytest.approx([one_minus_norm_entropy(SIG2), 0.0, one_minus_norm_entropy(SIG3)], abs=1e-6)


def test_confidence_correct():
    # row 1 is a tie: argmax picks class 0, the label is 1 -> not correct
    assert raw_weights(T_LOGITS, LABELS, "correct").tolist() == [1.0, 0.0, 0.0]


def test_sharpening_and_per_scenario_normalisation():
    base = dict(method="cpfd", weighting="true_class", normalize="none")
    w1 = example_weights(T_LOGITS, LABELS, DistillConfig(**base))
    w2 = example_weights(T_LOGITS, LABELS, DistillConfig(**base, gamma=2.0))
    assert w2.tolist() == pytest.approx((w1**2).tolist(), abs=1e-6)
    mean = (SIG2 + 0.5 + 1 - SIG3) / 3
    wc = example_weights(T_LOGITS, LABELS, DistillConfig(**{**base, "normalize": "mean_clip"}))
    assert 0.5 / mean > 1  # both confident rows exceed the mean: clipped to 1
    assert wc.tolist() == pytest.approx([1.0, 1.0, (1 - SIG3) / mean], abs=1e-6)
    # mean: no clip, so the weights average exactly 1 (as much distillation in total as PFD)
    wm = example_weights(T_LOGITS, LABELS, DistillConfig(**{**base, "normalize": "mean"}))
    assert wm.tolist() == pytest.approx([SIG2 / mean, 0.5 / mean, (1 - SIG3) / mean], abs=1e-6)
    assert wm.mean().item() == pytest.approx(1.0, abs=1e-6)


def test_pfd_weights_are_one_and_none_are_zero():
    assert example_weights(T_LOGITS, LABELS, DistillConfig(method="pfd")).tolist() == [1.0, 1.0, 1.0]
    assert example_weights(T_LOGITS, LABELS, DistillConfig(method="none")).tolist() == [0.0, 0.0, 0.0]


def test_known_loss_value():
    # s = [1, 0], t = [0, 1], y = 0, T = 1, lam = 0.5, w = 1:
    # CE = log(1 + e^-1) = 0.313262; KL = (0.731059 - 0.268941) * 1 = 0.462117; L = 0.387690
    s, t, y = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]), torch.tensor([0])
    assert kl_to_teacher(s, t, 1.0).item() == pytest.approx(0.462117, abs=1e-5)
    assert distillation_loss(s, y, t, torch.ones(1), 0.5, 1.0).item() == pytest.approx(0.387690, abs=1e-5)


def test_temperature_scales_kl_by_t_squared():
    # T = 2: p_t = softmax([0, 0.5]), p_s = softmax([0.5, 0]); KL = (q - p) * 0.5 with q = sigmoid(0.5)
    s, t = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    q = 1 / (1 + math.exp(-0.5))
    expected = 4 * (q - (1 - q)) * 0.5
    assert kl_to_teacher(s, t, 2.0).item() == pytest.approx(expected, abs=1e-5)


def test_lambda_zero_is_plain_cross_entropy():
    s = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
    t = torch.randn(6, 3, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    loss = distillation_loss(s, y, t, torch.rand(6), 0.0, 2.0)
    assert loss.item() == pytest.approx(F.cross_entropy(s, y).item(), abs=1e-6)


def test_unit_weights_give_pfd():
    s = torch.randn(5, 4, generator=torch.Generator().manual_seed(2))
    t = torch.randn(5, 4, generator=torch.Generator().manual_seed(3))
    y = torch.tensor([0, 1, 2, 3, 0])
    lam, temp = 0.7, 2.0
    ce = F.cross_entropy(s, y)
    kl = F.kl_div(F.log_softmax(s / temp, -1), F.softmax(t / temp, -1), reduction="batchmean") * temp**2
    pfd = (1 - lam) * ce + lam * kl
    w = example_weights(t, y, DistillConfig(method="pfd"))
    assert distillation_loss(s, y, t, w, lam, temp).item() == pytest.approx(pfd.item(), abs=1e-5)


def test_cpfd_weights_mix_ce_and_kl_per_example():
    s = torch.randn(4, 2, generator=torch.Generator().manual_seed(4))
    t = torch.randn(4, 2, generator=torch.Generator().manual_seed(5))
    y = torch.tensor([0, 1, 1, 0])
    w = torch.tensor([0.0, 1.0, 0.25, 0.5])
    lam = 0.8
    ce = F.cross_entropy(s, y, reduction="none")
    kl = kl_to_teacher(s, t, 1.0)
    expected = ((1 - lam * w) * ce + lam * w * kl).mean()
    assert distillation_loss(s, y, t, w, lam, 1.0, "coupled").item() == pytest.approx(expected.item(), abs=1e-6)


def test_decoupled_loss_known_value():
    # s = [1, 0], t = [0, 1], y = 0, T = 1, lam = 0.5; two examples with weights 0 and 2 (mean 1):
    # CE = 0.313262 and KL = 0.462117 for both rows;
    # decoupled: mean[(1 - 0.5) * CE + 0.5 * w * KL] = 0.5 * 0.313262 + 0.5 * 1 * 0.462117 = 0.387690
    # coupled (lam*w capped at 1): row 1 = CE = 0.313262, row 2 = KL = 0.462117 -> mean 0.387690 as well,
    # so take weights 0 and 1 to tell them apart: decoupled 0.5*0.313262 + 0.5*0.5*0.462117 = 0.272160,
    # coupled mean[CE, 0.5*CE + 0.5*KL] = (0.313262 + 0.387690) / 2 = 0.350476
    s, t, y = torch.tensor([[1.0, 0.0]] * 2), torch.tensor([[0.0, 1.0]] * 2), torch.tensor([0, 0])
    assert distillation_loss(s, y, t, torch.tensor([0.0, 2.0]), 0.5, 1.0, "decoupled").item() == pytest.approx(
        0.387690, abs=1e-5
    )
    assert distillation_loss(s, y, t, torch.tensor([0.0, 1.0]), 0.5, 1.0, "decoupled").item() == pytest.approx(
        0.272160, abs=1e-5
    )
    assert distillation_loss(s, y, t, torch.tensor([0.0, 1.0]), 0.5, 1.0, "coupled").item() == pytest.approx(
        0.350476, abs=1e-5
    )


def test_coupled_weight_is_capped_so_ce_never_turns_negative():
    s, t, y = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]), torch.tensor([0])
    # lam * w = 0.7 * 3 > 1: the row is pure KD, not -1.1 * CE + 2.1 * KD
    assert distillation_loss(s, y, t, torch.tensor([3.0]), 0.7, 1.0, "coupled").item() == pytest.approx(
        0.462117, abs=1e-5
    )


def test_no_gradient_reaches_teacher_through_distillation():
    teacher = torch.nn.Linear(3, 2)
    x = torch.randn(8, 3)
    s = torch.randn(8, 2, requires_grad=True)
    y = torch.randint(0, 2, (8,))
    t_logits = teacher(x)
    w = example_weights(t_logits, y, DistillConfig(method="cpfd"))
    distillation_loss(s, y, t_logits, w, 0.9, 2.0).backward()
    assert teacher.weight.grad is None and teacher.bias.grad is None
    assert s.grad is not None and s.grad.abs().sum() > 0


def test_hint_loss_by_hand():
    from cpfd.distill import hint_loss

    projected = torch.tensor([[1.0, 2.0], [0.0, 0.0]], requires_grad=True)
    target = torch.tensor([[0.0, 0.0], [1.0, 1.0]], requires_grad=True)
    weights = torch.tensor([1.0, 0.5])
    # per example: mean of squares (1 + 4) / 2 = 2.5 and (1 + 1) / 2 = 1; weighted 2.5 and 0.5; mean 1.5
    loss = hint_loss(projected, target, weights)
    assert loss.item() == pytest.approx(1.5)
    loss.backward()
    assert target.grad is None  # the teacher's representation gets no gradient
    # d/dp of w_i * mean_j (p - t)^2 / N = w_i * 2 (p - t) / (D * N)
    assert torch.allclose(projected.grad, torch.tensor([[0.5, 1.0], [-0.25, -0.25]]))


def test_standardize_gives_zero_mean_unit_std_and_keeps_constant_columns_at_zero():
    from cpfd.distill import standardize

    h = torch.tensor([[1.0, 5.0], [3.0, 5.0], [5.0, 5.0]])
    z = standardize(h)
    assert torch.allclose(z[:, 0], torch.tensor([-1.0, 0.0, 1.0]))
    assert torch.equal(z[:, 1], torch.zeros(3))


def test_probes_that_agree_everywhere_get_a_binomial_error_not_a_zero_width_verdict():
    import numpy as np

    from cpfd.training.estimate import GainEstimate, probe_standard_error, verdict

    y = np.array([0, 1] * 50)
    same = np.zeros(100, dtype=int)
    se = probe_standard_error(y, same, same, 2)
    assert se == pytest.approx(0.1)  # 1 / sqrt(100)
    est = GainEstimate(0.0, 0.0, 0.0, 0.0, se, 0.5, 0.4, 0.4, 25, 100, 100, 50, 1.0, {})
    half = 1.96 * est.variance**0.5
    assert half > 0.1 and verdict(-half, half) == "uncertain"
    assert verdict(0.0, 0.0) == "no gain"  # what a zero error would have said
    assert probe_standard_error(y, y, same, 2) > 0.0  # different predictions: the bootstrap's own error
