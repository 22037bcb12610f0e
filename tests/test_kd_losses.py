"""Supervised KD losses and fidelity metrics on constructed inputs with known values."""

import math

import pytest
import torch
import torch.nn.functional as F

from dpd.kd.fidelity import fidelity
from dpd.losses import available_losses, get_loss, loss_specs
from dpd.losses.supervised import scaffold_mass

SUPERVISED = {"kd_ce", "kd_kl", "hinton_kd", "hint_mse", "rkd_dist", "rkd_angle", "supcon", "reaugkd_rel", "disk_kd"}


def loss(name):
    return get_loss(name, kind="supervised")


def random_orthogonal(dim, seed):
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=torch.Generator().manual_seed(seed)))
    return q


def test_one_registry_lists_supervised_beside_policy_losses():
    assert SUPERVISED == set(available_losses("supervised"))
    assert {"mse", "kl"} <= set(available_losses("policy"))
    kinds = {spec.name: spec.kind for spec in loss_specs()}
    assert all(kinds[name] == "supervised" for name in SUPERVISED) and kinds["mse"] == "policy"


def test_identical_teacher_and_student_kl_zero_agreement_one():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 3.0, 1.0], [1.0, 1.5, -2.0]])
    assert loss("kd_kl")(logits, logits, temperature=3.0).item() == pytest.approx(0.0, abs=1e-6)
    log_probs = F.log_softmax(logits, dim=-1)
    same = fidelity(log_probs, log_probs)
    assert same.agreement == 1.0 and same.kl == pytest.approx(0.0, abs=1e-7)


def test_fidelity_counts_disagreements_and_computes_the_kl_by_hand():
    teacher = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.5, 0.5]]).log()
    student = torch.tensor([[0.6, 0.4], [0.2, 0.8], [0.3, 0.7], [0.5, 0.5]]).log()
    result = fidelity(teacher, student)
    assert result.agreement == pytest.approx(3 / 4)  # only the third row's argmax differs
    by_hand = [
        0.9 * math.log(0.9 / 0.6) + 0.1 * math.log(0.1 / 0.4),
        0.0,
        0.6 * math.log(0.6 / 0.3) + 0.4 * math.log(0.4 / 0.7),
        0.0,
    ]
    assert result.kl == pytest.approx(sum(by_hand) / 4, rel=1e-5)


def test_hinton_loss_by_hand():
    student, teacher, label = [1.0, 0.0], [2.0, 0.0], 0
    alpha, tau = 0.3, 2.0
    ce = -math.log(math.exp(1.0) / (math.exp(1.0) + 1.0))
    p_t = [math.exp(1.0) / (math.exp(1.0) + 1.0), 1.0 / (math.exp(1.0) + 1.0)]  # softmax([2, 0] / 2)
    p_s = [math.exp(0.5) / (math.exp(0.5) + 1.0), 1.0 / (math.exp(0.5) + 1.0)]  # softmax([1, 0] / 2)
    kl = sum(t * math.log(t / s) for t, s in zip(p_t, p_s))
    expected = alpha * ce + (1 - alpha) * tau**2 * kl
    value = loss("hinton_kd")(
        torch.tensor([student]), torch.tensor([teacher]), labels=torch.tensor([label]), alpha=alpha, temperature=tau
    )
    assert value.item() == pytest.approx(expected, rel=1e-6)


def test_hinton_at_its_ends_is_label_ce_or_the_soft_term():
    generator = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(5, 4, generator=generator), torch.randn(5, 4, generator=generator)
    labels = torch.tensor([0, 3, 1, 2, 0])
    hinton = loss("hinton_kd")
    assert hinton(student, teacher, labels=labels, alpha=1.0).item() == pytest.approx(
        F.cross_entropy(student, labels).item(), rel=1e-6
    )
    assert hinton(student, teacher, labels=labels, alpha=0.0, temperature=3.0).item() == pytest.approx(
        loss("kd_kl")(student, teacher, temperature=3.0).item(), rel=1e-6
    )
    one_hot = F.one_hot(labels, 4).float()
    assert loss("kd_ce")(student, one_hot).item() == pytest.approx(F.cross_entropy(student, labels).item(), rel=1e-6)


@pytest.mark.parametrize("weights, expected", [([1.0, 0.0], 0.5), ([0.0, 1.0], 0.0)])
def test_per_sample_weights_reduce_supervised_losses_like_policy_losses(weights, expected):
    student = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    teacher = torch.tensor([[0.0, 0.0], [0.0, 1.0]])  # the first sample differs, the second matches
    assert loss("hint_mse")(student, teacher, weights=torch.tensor(weights)).item() == pytest.approx(expected)


