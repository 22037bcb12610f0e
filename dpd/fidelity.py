"""Fidelity of a student to its teacher (Stanton et al., "Does Knowledge Distillation Really
Work?"): how closely the student's outputs match, not only how well it scores.

For policies: the mean squared difference of deterministic actions (env units), agreement (the
share of states where every action dimension is within a tolerance, in [-1, 1] units), and
KL(teacher || student) where both are Gaussians of one kind. Tensor-only, like ``dpd.losses``.
"""

from typing import Dict, Optional

import torch

from dpd.losses import PolicyOutput, get_loss


def action_agreement(student_scaled: torch.Tensor, teacher_scaled: torch.Tensor, tolerance: float) -> float:
    """Share of states where every dimension of the two [-1, 1]-scaled actions is within ``tolerance``."""
    return float(((student_scaled - teacher_scaled).abs() <= tolerance).all(dim=-1).float().mean())


def policy_fidelity(
    student: PolicyOutput,
    teacher: PolicyOutput,
    student_scaled: torch.Tensor,
    teacher_scaled: torch.Tensor,
    tolerance: float,
    comparable_distributions: bool,
) -> Dict[str, Optional[float]]:
    """Action MSE, agreement and (where ``comparable_distributions``) KL(teacher || student)."""
    kl = None
    if comparable_distributions and student.log_std is not None and teacher.log_std is not None:
        with torch.no_grad():
            kl = float(get_loss("kl").per_sample(student, teacher).mean())
    return {
        "action_mse": float(((student.env_action - teacher.env_action) ** 2).mean()),
        "agreement": action_agreement(student_scaled, teacher_scaled, tolerance),
        "kl": kl,
    }
