"""The loss registry: register by name, look up by name, list with descriptions."""

from dataclasses import dataclass
from typing import Callable, List, Optional

import torch

from dpd.errors import unknown_choice
from dpd.registry import Registry

PerSampleLoss = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class LossSpec:
    """A registered loss: its name, what it compares (``policy`` or ``supervised``) and why."""

    name: str
    kind: str
    description: str
    per_sample: PerSampleLoss

    def __call__(
        self,
        student: object,
        teacher: object,
        weights: Optional[torch.Tensor] = None,
        **kwargs: object,
    ) -> torch.Tensor:
        return weighted_mean(self.per_sample(student, teacher, **kwargs), weights)


LOSSES: Registry[LossSpec] = Registry("loss")


def weighted_mean(values: torch.Tensor, weights: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Mean of per-sample values, or their weighted sum when weights (summing to 1) are given."""
    if values.dim() != 1:
        raise ValueError(f"per-sample loss must be 1-D, got shape {tuple(values.shape)}")
    if weights is None:
        return values.mean()
    if weights.shape != values.shape:
        raise ValueError(f"weights shape {tuple(weights.shape)} != loss shape {tuple(values.shape)}")
    return (weights.detach() * values).sum()


def register_loss(name: str, kind: str, description: str) -> Callable[[PerSampleLoss], PerSampleLoss]:
    """Decorator: add a per-sample loss function to the registry under ``name``."""

    def decorator(fn: PerSampleLoss) -> PerSampleLoss:
        LOSSES.add(name, LossSpec(name=name, kind=kind, description=description, per_sample=fn))
        return fn

    return decorator


def get_loss(name: str, kind: Optional[str] = None) -> LossSpec:
    """The loss called ``name``; a ``UserError`` naming the valid choices otherwise."""
    spec = LOSSES.get(name)
    if spec is None or (kind is not None and spec.kind != kind):
        raise unknown_choice(f"{kind + ' ' if kind else ''}loss", name, available_losses(kind))
    return spec


def available_losses(kind: Optional[str] = None) -> List[str]:
    """Registered loss names, optionally only those of one kind."""
    return sorted(name for name, spec in LOSSES.items() if kind is None or spec.kind == kind)


def loss_specs() -> List[LossSpec]:
    """All registered losses, sorted by kind then name."""
    return sorted(LOSSES.values(), key=lambda spec: (spec.kind, spec.name))
