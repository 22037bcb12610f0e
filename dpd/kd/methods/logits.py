"""Methods that use only the teacher's outputs: the label-only baseline and Hinton's KD."""

from typing import Dict

import torch

from dpd.kd.methods.base import DistillContext, Distilled, kd_method
from dpd.kd.models import fit_on_labels
from dpd.losses import get_loss


@kd_method("ce", "the student trained on labels alone: the baseline every other method is compared with")
def ce(ctx: DistillContext) -> Distilled:
    student = ctx.new_student()
    fit_on_labels(student, ctx.x, ctx.y, ctx.schedule, ctx.seed, ctx.monitor(student))
    return Distilled.alone(student)


@kd_method("hinton", "alpha * CE + (1 - alpha) * tau^2 * KL(teacher || student) on temperature-softened outputs")
def hinton(ctx: DistillContext) -> Distilled:
    student = ctx.new_student()
    loss = get_loss("hinton_kd", kind="supervised")
    teacher_logits = ctx.teacher_train.logits
    options = ctx.options

    def step(indices: torch.Tensor) -> Dict[str, torch.Tensor]:
        logits = student(ctx.x[indices]).logits
        return {
            "loss": loss(
                logits, teacher_logits[indices], labels=ctx.y[indices], alpha=options.alpha, temperature=options.temperature
            )
        }

    ctx.fit_student(student, step)
    return Distilled.alone(student)
