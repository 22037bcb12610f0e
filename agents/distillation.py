"""The distillation steps of a learner towards its teachers' answers, wherever they live: the
one path for peers (``dpd.agents.peer``) and students (``dpd.agents.teacher_student``).

A teacher (a peer, or the one teacher of a student) answers on given raw states with a
``TeacherAnswer``; the learner picks, per state, the teacher with the highest value, weights
the states by the disadvantage weight of ``xi = V_teacher - V_learner`` and takes one step
(``distill_step``); ``distill_steps`` runs a sequence of them, checked and logged.
"""

from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch

from dpd.agents.learner import Learner
from dpd.losses import PolicyOutput
from dpd.weighting import disadvantage_weights


@dataclass(frozen=True)
class CriticAnswer:
    """A peer's critics at given raw states and at actions its policy samples there: PIEKD's Q
    targets (``guide=distill``). Actions in SB3's [-1, 1] units; values in raw return units."""

    actions: np.ndarray  # (states, action dim)
    q_values: np.ndarray  # (states, critics)

    def part(self, start: int, stop: int) -> "CriticAnswer":
        return CriticAnswer(self.actions[start:stop].copy(), self.q_values[start:stop].copy())


@dataclass(frozen=True)
class TeacherAnswer:
    """What a peer (or a teacher) sends about given states: its policy output there, as a
    target, and its values in raw return units. Never the model itself."""

    output: PolicyOutput
    values: np.ndarray
    kind: str  # the teacher's distribution kind
    critic: Optional[CriticAnswer] = None  # only where asked for (guide=distill with guide.critic)

    def part(self, start: int, stop: int) -> "TeacherAnswer":
        # A copy: a pickled view would carry its whole storage, every other learner's part too.
        output = PolicyOutput(*(None if t is None else t[start:stop].clone() for t in self.output))
        critic = None if self.critic is None else self.critic.part(start, stop)
        return TeacherAnswer(output, self.values[start:stop], self.kind, critic)


@dataclass(frozen=True)
class DistillBatch:
    """One gradient step's states and every chosen peer's answer on them."""

    states: np.ndarray
    answers: Tuple[TeacherAnswer, ...]
    # The learner's own distill.weighting when None; "none" for guide=distill (plain imitation).
    weighting: Optional[str] = None
    tag: str = "distill"  # TensorBoard prefix of the step's diagnostics
    critic: bool = False  # also one step of the critics towards ``answers[0].critic`` (PIEKD)
    combine: str = "best"  # several answers per state: the best-valued one's, or their mean (``combined_targets``)


def answer_on(teacher: Learner, states: np.ndarray, critic: bool = False) -> TeacherAnswer:
    """``teacher``'s answer on raw ``states``; with ``critic``, its critics' too (an off-policy learner)."""
    critic_answer = teacher.critic_answer(states) if critic else None  # type: ignore[attr-defined]
    return TeacherAnswer(teacher.policy_on(states), teacher.values_on(states), teacher.distribution_kind, critic_answer)


def best_targets(learner: Learner, answers: Sequence[TeacherAnswer], states_count: int) -> Tuple[PolicyOutput, np.ndarray]:
    """Per state, the output (in ``learner``'s distribution space) and raw value of the teacher
    (a peer, or the one teacher) with the highest value there."""
    values = np.stack([answer.values for answer in answers])  # (teachers, batch)
    best = torch.as_tensor(values.argmax(axis=0))
    outputs = [learner.express_target(answer.output, answer.kind) for answer in answers]
    columns = torch.arange(states_count)

    def pick(field: str) -> Optional[torch.Tensor]:
        tensors = [getattr(output, field) for output in outputs]
        if any(tensor is None for tensor in tensors):
            return None
        return torch.stack([t.expand_as(outputs[0].mean) for t in tensors])[best, columns]

    target = PolicyOutput(pick("mean"), pick("log_std"), torch.stack([o.env_action for o in outputs])[best, columns])
    return target, values[best.numpy(), np.arange(states_count)]


