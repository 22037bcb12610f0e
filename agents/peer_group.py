"""Dual Policy Distillation: N >= 2 peers that distill from each other where the peer is better.

Peers train in turn, one iteration each. Every ``distill.every`` iterations of its own, a learner
takes ``distill.steps`` gradient steps, each on ``distill.batch`` raw states sampled from its
peers' recent states, towards the peers' action distributions on those states, weighted by the
disadvantage weight of ``xi = V_peer - V_self`` (``dpd.weighting``).

With more than two peers, ``distill.combine`` says how a learner combines them:
- ``best`` (default): states are drawn evenly from all peers' buffers, and on each state the
  target is the peer with the highest value there. This is the hybrid policy of the paper's
  analysis (act like whoever is best at each state), generalised to N peers.
- ``round_robin``: each gradient step uses one peer, in turn, on that peer's own states.
With two peers both rules are the same: the one peer, on its own states.
"""

from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np
import torch

from agents.learner import Learner
from dpd.losses import PolicyOutput
from dpd.weighting import disadvantage_weights

COMBINE_RULES = ("best", "round_robin")


class PeerGroup:
    """The learners of one run and the distillation between them. Each learner's own
    ``distill_config`` (resolved for its algorithm) governs how it distills."""

    def __init__(self, learners: Sequence[Learner], seed: int, turn_steps: int = 0) -> None:
        self.learners = list(learners)
        self.rng = np.random.default_rng(seed)
        self.turn = 0
        # A learner's turn lasts at least this many env steps (and at least one iteration).
        self.turn_steps = turn_steps

    @property
    def run_steps(self) -> int:
        """Env steps taken by all learners together: the budget the comparison is made at."""
        return sum(learner.num_timesteps for learner in self.learners)

    @property
    def done(self) -> bool:
        return all(learner.done for learner in self.learners)

    def next_learner(self) -> int:
        """The index of the next learner to train: learners alternate, skipping finished ones."""
        for offset in range(len(self.learners)):
            index = (self.turn + offset) % len(self.learners)
            if not self.learners[index].done:
                self.turn = index + 1
                return index
        raise RuntimeError("all learners are done")

    def train(self, after_iteration: Optional[Callable[[int, int], None]] = None) -> None:
        """Train every learner to its budget, in turns of at least ``turn_steps`` env steps;
        ``after_iteration(index, steps_taken)`` runs after each iteration."""
        while not self.done:
            index = self.next_learner()
            learner, taken_in_turn = self.learners[index], 0
            while True:
                taken = self.train_iteration(index)
                taken_in_turn += taken
                if after_iteration is not None:
                    after_iteration(index, taken)
                if learner.done or taken_in_turn >= self.turn_steps:
                    break

    def train_iteration(self, index: int) -> int:
        """One iteration of learner ``index``, then its distillation round when it is due."""
        learner = self.learners[index]
        taken = learner.train_iteration(self.run_steps)
        config = learner.distill_config
        if config.enabled and learner.iterations % config.every == 0:
            self.distill_round(index)
        return taken

    def distill_round(self, index: int) -> None:
        """``distill.steps`` gradient steps of learner ``index``, their diagnostics logged."""
        learner = self.learners[index]
        config = learner.distill_config
        peers = [peer for j, peer in enumerate(self.learners) if j != index and len(peer.states) > 0]
        if not peers:
            return
        rounds_before = (learner.iterations // config.every - 1) * config.steps
        for step in range(config.steps):
            chosen = peers
            if config.combine == "round_robin":
                chosen = [peers[(rounds_before + step) % len(peers)]]
            for key, value in self.distill_step(learner, chosen).items():
                learner.logger.record_mean(f"distill/{key}", value)

    def distill_step(self, learner: Learner, peers: Sequence[Learner]) -> Dict[str, float]:
        """One weighted distillation step of ``learner`` towards ``peers`` on their states."""
        config = learner.distill_config
        return distill_step(learner, peers, self.sample_states(peers, config.batch), config.weighting, config.alpha)

    def sample_states(self, peers: Sequence[Learner], batch: int) -> np.ndarray:
        """``batch`` raw states, split evenly over the peers' recent states."""
        sizes = [len(part) for part in np.array_split(np.arange(batch), len(peers))]
        return np.concatenate([peer.states.sample(size, self.rng) for peer, size in zip(peers, sizes) if size > 0])


def best_targets(learner: Learner, teachers: Sequence[Learner], states: np.ndarray) -> Tuple[PolicyOutput, np.ndarray]:
    """Per state, the output (in ``learner``'s distribution space) and raw value of the teacher
    (a peer, or the one teacher) with the highest value there."""
    values = np.stack([teacher.values_on(states) for teacher in teachers])  # (teachers, batch)
    best = torch.as_tensor(values.argmax(axis=0))
    outputs = [learner.express_target(teacher.policy_on(states), teacher.distribution_kind) for teacher in teachers]
    columns = torch.arange(len(states))

    def pick(field: str) -> Optional[torch.Tensor]:
        tensors = [getattr(output, field) for output in outputs]
        if any(tensor is None for tensor in tensors):
            return None
        return torch.stack([t.expand_as(outputs[0].mean) for t in tensors])[best, columns]

    target = PolicyOutput(pick("mean"), pick("log_std"), torch.stack([o.env_action for o in outputs])[best, columns])
    return target, values[best.numpy(), np.arange(len(states))]


def distill_step(
    learner: Learner, teachers: Sequence[Learner], states: np.ndarray, weighting: str, alpha: float, scale: float = 1.0
) -> Dict[str, float]:
    """One distillation step of ``learner`` towards ``teachers`` on raw ``states``, weighted by
    the disadvantage weights of ``xi = V_teacher - V_learner`` (times ``scale``); returns the
    diagnostics that are logged under ``distill/``."""
    target, teacher_values = best_targets(learner, teachers, states)
    weights = disadvantage_weights(teacher_values, learner.values_on(states), weighting, alpha)
    stats = {
        "peer_gap": weights.peer_gap,
        "peer_better_frac": weights.peer_better_frac,
        "weight_mean": weights.raw_mean,
        "weight_max": weights.raw_max,
    }
    if weights.weights.sum() > 0:  # the hard mask may select no state at all
        stats["loss"] = learner.distill_update(states, target, weights.weights * scale)
    return stats
