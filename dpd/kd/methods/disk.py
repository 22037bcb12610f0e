"""Scaffolding a student by censoring hard examples (DiSK; Kag et al., ICLR 2023).

A gate ``g(x) in [0, 1]``, a small network on the input and the teacher's probabilities, mixes
mass on the teacher's top-k classes and the true class into the student's softmax during training
(``disk_kd``). Where the gate is open the student is not blamed for the example: a hard example
that a small student cannot fit stops dominating its gradient. Left alone the gate would open
everywhere, so its mean is held under a budget with a Lagrange multiplier updated by dual ascent.
At test time the student runs alone, without gate or teacher.

Chosen where the paper's summary is silent: the mixture form ``(1 - g) p_s + g * scaffold``, the
gate's inputs and size, and one dual-ascent step per minibatch.
"""

import math
from typing import Dict

import torch
from torch import nn

from dpd.kd.methods.base import DistillContext, Distilled, kd_method
from dpd.losses import get_loss

GATE_WIDTH = 32


class LagrangeMultiplier:
    """lambda >= 0 for the constraint ``mean gate <= budget``, raised while it is violated."""

    def __init__(self, budget: float, step_size: float) -> None:
        self.budget, self.step_size, self.value = budget, step_size, 0.0

    def penalty(self, gate_mean: torch.Tensor) -> torch.Tensor:
        return self.value * (gate_mean - self.budget)

    def ascend(self, gate_mean: float) -> None:
        self.value = max(0.0, self.value + self.step_size * (gate_mean - self.budget))


@kd_method(
    "disk", "censor hard examples with a learned gate under a budget (Lagrange multiplier); the student alone at test time"
)
def disk(ctx: DistillContext) -> Distilled:
    options = ctx.options
    student = ctx.new_student()
    teacher_logits = ctx.teacher_train.logits
    gate_inputs = torch.cat([ctx.x, torch.softmax(teacher_logits, dim=-1)], dim=1)

    def build_gate() -> nn.Module:
        gate = nn.Sequential(nn.Linear(gate_inputs.shape[1], GATE_WIDTH), nn.ReLU(), nn.Linear(GATE_WIDTH, 1), nn.Sigmoid())
        # Start at the budget, so the constraint is neither slack nor violated at first.
        budget = min(max(options.disk_budget, 1e-3), 1 - 1e-3)
        nn.init.constant_(gate[2].bias, math.log(budget / (1 - budget)))
        return gate

    gate = ctx.new_module(build_gate, seed_offset=50)
    multiplier = LagrangeMultiplier(options.disk_budget, options.disk_dual_lr)
    scaffolded = get_loss("disk_kd", kind="supervised")

    def step(indices: torch.Tensor) -> Dict[str, torch.Tensor]:
        g = gate(gate_inputs[indices]).squeeze(1)
        logits = student(ctx.x[indices]).logits
        kd = scaffolded(
            logits,
            teacher_logits[indices],
            labels=ctx.y[indices],
            gate=g,
            top_k=options.disk_top_k,
            alpha=options.alpha,
            temperature=options.temperature,
        )
        # Student and gate minimise the Lagrangian; the multiplier then ascends on the violation.
        loss = kd + multiplier.penalty(g.mean())
        multiplier.ascend(float(g.mean().detach()))
        return {"loss": loss, "scaffolded_kd": kd, "gate_mean": g.mean(), "lambda": torch.tensor(multiplier.value)}

    ctx.fit_student(student, step, extra=gate.parameters())
    return Distilled.alone(student)