def mean_targets(learner: Learner, answers: Sequence[TeacherAnswer], states_count: int) -> Tuple[PolicyOutput, np.ndarray]:
    """Per state, the teachers' outputs (in ``learner``'s distribution space) averaged, and their
    mean raw value. Gaussians are averaged as the equal mixture's mean and variance (moment
    matching: ``var = mean(var_k + mu_k**2) - mu**2``), so teachers that disagree give a wider
    target rather than a confident average; deterministic outputs are averaged."""
    outputs = [learner.express_target(answer.output, answer.kind) for answer in answers]
    means = torch.stack([output.mean.expand(states_count, *output.mean.shape[1:]) for output in outputs])
    mean = means.mean(dim=0)
    log_std = None
    if all(output.log_std is not None for output in outputs):
        variances = torch.stack([torch.exp(2 * o.log_std).expand_as(mean) for o in outputs])  # type: ignore[arg-type]
        log_std = 0.5 * torch.log((variances + means**2).mean(dim=0) - mean**2).clamp(min=-20.0)
    env_action = torch.stack([output.env_action.expand_as(outputs[0].env_action) for output in outputs]).mean(dim=0)
    values = np.mean(np.stack([answer.values for answer in answers]), axis=0)
    return PolicyOutput(mean, log_std, env_action), values


# How a learner's target is made from several teachers' answers on the same states.
COMBINED_TARGETS = {"best": best_targets, "mean": mean_targets}


def combined_targets(
    learner: Learner, answers: Sequence[TeacherAnswer], states_count: int, combine: str = "best"
) -> Tuple[PolicyOutput, np.ndarray]:
    """The target and the teachers' raw values on each state, by rule ``combine``."""
    return COMBINED_TARGETS[combine](learner, answers, states_count)


def distill_step(
    learner: Learner,
    answers: Sequence[TeacherAnswer],
    states: np.ndarray,
    weighting: str,
    alpha: float,
    scale: float = 1.0,
    combine: str = "best",
) -> Dict[str, float]:
    """One distillation step of ``learner`` towards the teachers' ``answers`` on raw ``states``,
    weighted by the disadvantage weights of ``xi = V_teacher - V_learner``; ``scale`` multiplies
    the step's size (kickstarting's lambda: the distillation optimizer is Adam, which divides most
    of a factor on the loss out of its steps). Returns the diagnostics that are logged under ``distill/``."""
    target, teacher_values = combined_targets(learner, answers, len(states), combine)
    weights = disadvantage_weights(teacher_values, learner.values_on(states), weighting, alpha)
    stats = {
        "peer_gap": weights.peer_gap,
        "peer_better_frac": weights.peer_better_frac,
        "weight_mean": weights.raw_mean,
        "weight_max": weights.raw_max,
    }
    if weights.weights.sum() > 0 and scale > 0:  # the hard mask may select no state at all
        stats["loss"] = learner.distill_update(states, target, weights.weights, scale)
    return stats


def distill_steps(learner: Learner, batches: Iterable[DistillBatch], scale: float = 1.0) -> List[Dict[str, float]]:
    """One ``distill_step`` per batch (``batches`` may be a generator: each is built when its step
    runs), and for a batch marked ``critic`` (PIEKD) one step of the critics too, from an
    optimizer fresh for this call; every loss checked finite, each step's diagnostics logged as
    means under its batch's tag. Returns each step's diagnostics."""
    config = learner.distill_config
    critic_optimizer = None
    all_stats = []
    for batch in batches:
        weighting = batch.weighting or config.weighting
        stats = distill_step(learner, batch.answers, batch.states, weighting, config.alpha, scale, batch.combine)
        if batch.critic:
            from dpd.agents.off_policy import OffPolicyLearner  # imports this module

            assert isinstance(learner, OffPolicyLearner) and batch.answers[0].critic is not None, "a critic step"
            if critic_optimizer is None:
                critic_optimizer = learner.critic_distill_optimizer()
            stats["critic_loss"] = learner.distill_critic(batch.states, batch.answers[0].critic, critic_optimizer)
        if not (np.isfinite(stats.get("loss", 0.0)) and np.isfinite(stats.get("critic_loss", 0.0))):
            raise FloatingPointError(f"{learner.spec.name}: NaN or infinity in the distillation loss")
        for key, value in stats.items():
            learner.logger.record_mean(f"{batch.tag}/{key}", value)
        all_stats.append(stats)
    if critic_optimizer is not None:
        learner.sync_critic_target()  # type: ignore[attr-defined]
    return all_stats
