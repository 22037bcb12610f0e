"""Teachers: one trained MLP, an ensemble of K, or the student's own architecture
(self-distillation); saved with the identity of their training data and reloaded; and a nuisance
wrapper for the RID robustness experiment.

Stanton et al. (NeurIPS 2021) found that fidelity behaves differently for these three kinds of
teacher, which is why all three are one flag away. A teacher's weights are frozen; it returns
logits and hidden features.
"""

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from dpd.errors import UserError
from dpd.kd.data import Dataset
from dpd.kd.models import MLP, EpochHook, ModelOutput, fit_on_labels, save_atomically, seeded_mlp
from dpd.kd.options import Schedule

TEACHER_FORMAT = "dpd-kd-teacher/1"
KINDS = ("single", "ensemble", "self")


class Teacher:
    """A classifier with frozen weights that exposes its hidden features. An ensemble averages its
    members' probabilities and concatenates their hidden layers, layer by layer, so that feature
    methods see every member."""

    def __init__(self, members: Sequence[MLP], kind: str) -> None:
        if kind not in KINDS or not members:
            raise ValueError(f"bad teacher: kind {kind!r} with {len(members)} members")
        self.members = list(members)
        self.kind = kind
        for member in self.members:
            member.eval()
            member.requires_grad_(False)

    @property
    def hidden(self) -> Tuple[int, ...]:
        return self.members[0].hidden

    def __call__(self, x: torch.Tensor) -> ModelOutput:
        # No torch.no_grad here: the weights are frozen, but a counterfactual search needs
        # gradients with respect to the input.
        outputs = [member(x) for member in self.members]
        if len(outputs) == 1:
            return outputs[0]
        log_probs = torch.stack([torch.log_softmax(out.logits, dim=-1) for out in outputs])
        # log of the mean probability: a valid logit vector of the ensemble's predictive distribution
        logits = torch.logsumexp(log_probs, dim=0) - torch.log(torch.tensor(float(len(outputs))))
        hiddens = tuple(torch.cat(layer, dim=-1) for layer in zip(*(out.hiddens for out in outputs)))
        return ModelOutput(logits, hiddens)

    def describe(self) -> str:
        widths = ",".join(map(str, self.hidden))
        if self.kind == "ensemble":
            return f"ensemble of {len(self.members)} x {widths}"
        return f"{widths} ({'self-distillation' if self.kind == 'self' else 'single'})"


def train_teacher(
    data: Dataset,
    hidden: Sequence[int],
    kind: str,
    members: int,
    schedule: Schedule,
    seed: int,
    hooks: Optional[List[Optional[EpochHook]]] = None,
) -> Teacher:
    """Train ``members`` MLPs on the labels, each from its own initialisation and data order."""
    models = []
    for k in range(members):
        # Teacher seeds are kept apart from the student's (which uses ``seed`` itself).
        member_seed = 100_003 * (seed + 1) + k
        model = seeded_mlp(data.n_features, hidden, data.n_classes, member_seed)
        hook = hooks[k] if hooks else None
        fit_on_labels(model, data.x_train, data.y_train, schedule, member_seed, hook)
        models.append(model)
    return Teacher(models, kind)


def save_teacher(teacher: Teacher, path: Path, data: Dataset) -> None:
    """One file with every member's weights and the identity of the training data."""
    bundle: Dict[str, Any] = {
        "format": TEACHER_FORMAT,
        "kind": teacher.kind,
        "in_dim": teacher.members[0].in_dim,
        "n_classes": teacher.members[0].n_classes,
        "hidden": list(teacher.hidden),
        "data_name": data.name,
        "data_fingerprint": data.fingerprint,
        "members": [member.state_dict() for member in teacher.members],
    }
    save_atomically(bundle, path)


def load_teacher(path: Path, data: Dataset) -> Teacher:
    """A saved teacher, refused unless it was trained on exactly this training data: a teacher
    trained on another split may have seen this run's test set."""
    if not path.is_file():
        raise UserError(f"teacher file {path} does not exist")
    try:
        bundle = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a file that is not its own
        raise UserError(f"cannot read teacher {path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(bundle, dict) or bundle.get("format") != TEACHER_FORMAT:
        raise UserError(f"{path} is not a dpd kd teacher (saved as RUN_DIR/teacher.pt by dpd kd)")
    if bundle["data_fingerprint"] != data.fingerprint:
        raise UserError(
            f"teacher {path} was trained on other data ({bundle['data_name']}); this run uses {data.name}: "
            "use the same dataset, --split-seed, --test-fraction and --noise-features"
        )
    members = []
    for state in bundle["members"]:
        member = MLP(bundle["in_dim"], bundle["hidden"], bundle["n_classes"])
        member.load_state_dict(state)
        members.append(member)
    return Teacher(members, bundle["kind"])


class NuisanceTeacher(Teacher):
    """A teacher whose hidden layers carry extra task-irrelevant units (RID's "nuisance teacher").

    Each hidden layer gets ``dim`` units ``a * tanh(z W)``: smooth, learnable functions of ``z``,
    the dataset's label-independent noise columns (all inputs when it has none), with amplitude
    ``a = scale * RMS`` of that layer's own units. The logits are the wrapped teacher's, so its
    accuracy is unchanged; only what feature matching would copy is polluted.
    """

    def __init__(self, base: Teacher, data: Dataset, dim: int, scale: float, seed: int) -> None:
        super().__init__(base.members, base.kind)
        self.base = base
        self.noise_columns = data.noise_features
        generator = torch.Generator().manual_seed(seed)
        z_dim = self.noise_columns or data.n_features
        reference = base(data.x_train).hiddens
        self.projections = [torch.randn(z_dim, dim, generator=generator) / z_dim**0.5 for _ in reference]
        self.amplitudes = [scale * float(layer.pow(2).mean().sqrt()) for layer in reference]

    def __call__(self, x: torch.Tensor) -> ModelOutput:
        out = self.base(x)
        z = x[:, -self.noise_columns :] if self.noise_columns else x
        hiddens = tuple(
            torch.cat([layer, amplitude * torch.tanh(z @ projection)], dim=-1)
            for layer, projection, amplitude in zip(out.hiddens, self.projections, self.amplitudes)
        )
        return ModelOutput(out.logits, hiddens)

    def describe(self) -> str:
        return f"{self.base.describe()} + {self.projections[0].shape[1]} nuisance units per layer"
