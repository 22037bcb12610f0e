"""Policy distillation losses.

Student and teacher are ``PolicyOutput``s. ``mse`` compares deterministic actions in the
environment's action space, so it works between any two policies (PPO's unbounded Gaussian,
SAC's tanh-squashed Gaussian, TD3's deterministic actor). ``nll`` needs a stochastic student and
the teacher's action expressed in the student's distribution space; ``kl`` and ``kl_reverse`` need
two Gaussians in the same space (PPO with PPO, SAC with SAC: tanh is a bijection, so the KL of the
squashed distributions equals the KL of the Gaussians before squashing). The learners do that
conversion; these functions only see tensors of shape (batch, action_dim).
"""

import math
from typing import NamedTuple, Optional

import torch

from dpd.losses.registry import register_loss


class PolicyOutput(NamedTuple):
    """A policy's output on a batch of states.

    ``mean``: the mean of its action distribution in the distribution's own space (for a
    squashed Gaussian, before the tanh); ``log_std``: None for a deterministic policy;
    ``action``: the deterministic action in env units, when it differs from ``mean``.
    """

    mean: torch.Tensor
    log_std: Optional[torch.Tensor] = None
    action: Optional[torch.Tensor] = None

    @property
    def env_action(self) -> torch.Tensor:
        return self.mean if self.action is None else self.action


def with_temperature(output: PolicyOutput, temperature: float) -> PolicyOutput:
    """A Gaussian target with its standard deviation multiplied by ``temperature``: above 1 a
    softer target (the student is asked for less certainty), below 1 a sharper one. The
    continuous analogue of Rusu et al.'s softmax temperature; it matters to ``kl`` and
    ``kl_reverse``, which compare spreads."""
    if output.log_std is None or temperature == 1.0:
        return output
    return output._replace(log_std=output.log_std + math.log(temperature))


def _require_std(output: PolicyOutput, loss: str, role: str) -> torch.Tensor:
    if output.log_std is None:
        raise ValueError(f"loss {loss!r} needs a stochastic {role}; use 'mse' for deterministic policies")
    return output.log_std.expand_as(output.mean)


def _gaussian_kl(mean_p: torch.Tensor, log_std_p: torch.Tensor, mean_q: torch.Tensor, log_std_q: torch.Tensor) -> torch.Tensor:
    """Closed-form KL(p || q) of diagonal Gaussians, summed over action dimensions."""
    var_p = torch.exp(2 * log_std_p)
    var_q = torch.exp(2 * log_std_q)
    per_dim = log_std_q - log_std_p + (var_p + (mean_p - mean_q) ** 2) / (2 * var_q) - 0.5
    return per_dim.sum(dim=-1)


@register_loss("mse", "policy", "squared error between student and teacher actions in env units (DPD paper)")
def mse(student: PolicyOutput, teacher: PolicyOutput) -> torch.Tensor:
    return ((student.env_action - teacher.env_action.detach()) ** 2).mean(dim=-1)


@register_loss("nll", "policy", "negative log-likelihood of the teacher's action under the student's Gaussian")
def nll(student: PolicyOutput, teacher: PolicyOutput) -> torch.Tensor:
    log_std = _require_std(student, "nll", "student")
    z = (teacher.mean.detach() - student.mean) / torch.exp(log_std)
    return (0.5 * z**2 + log_std + 0.5 * math.log(2 * math.pi)).sum(dim=-1)


@register_loss("kl", "policy", "KL(teacher || student) of diagonal Gaussians (forward, mode-covering)")
def kl_forward(student: PolicyOutput, teacher: PolicyOutput) -> torch.Tensor:
    student_std, teacher_std = _require_std(student, "kl", "student"), _require_std(teacher, "kl", "teacher")
    return _gaussian_kl(teacher.mean.detach(), teacher_std.detach(), student.mean, student_std)


@register_loss("kl_reverse", "policy", "KL(student || teacher) of diagonal Gaussians (reverse, mode-seeking)")
def kl_reverse(student: PolicyOutput, teacher: PolicyOutput) -> torch.Tensor:
    student_std, teacher_std = _require_std(student, "kl_reverse", "student"), _require_std(teacher, "kl_reverse", "teacher")
    return _gaussian_kl(student.mean, student_std, teacher.mean.detach(), teacher_std.detach())
