"""Cooperative distillation (Livanos, Davidson, Wong; AAAI 2024).

Several models of different architectures, optionally on different feature subsets, train
together; each is a teacher where it is strong and a student where it is weak. Here the peers are
the student, the extra architectures of ``coop_peers`` (each on a random share
``coop_feature_fraction`` of the features), and the frozen teacher, which only teaches. Training
runs in rounds; after each round, per-class recall on a held-out share of the training data says
where each peer is strong. For every class where a learner trails the best other peer by at least
``coop_margin``, that peer generates counterfactual virtual instances: training points of other
classes moved (by gradient steps on the inputs the peer sees, kept close to where they started)
until the peer predicts the class. Their targets move the peer's prediction halfway toward the
class, ``y' = p(x') + 0.5 (onehot(c) - p(x'))``, and they join the learner's training data for the
next round. Knowledge flows only in the regions of the teacher's strength.

Chosen where the paper's summary is silent: regions are classes, strength is validation recall,
the counterfactual search (25 Adam steps, squared-distance penalty 0.1), and virtual instances
replace the previous round's.
"""

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Tuple

import torch
import torch.nn.functional as F

from dpd.kd.data import stratified_split
from dpd.kd.methods.base import DistillContext, Distilled, kd_method
from dpd.kd.models import ModelOutput, log_probs_of, one_hot, seeded_mlp
from dpd.losses import get_loss

COUNTERFACTUAL_STEPS = 25
COUNTERFACTUAL_LR = 0.05
DISTANCE_PENALTY = 0.1
TARGET_SHIFT = 0.5  # y' = p + 0.5 (y - p)


@dataclass
class Peer:
    """One model and the feature columns it sees; learners also hold their virtual instances."""

    name: str
    model: Callable[[torch.Tensor], ModelOutput]
    features: torch.Tensor
    trainable: bool
    virtual_x: torch.Tensor = field(default_factory=lambda: torch.empty(0))
    virtual_targets: torch.Tensor = field(default_factory=lambda: torch.empty(0))

    def __call__(self, x: torch.Tensor) -> ModelOutput:
        return self.model(x[:, self.features])

    def recall(self, x: torch.Tensor, y: torch.Tensor, n_classes: int) -> torch.Tensor:
        """Per-class share of ``x`` classified correctly (0 for a class absent from ``y``)."""
        correct = (log_probs_of(self, x).argmax(dim=-1) == y).float()
        hits = torch.zeros(n_classes).index_add_(0, y, correct)
        counts = torch.bincount(y, minlength=n_classes).float()
        return hits / counts.clamp_min(1)


@kd_method(
    "cooperative",
    "peers of different architectures (and feature subsets) teach each other counterfactual instances where each is strong",
)
def cooperative(ctx: DistillContext) -> Distilled:
    options, n_classes = ctx.options, ctx.data.n_classes
    generator = torch.Generator().manual_seed(ctx.seed)
    fit_idx, val_idx = _held_out(ctx)
    x_fit, y_fit, x_val, y_val = ctx.x[fit_idx], ctx.y[fit_idx], ctx.x[val_idx], ctx.y[val_idx]

    student_model = ctx.new_student()
    all_features = torch.arange(ctx.data.n_features)
    learners = [Peer("student", student_model, all_features, trainable=True)]
    for i, hidden in enumerate(options.coop_peers):
        features = _feature_subset(ctx.data.n_features, options.coop_feature_fraction, generator)
        model = seeded_mlp(len(features), hidden, n_classes, ctx.seed + 1 + i)
        learners.append(Peer(f"peer{i + 1}", model, features, trainable=True))
    everyone = [*learners, Peer("teacher", ctx.teacher, all_features, trainable=False)]

    monitors = {
        peer.name: ctx.monitor(student_model) if peer.name == "student" else ctx.phase_log(f"coop_{peer.name}")
        for peer in learners
    }
    for round_index, epochs in enumerate(_epochs_per_round(ctx.schedule.epochs, options.coop_rounds)):
        for peer in learners:
            _train_round(ctx, peer, x_fit, y_fit, epochs, monitors[peer.name])
        if round_index == options.coop_rounds - 1:
            break
        recalls = {peer.name: peer.recall(x_val, y_val, n_classes) for peer in everyone}
        for peer in learners:
            peer.virtual_x, peer.virtual_targets = _exchange(ctx, peer, everyone, recalls, x_fit, y_fit, generator)
            ctx.log.scalars(f"kd/coop_{peer.name}", {"virtual_instances": float(len(peer.virtual_x))}, round_index)
    return Distilled.alone(student_model)


