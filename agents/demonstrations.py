"""Recorded demonstrations as ``bc``'s data set: a Minari dataset (Farama's offline-data format for
Gymnasium) cloned without a teacher model.

``teacher.path = "minari:ID"`` names a dataset in Minari's local store (``minari download ID``, or
one recorded with ``minari.DataCollector``; ``MINARI_DATASETS_PATH`` moves the store). dpd never
downloads one. Minari keeps each episode's observations, one more than its actions (the last is
where the episode ended), and its actions in env units: the pairs (observation, action) of the
first episodes, in recorded order, are the data set, and the student's loss is MSE on actions in
env units (there is no distribution to match). The recorded episodes' mean return stands in for
the teacher's return, and the recorded actions for its answers in the fidelity metrics.
"""

from dataclasses import dataclass
from typing import Dict, Optional

import gymnasium as gym
import numpy as np
import torch

from dpd.agents.distillation import TeacherAnswer
from dpd.agents.learner import Learner
from dpd.config import DATASET_PREFIX
from dpd.errors import UserError
from dpd.fidelity import policy_fidelity
from dpd.losses import PolicyOutput

# The answers' distribution kind: no learner's, so a student takes the recorded action as its
# target mean (``Learner.express_target``) and ``mse`` or ``nll`` as its loss.
RECORDED_KIND = "recorded"


def dataset_id(teacher_path: str) -> Optional[str]:
    """The Minari dataset a ``teacher.path`` names, or None for a model or run directory."""
    return teacher_path[len(DATASET_PREFIX) :] if teacher_path.startswith(DATASET_PREFIX) else None


@dataclass(frozen=True)
class Demonstrations:
    """The first ``len(observations)`` recorded steps of a dataset, raw, with their actions."""

    dataset_id: str
    observations: np.ndarray  # (steps, obs_dim) float32, as the env emitted them
    actions: np.ndarray  # (steps, act_dim) float32, env units
    mean_return: float  # over every episode of the dataset: the demonstrator's score

    def answers(self, start: int, count: int) -> TeacherAnswer:
        """The recorded actions of steps ``start`` to ``start + count`` as a teacher's answer."""
        actions = torch.as_tensor(self.actions[start : start + count])
        return TeacherAnswer(PolicyOutput(actions, None, actions), np.zeros(count), RECORDED_KIND)

    def fidelity(self, student: Learner, tolerance: float, states: int) -> Dict[str, float]:
        """Action MSE and agreement of ``student``'s deterministic actions with the recorded ones,
        on ``states`` recorded steps spread over the data set."""
        rows = np.linspace(0, len(self.observations) - 1, min(states, len(self.observations))).astype(np.int64)
        own = student.policy_on(self.observations[rows])
        recorded = torch.as_tensor(self.actions[rows])
        metrics = policy_fidelity(
            own,
            PolicyOutput(recorded),
            student.scale_action(own.env_action),
            student.scale_action(recorded),
            tolerance,
            comparable_distributions=False,
        )
        return {key: value for key, value in metrics.items() if value is not None}


def load_demonstrations(
    dataset: str, observation_space: gym.Space, action_space: gym.Space, steps: int, exact: bool
) -> Demonstrations:
    """The first ``steps`` recorded steps of a local Minari dataset (``exact``: exactly that many,
    else at most), checked against the student's env spaces; every fault is one line for the user."""
    try:
        import minari
    except ImportError:
        raise UserError("a Minari dataset needs the minari package: pip install 'dpd[minari]'") from None
    try:
        recorded = minari.load_dataset(dataset)
    except Exception as exc:  # Minari raises FileNotFoundError, ValueError or its own errors for a missing id
        local = ", ".join(sorted(minari.list_local_datasets())) or "none"
        raise UserError(
            f"no Minari dataset {dataset!r} in the local store ({type(exc).__name__}: {exc}); local datasets: {local}. "
            f"dpd does not download: run `minari download {dataset}` first"
        ) from None
    for name, theirs, ours in (
        ("observation", recorded.observation_space, observation_space),
        ("action", recorded.action_space, action_space),
    ):
        if not isinstance(theirs, gym.spaces.Box) or theirs.shape != ours.shape:
            raise UserError(f"Minari dataset {dataset!r} has {name} space {theirs}; the env's is {ours}")
    observations, actions, returns, total = [], [], [], 0
    for episode in recorded.iterate_episodes():
        returns.append(float(np.sum(episode.rewards)))
        if total >= steps:
            continue  # its return still counts in the demonstrator's score
        take = min(len(episode.actions), steps - total)
        observations.append(np.asarray(episode.observations[:take], dtype=np.float32))
        actions.append(np.asarray(episode.actions[:take], dtype=np.float32))
        total += take
    if total == 0 or (exact and total < steps):
        raise UserError(
            f"Minari dataset {dataset!r} holds {total} steps; teacher.dataset_steps asks for {steps}: ask for fewer"
        )
    return Demonstrations(dataset, np.concatenate(observations), np.concatenate(actions), float(np.mean(returns)))
