"""Fidelity: how closely a student matches its teacher, beside how accurate it is.

Stanton et al. (NeurIPS 2021): top-1 agreement ``mean 1[argmax p_s = argmax p_t]`` and predictive
KL ``mean KL(p_t || p_s)``, on the training data (what the student was fitted on) and on held-out
test data. A student can gain accuracy while losing fidelity, so both are reported.
"""

from dataclasses import dataclass
from typing import Callable

import torch

from dpd.kd.data import Dataset
from dpd.losses.supervised import categorical_kl

# A deployed classifier: inputs -> log-probabilities (a student alone, or with retrieval).
Predictor = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Fidelity:
    agreement: float
    kl: float


@dataclass(frozen=True)
class FidelityReport:
    teacher_accuracy: float
    student_accuracy: float
    train: Fidelity
    test: Fidelity


def fidelity(teacher_log_probs: torch.Tensor, student_log_probs: torch.Tensor) -> Fidelity:
    agreement = (teacher_log_probs.argmax(dim=-1) == student_log_probs.argmax(dim=-1)).float().mean()
    return Fidelity(agreement=float(agreement), kl=float(categorical_kl(teacher_log_probs, student_log_probs).mean()))


def accuracy(log_probs: torch.Tensor, labels: torch.Tensor) -> float:
    return float((log_probs.argmax(dim=-1) == labels).float().mean())


@torch.no_grad()
def measure(teacher: Predictor, student: Predictor, data: Dataset) -> FidelityReport:
    teacher_test, student_test = teacher(data.x_test), student(data.x_test)
    return FidelityReport(
        teacher_accuracy=accuracy(teacher_test, data.y_test),
        student_accuracy=accuracy(student_test, data.y_test),
        train=fidelity(teacher(data.x_train), student(data.x_train)),
        test=fidelity(teacher_test, student_test),
    )