def test_teacher_receives_no_gradient():
    student = torch.randn(4, 3, requires_grad=True)
    teacher = torch.randn(4, 3, requires_grad=True)
    (loss("kd_kl")(student, teacher) + loss("rkd_dist")(student, teacher) + loss("hint_mse")(student, teacher)).backward()
    assert teacher.grad is None and student.grad is not None


def test_rkd_distance_by_hand():
    # Teacher: an equilateral triangle (all normalised distances 1). Student: three points on a line,
    # distances 1, 1, 2 with mean 4/3, normalised 0.75, 0.75, 1.5; Huber(d) = d^2 / 2 below 1.
    teacher = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.5, math.sqrt(3) / 2]])
    student = torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]])
    small, large = 0.5 * 0.25**2, 0.5 * 0.5**2
    per_point = [(small + large) / 2, small, (large + small) / 2]
    values = get_loss("rkd_dist").per_sample(student, teacher)
    assert values.tolist() == pytest.approx(per_point, rel=1e-5)
    assert loss("rkd_dist")(student, teacher).item() == pytest.approx(sum(per_point) / 3, rel=1e-5)


@pytest.mark.parametrize("name", ["rkd_dist", "rkd_angle"])
def test_rkd_invariant_to_rotation_scale_and_translation(name):
    generator = torch.Generator().manual_seed(1)
    student, teacher = torch.randn(7, 5, generator=generator), torch.randn(7, 3, generator=generator)
    base = loss(name)(student, teacher).item()
    assert base > 1e-3  # unrelated embeddings: the loss sees the difference
    moved = 3.7 * student @ random_orthogonal(5, 2) + torch.randn(1, 5, generator=generator)
    assert loss(name)(moved, teacher).item() == pytest.approx(base, rel=1e-4)
    assert loss(name)(student, 0.2 * teacher @ random_orthogonal(3, 3)).item() == pytest.approx(base, rel=1e-4)
    # A rotated, scaled copy of the teacher (in a wider space) matches it exactly.
    copy = 5.0 * torch.cat([teacher, torch.zeros(7, 2)], dim=1) @ random_orthogonal(5, 4)
    assert loss(name)(copy, teacher).item() == pytest.approx(0.0, abs=1e-5)


def test_supcon_by_hand():
    embeddings = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1])
    values = get_loss("supcon").per_sample(embeddings, embeddings, labels=labels, temperature=1.0)
    # Anchor 0: its positive (cosine 1) against one negative (cosine 0); anchor 2 has no positive.
    expected = math.log(math.e + 1.0) - 1.0
    assert values.tolist() == pytest.approx([expected, expected, 0.0], rel=1e-5)


def test_reaugkd_relational_zero_when_student_relates_like_the_teacher():
    generator = torch.Generator().manual_seed(5)
    teacher = torch.randn(6, 4, generator=generator)
    relational = loss("reaugkd_rel")
    assert relational(2.5 * teacher, teacher).item() == pytest.approx(0.0, abs=1e-6)  # cosine: scale-free
    assert relational(torch.randn(6, 4, generator=generator), teacher).item() > 0.05


def test_disk_scaffold_mass_on_teacher_top_k_and_the_true_class():
    teacher = torch.tensor([[3.0, 2.0, 1.0, 0.0]])
    assert scaffold_mass(teacher, torch.tensor([3]), top_k=2)[0].tolist() == pytest.approx([1 / 3, 1 / 3, 0.0, 1 / 3])
    assert scaffold_mass(teacher, torch.tensor([0]), top_k=2)[0].tolist() == pytest.approx([0.5, 0.5, 0.0, 0.0])


def test_disk_closed_gate_is_hinton_and_open_gate_censors():
    generator = torch.Generator().manual_seed(2)
    student = torch.randn(4, 3, generator=generator, requires_grad=True)
    teacher, labels = torch.randn(4, 3, generator=generator), torch.tensor([0, 1, 2, 0])
    closed = loss("disk_kd")(student, teacher, labels=labels, gate=torch.zeros(4), alpha=0.4, temperature=2.0)
    assert closed.item() == pytest.approx(
        loss("hinton_kd")(student, teacher, labels=labels, alpha=0.4, temperature=2.0).item(), rel=1e-5
    )
    half = loss("disk_kd")(student, teacher, labels=labels, gate=torch.full((4,), 0.5), alpha=0.4, temperature=2.0)
    assert half.item() < closed.item()  # mass on the targets lowers the loss of every example
    opened = loss("disk_kd")(student, teacher, labels=labels, gate=torch.ones(4))
    opened.backward()
    assert torch.count_nonzero(student.grad) == 0  # a censored example teaches the student nothing
