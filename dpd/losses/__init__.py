"""One registry of distillation losses, shared by policy and supervised distillation.

Losses work on tensors only (no SB3, no Gymnasium). Each registered function returns a
per-sample loss; the registry wraps it into ``loss(student, teacher, weights=None, **kw)``,
which reduces with optional per-sample weights, so every loss accepts DPD's
disadvantage weights in the same way.
"""

# Importing the package registers every loss: the modules that define losses register them.
from dpd.losses import supervised  # noqa: F401
from dpd.losses.policy import PolicyOutput, with_temperature
from dpd.losses.registry import (
    LossSpec,
    available_losses,
    get_loss,
    loss_specs,
    register_loss,
    weighted_mean,
)

__all__ = [
    "PolicyOutput",
    "LossSpec",
    "available_losses",
    "get_loss",
    "loss_specs",
    "register_loss",
    "weighted_mean",
    "with_temperature",
]
