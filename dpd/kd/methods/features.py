"""Methods that match the teacher's hidden features: FitNets (all of a hint layer) and RID (only
what the teacher's layers say about the label)."""

from typing import Dict

import torch
from torch import nn

from dpd.kd.methods.base import DistillContext, Distilled, kd_method
from dpd.losses import get_loss


@kd_method(
    "fitnet", "CE + hint MSE between the student's last hidden layer, through a linear regressor, and a teacher hint layer"
)
def fitnet(ctx: DistillContext) -> Distilled:
    options = ctx.options
    student = ctx.new_student()
    hints = ctx.teacher_train.hiddens[options.hint_layer]
    # The regressor maps the (narrower) student layer into the teacher's hint space.
    regressor = ctx.new_module(lambda: nn.Linear(student.hidden[-1], hints.shape[1]), seed_offset=1)
    cross_entropy, hint_mse = get_loss("kd_ce", kind="supervised"), get_loss("hint_mse", kind="supervised")

    def step(indices: torch.Tensor) -> Dict[str, torch.Tensor]:
        out = student(ctx.x[indices])
        ce = cross_entropy(out.logits, ctx.labels_one_hot[indices])
        hint = hint_mse(regressor(out.embedding), hints[indices])
        return {"loss": ce + options.hint_weight * hint, "ce": ce, "hint": hint}

    ctx.fit_student(student, step, extra=regressor.parameters())
    return Distilled.alone(student)


@kd_method(
    "rid",
    "redundant information distillation: label-trained filters on frozen teacher layers, student's filtered features "
    "matched to them",
)
def rid(ctx: DistillContext) -> Distilled:
    options = ctx.options
    student = ctx.new_student()
    cross_entropy, hint_mse = get_loss("kd_ce", kind="supervised"), get_loss("hint_mse", kind="supervised")
    # Pair the last layers of both networks, deepest with deepest.
    depth = min(len(student.hidden), len(ctx.teacher.hidden))
    teacher_layers = ctx.teacher_train.hiddens[-depth:]
    student_widths = student.hidden[-depth:]

    # Step 1: filters on the frozen teacher layers, trained to predict the label. What passes a
    # filter is the part of the teacher's layer that is about the task; nuisance is filtered out.
    teacher_filters = [_label_filter(ctx, layer, features) for layer, features in enumerate(teacher_layers)]
    with torch.no_grad():
        filtered_targets = [filt(features) for filt, features in zip(teacher_filters, teacher_layers)]

    # Step 2: the student, with its own filters, matches the filtered teacher features.
    student_filters = [
        ctx.new_module(lambda width=width: nn.Linear(width, options.rid_filter_dim), seed_offset=30 + layer)
        for layer, width in enumerate(student_widths)
    ]

    def step(indices: torch.Tensor) -> Dict[str, torch.Tensor]:
        out = student(ctx.x[indices])
        ce = cross_entropy(out.logits, ctx.labels_one_hot[indices])
        matched = sum(
            hint_mse(filt(hidden), target[indices])
            for filt, hidden, target in zip(student_filters, out.hiddens[-depth:], filtered_targets)
        )
        return {"loss": ce + options.rid_weight * matched, "ce": ce, "redundant_mse": matched}

    ctx.fit_student(student, step, extra=[p for filt in student_filters for p in filt.parameters()])
    return Distilled.alone(student)


def _label_filter(ctx: DistillContext, layer: int, features: torch.Tensor) -> nn.Module:
    """A linear filter of one frozen teacher layer, trained through a linear head to predict the
    label, then frozen (the head is dropped)."""
    width = ctx.options.rid_filter_dim
    filt = ctx.new_module(lambda: nn.Linear(features.shape[1], width), seed_offset=10 + layer)
    head = ctx.new_module(lambda: nn.Linear(width, ctx.data.n_classes), seed_offset=20 + layer)
    cross_entropy = get_loss("kd_ce", kind="supervised")

    def step(indices: torch.Tensor) -> Dict[str, torch.Tensor]:
        return {"loss": cross_entropy(head(filt(features[indices])), ctx.labels_one_hot[indices])}

    ctx.fit(f"rid_filter{layer}", [*filt.parameters(), *head.parameters()], step, ctx.options.filter_epochs)
    return filt.requires_grad_(False)
