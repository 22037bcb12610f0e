"""MLP classifiers that expose their hidden features, and the one minibatch loop every method uses.

Feature-based methods (FitNets, RKD, ReAugKD, RID) need a model's intermediate activations as
well as its logits, so a forward pass returns both.
"""

import os
from pathlib import Path
from typing import Callable, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

import torch
from torch import nn

from dpd.kd.options import Schedule
from dpd.losses import get_loss


class ModelOutput(NamedTuple):
    """Logits (batch, classes) and the activations of every hidden layer, first to last."""

    logits: torch.Tensor
    hiddens: Tuple[torch.Tensor, ...]

    @property
    def embedding(self) -> torch.Tensor:
        """The last hidden layer: the representation relational and retrieval methods compare."""
        return self.hiddens[-1]


class MLP(nn.Module):
    """ReLU MLP classifier. ``hidden`` widths are part of its identity (saved with the weights)."""

    def __init__(self, in_dim: int, hidden: Sequence[int], n_classes: int) -> None:
        super().__init__()
        self.in_dim, self.hidden, self.n_classes = in_dim, tuple(hidden), n_classes
        widths = (in_dim, *self.hidden)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.head = nn.Linear(widths[-1], n_classes)

    def forward(self, x: torch.Tensor) -> ModelOutput:  # type: ignore[override]
        hiddens: List[torch.Tensor] = []
        for layer in self.layers:
            x = torch.relu(layer(x))
            hiddens.append(x)
        return ModelOutput(self.head(x), tuple(hiddens))


def seeded_mlp(in_dim: int, hidden: Sequence[int], n_classes: int, seed: int) -> MLP:
    """An MLP whose initial weights depend on ``seed`` only."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return MLP(in_dim, hidden, n_classes)


@torch.no_grad()
def log_probs_of(model: Callable[[torch.Tensor], ModelOutput], x: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(model(x).logits, dim=-1)


StepFn = Callable[[torch.Tensor], Dict[str, torch.Tensor]]
EpochHook = Callable[[int, Dict[str, float]], None]


def train_loop(
    params: Iterable[nn.Parameter],
    n_samples: int,
    schedule: Schedule,
    seed: int,
    step: StepFn,
    on_epoch: Optional[EpochHook] = None,
) -> Dict[str, float]:
    """Adam over shuffled minibatches of sample indices.

    ``step(indices)`` returns named scalars including ``"loss"``, the one that is minimised; the
    loop averages all of them per epoch and hands them to ``on_epoch`` (logging, dual ascent, ...).
    Returns the last epoch's averages.
    """
    optimizer = torch.optim.Adam(list(params), lr=schedule.lr)
    generator = torch.Generator().manual_seed(seed)
    averages: Dict[str, float] = {}
    for epoch in range(schedule.epochs):
        totals: Dict[str, float] = {}
        seen = 0
        for indices in torch.randperm(n_samples, generator=generator).split(schedule.batch_size):
            # A lone leftover sample gives relational losses no pairs to compare: skip it.
            if len(indices) == 1 and schedule.batch_size > 1:
                continue
            values = step(indices)
            optimizer.zero_grad(set_to_none=True)
            values["loss"].backward()
            optimizer.step()
            seen += len(indices)
            for name, value in values.items():
                totals[name] = totals.get(name, 0.0) + float(value.detach()) * len(indices)
        averages = {name: total / max(seen, 1) for name, total in totals.items()}
        if on_epoch is not None:
            on_epoch(epoch, averages)
    return averages


def one_hot(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(labels, n_classes).float()


def fit_on_labels(
    model: MLP, x: torch.Tensor, y: torch.Tensor, schedule: Schedule, seed: int, on_epoch: Optional[EpochHook] = None
) -> Dict[str, float]:
    """Plain supervised training with cross-entropy: teachers, and the ``ce`` baseline student."""
    cross_entropy = get_loss("kd_ce", kind="supervised")
    targets = one_hot(y, model.n_classes)

    def step(indices: torch.Tensor) -> Dict[str, torch.Tensor]:
        return {"loss": cross_entropy(model(x[indices]).logits, targets[indices])}

    return train_loop(model.parameters(), len(y), schedule, seed, step, on_epoch)


def save_atomically(obj: object, path: Path) -> None:
    """``torch.save`` to a temporary name, then rename: a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)
