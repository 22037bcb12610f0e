"""Relational KD (Park et al., CVPR 2019): match the shape of the teacher's embedding space
(pairwise distances and triplet angles), not the embeddings themselves; no regressor is needed,
so teacher and student widths may differ."""

from typing import Dict

import torch

from dpd.kd.methods.base import DistillContext, Distilled, kd_method
from dpd.losses import get_loss


@kd_method("rkd", "CE + distance-wise and angle-wise relational losses between the last hidden layers")
def rkd(ctx: DistillContext) -> Distilled:
    options = ctx.options
    student = ctx.new_student()
    teacher_embeddings = ctx.teacher_train.embedding
    cross_entropy = get_loss("kd_ce", kind="supervised")
    distance, angle = get_loss("rkd_dist", kind="supervised"), get_loss("rkd_angle", kind="supervised")

    def step(indices: torch.Tensor) -> Dict[str, torch.Tensor]:
        out = student(ctx.x[indices])
        ce = cross_entropy(out.logits, ctx.labels_one_hot[indices])
        dist = distance(out.embedding, teacher_embeddings[indices])
        ang = angle(out.embedding, teacher_embeddings[indices])
        return {"loss": ce + options.rkd_distance * dist + options.rkd_angle * ang, "ce": ce, "distance": dist, "angle": ang}

    ctx.fit_student(student, step)
    return Distilled.alone(student)
