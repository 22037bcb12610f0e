"""Policy distillation losses between diagonal Gaussian action distributions.

Student and teacher outputs are ``GaussianParams(mean, log_std)`` with shape (batch, action_dim)
(``log_std`` may be (action_dim,) and broadcast). The means are the deterministic actions.
"""

import math
from typing import NamedTuple

import torch

from dpd.losses.registry import register_loss


class GaussianParams(NamedTuple):
    """A diagonal Gaussian over actions; ``mean`` doubles as the deterministic action."""

    mean: torch.Tensor
    log_std: torch.Tensor


def _gaussian_kl(p: GaussianParams, q: GaussianParams) -> torch.Tensor:
    """Closed-form KL(p || q) of diagonal Gaussians, summed over action dimensions."""
    log_std_p = p.log_std.expand_as(p.mean)
    log_std_q = q.log_std.expand_as(q.mean)
    var_p = torch.exp(2 * log_std_p)
    var_q = torch.exp(2 * log_std_q)
    per_dim = log_std_q - log_std_p + (var_p + (p.mean - q.mean) ** 2) / (2 * var_q) - 0.5
    return per_dim.sum(dim=-1)


@register_loss("mse", "policy", "squared error between the student's and the teacher's mean actions (DPD paper)")
def mse(student: GaussianParams, teacher: GaussianParams) -> torch.Tensor:
    return ((student.mean - teacher.mean.detach()) ** 2).mean(dim=-1)


@register_loss("nll", "policy", "negative log-likelihood of the teacher's mean action under the student's Gaussian")
def nll(student: GaussianParams, teacher: GaussianParams) -> torch.Tensor:
    log_std = student.log_std.expand_as(student.mean)
    z = (teacher.mean.detach() - student.mean) / torch.exp(log_std)
    return (0.5 * z**2 + log_std + 0.5 * math.log(2 * math.pi)).sum(dim=-1)


@register_loss("kl", "policy", "KL(teacher || student) of diagonal Gaussians (forward, mode-covering)")
def kl_forward(student: GaussianParams, teacher: GaussianParams) -> torch.Tensor:
    teacher = GaussianParams(teacher.mean.detach(), teacher.log_std.detach())
    return _gaussian_kl(teacher, student)


@register_loss("kl_reverse", "policy", "KL(student || teacher) of diagonal Gaussians (reverse, mode-seeking)")
def kl_reverse(student: GaussianParams, teacher: GaussianParams) -> torch.Tensor:
    teacher = GaussianParams(teacher.mean.detach(), teacher.log_std.detach())
    return _gaussian_kl(student, teacher)