def _held_out(ctx: DistillContext) -> Tuple[torch.Tensor, torch.Tensor]:
    """Training indices split into (fit, validation); validation only locates strengths."""
    indices = torch.arange(len(ctx.y))
    fit, val, _, _ = stratified_split(indices.numpy(), ctx.y.numpy(), ctx.options.coop_val_fraction, ctx.seed)
    return torch.as_tensor(fit), torch.as_tensor(val)


def _feature_subset(n_features: int, fraction: float, generator: torch.Generator) -> torch.Tensor:
    size = max(1, round(fraction * n_features))
    return torch.randperm(n_features, generator=generator)[:size].sort().values


def _epochs_per_round(epochs: int, rounds: int) -> List[int]:
    """``epochs`` spread over ``rounds`` as evenly as whole numbers allow."""
    return [epochs // rounds + (1 if r < epochs % rounds else 0) for r in range(rounds)]


def _train_round(
    ctx: DistillContext, peer: Peer, x_fit: torch.Tensor, y_fit: torch.Tensor, epochs: int, monitor: Callable
) -> None:
    """Soft-target cross-entropy on the real data (one-hot) and the peer's virtual instances."""
    x = torch.cat([x_fit, peer.virtual_x.reshape(-1, x_fit.shape[1])])
    targets = torch.cat([one_hot(y_fit, ctx.data.n_classes), peer.virtual_targets.reshape(-1, ctx.data.n_classes)])
    cross_entropy = get_loss("kd_ce", kind="supervised")

    def step(indices: torch.Tensor) -> Dict[str, torch.Tensor]:
        return {"loss": cross_entropy(peer(x[indices]).logits, targets[indices])}

    ctx.fit(f"coop_{peer.name}", peer.model.parameters(), step, epochs, n_samples=len(x), monitor=monitor)  # type: ignore[attr-defined]


def _exchange(
    ctx: DistillContext,
    learner: Peer,
    everyone: List[Peer],
    recalls: Dict[str, torch.Tensor],
    x_fit: torch.Tensor,
    y_fit: torch.Tensor,
    generator: torch.Generator,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Virtual instances for ``learner`` from the strongest other peer of each class it is weak on."""
    xs, targets = [], []
    others = [peer for peer in everyone if peer is not learner]
    for c in range(ctx.data.n_classes):
        mentor = max(others, key=lambda peer: float(recalls[peer.name][c]))
        if recalls[mentor.name][c] < recalls[learner.name][c] + ctx.options.coop_margin:
            continue
        elsewhere = torch.nonzero(y_fit != c).squeeze(1)
        seeds = x_fit[elsewhere[torch.randperm(len(elsewhere), generator=generator)[: ctx.options.coop_virtual]]]
        x_cf, probs = counterfactuals(mentor, seeds, c)
        accepted = probs.argmax(dim=-1) == c
        target_class = one_hot(torch.full((int(accepted.sum()),), c), ctx.data.n_classes)
        xs.append(x_cf[accepted])
        targets.append(probs[accepted] + TARGET_SHIFT * (target_class - probs[accepted]))
    if not xs:
        return torch.empty(0), torch.empty(0)
    return torch.cat(xs), torch.cat(targets)


def counterfactuals(mentor: Peer, seeds: torch.Tensor, target: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Move ``seeds`` (on the features ``mentor`` sees) until the mentor predicts ``target``,
    staying close to where they started; returns the moved points and the mentor's probabilities."""
    delta = torch.zeros(len(seeds), len(mentor.features), requires_grad=True)
    optimizer = torch.optim.Adam([delta], lr=COUNTERFACTUAL_LR)
    labels = torch.full((len(seeds),), target)
    start = seeds[:, mentor.features]
    for _ in range(COUNTERFACTUAL_STEPS):
        loss = F.cross_entropy(mentor.model(start + delta).logits, labels) + DISTANCE_PENALTY * delta.pow(2).sum(dim=1).mean()
        # Gradients for the inputs only: the peer's own weights are not touched.
        (delta.grad,) = torch.autograd.grad(loss, delta)
        optimizer.step()
    moved = seeds.clone()
    moved[:, mentor.features] = start + delta.detach()
    with torch.no_grad():
        return moved, torch.softmax(mentor(moved).logits, dim=-1)
