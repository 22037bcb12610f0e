import math

import pytest
import torch

from dpd.errors import UserError
from dpd.losses import PolicyOutput, available_losses, get_loss, register_loss
from dpd.losses.registry import LOSSES


def gaussian(mean, log_std):
    return PolicyOutput(torch.tensor(mean, dtype=torch.float32), torch.tensor(log_std, dtype=torch.float32))


def test_policy_losses_are_registered():
    assert {"mse", "nll", "kl", "kl_reverse"} <= set(available_losses("policy"))


def test_register_get_list_round_trip():
    @register_loss("test_abs", "policy", "absolute error, for this test")
    def absolute(student, teacher):
        return (student.mean - teacher.mean).abs().sum(dim=-1)

    try:
        spec = get_loss("test_abs")
        assert spec.kind == "policy" and "test_abs" in available_losses()
        value = spec(gaussian([[1.0], [3.0]], [[0.0], [0.0]]), gaussian([[0.0], [0.0]], [[0.0], [0.0]]))
        assert value.item() == pytest.approx(2.0)
        with pytest.raises(ValueError, match="already registered"):
            register_loss("test_abs", "policy", "again")(absolute)
    finally:
        LOSSES.remove("test_abs")


def test_unknown_loss_names_the_choices():
    with pytest.raises(UserError, match="unknown policy loss 'huber'.*kl, kl_reverse, mse, nll"):
        get_loss("huber", kind="policy")


def test_mse_of_mean_actions():
    student = gaussian([[1.0, 2.0]], [[0.0, 0.0]])
    teacher = gaussian([[0.0, 0.0]], [[5.0, 5.0]])  # the teacher's spread does not matter to MSE
    assert get_loss("mse")(student, teacher).item() == pytest.approx((1 + 4) / 2)


def test_nll_matches_the_gaussian_density():
    student = gaussian([[0.0]], [[math.log(2.0)]])
    teacher = gaussian([[1.0]], [[0.0]])
    expected = -torch.distributions.Normal(0.0, 2.0).log_prob(torch.tensor(1.0)).item()
    assert get_loss("nll")(student, teacher).item() == pytest.approx(expected, rel=1e-6)


def test_kl_closed_form_zero_and_known_values():
    p = gaussian([[0.3, -0.2]], [[0.1, -0.5]])
    assert get_loss("kl")(p, p).item() == pytest.approx(0.0, abs=1e-7)
    # KL(N(1, 1) || N(0, 2^2)) by hand: log 2 + (1 + 1) / 8 - 1/2
    student = gaussian([[0.0]], [[math.log(2.0)]])
    teacher = gaussian([[1.0]], [[0.0]])
    by_hand = math.log(2.0) + 2.0 / 8.0 - 0.5
    assert get_loss("kl")(student, teacher).item() == pytest.approx(by_hand, rel=1e-6)
    # the reverse direction: KL(N(0, 4) || N(1, 1)) = -log 2 + (4 + 1) / 2 - 1/2
    assert get_loss("kl_reverse")(student, teacher).item() == pytest.approx(-math.log(2.0) + 2.5 - 0.5, rel=1e-6)
    torch_kl = torch.distributions.kl_divergence(torch.distributions.Normal(1.0, 1.0), torch.distributions.Normal(0.0, 2.0))
    assert get_loss("kl")(student, teacher).item() == pytest.approx(torch_kl.item(), rel=1e-6)


def test_weights_select_samples_and_gradients_reach_only_the_student():
    student_mean = torch.tensor([[0.0], [0.0]], requires_grad=True)
    teacher_mean = torch.tensor([[1.0], [3.0]], requires_grad=True)
    student = PolicyOutput(student_mean, torch.zeros(2, 1))
    teacher = PolicyOutput(teacher_mean, torch.zeros(2, 1))
    loss = get_loss("mse")(student, teacher, weights=torch.tensor([0.0, 1.0]))
    assert loss.item() == pytest.approx(9.0)
    loss.backward()
    assert student_mean.grad[0].item() == 0.0
    assert student_mean.grad[1].item() == pytest.approx(2 * (0.0 - 3.0))  # d/ds of (s - 3)^2 at 0
    assert teacher_mean.grad is None


def test_weights_must_match_the_batch():
    p = gaussian([[0.0], [1.0]], [[0.0], [0.0]])
    with pytest.raises(ValueError, match="weights shape"):
        get_loss("mse")(p, p, weights=torch.ones(3))


def test_temperature_scales_the_teachers_spread():
    from dpd.losses import with_temperature

    teacher = gaussian([[0.0]], [[0.0]])
    student = gaussian([[0.0]], [[math.log(2.0)]])
    # KL(N(0, 1) || N(0, 2^2)) = log 2 + 1 / 8 - 1/2
    assert get_loss("kl")(student, teacher).item() == pytest.approx(math.log(2.0) + 1 / 8 - 0.5, rel=1e-6)
    # a teacher std of 1 at temperature 2 is the student's std of 2: nothing left to match
    assert get_loss("kl")(student, with_temperature(teacher, 2.0)).item() == pytest.approx(0.0, abs=1e-7)
    deterministic = PolicyOutput(torch.zeros(1, 1))
    assert with_temperature(deterministic, 2.0) is deterministic
