"""Dual Policy Distillation: N >= 2 peers that distill from each other where the peer is better.

The group trains in rounds. In a round every peer that has budget left trains one turn (at
least ``turn_steps`` env steps); the peers are independent then, so on the ``process`` and
``ray`` backends they train at once. At the end of the round, each learner that reached
distillation points during its turn (every ``distill.every`` iterations of its own, once it
has taken ``distill.start`` env steps) takes ``distill.steps`` gradient steps per point, each
on ``distill.batch`` raw states sampled from its peers' recent states, towards the peers'
action distributions on those states, weighted by the disadvantage weight of
``xi = V_peer - V_self`` (``dpd.weighting``). All targets of a round
are computed before any learner updates, so the order of the peers does not matter and every
backend gives the same result for the same seed.

With more than two peers, ``distill.combine`` says how a learner combines them:
- ``best`` (default): states are drawn evenly from all peers' buffers, and on each state the
  target is the peer with the highest value there. This is the hybrid policy of the paper's
  analysis (act like whoever is best at each state), generalised to N peers.
- ``round_robin``: each gradient step uses one peer, in turn, on that peer's own states.
With two peers both rules are the same: the one peer, on its own states.

``distill.gate=return`` admits only peers whose recent training return (mean raw return of their
last ``distill.gate_episodes`` episodes) is above the learner's own: a critic judged off its own
states can rate a weaker peer better, and the gate keeps the stronger peer from imitating it.
A learner with no such peer skips the round.

Peers may also learn from each other's experience (handed over after the turns, before the
distillation phase of a round):
- ``share.enabled``, off-policy peers: every transition a peer collected in its turn enters
  every other peer's replay buffer, raw (``dpd.agents.sharing``);
  With ``share.act=episode`` a round is one episode of one peer, the one with the fewest env
  steps so far (PIEKD: one learner acts per episode, all learn from the shared buffer);
- ``share.enabled``, on-policy peers: every peer's next update uses, besides its own rollout,
  the rollouts its peers collected in this round, importance-weighted (SEAC;
  ``dpd.agents.rollout_sharing``);
- ``guide.mode=best``: every ``guide.every`` env steps of a peer, the peer with the best recent
  training return becomes the leader and the others follow its actor (P3S; ``dpd.agents.guidance``);
- ``guide.mode=distill``: at the same elections the others take ``guide.steps`` plain imitation
  steps towards the leader on its recent states, each also moving their critics towards the
  leader's (``guide.critic``; PIEKD's periodic distillation of policy and Q).
"""

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from dpd.agents.backend import PeerBackend
from dpd.agents.distillation import DistillBatch, TeacherAnswer
from dpd.agents.guidance import choose_leader
from dpd.agents.learner import Learner
from dpd.agents.local_backend import LocalPeers
from dpd.agents.peer import Peer
from dpd.agents.peer_proxy import PeerProxy
from dpd.config import DistillConfig, GuideConfig, ShareConfig


@dataclass(frozen=True)
class PlannedStep:
    teachers: Tuple[int, ...]  # peers whose answers are compared on every state
    draws: Tuple[Tuple[int, np.ndarray], ...]  # (peer, indices into its state buffer)


def own_states(step: PlannedStep) -> bool:
    """Whether a step's one teacher answers on states drawn from its own buffer alone (two
    peers; ``round_robin``; PIEKD's leader)."""
    return len(step.teachers) == 1 and len(step.draws) == 1 and step.draws[0][0] == step.teachers[0]


class PeerGroup:
    """The peers of one run (on any backend) and the distillation between them. Each peer's
    ``DistillConfig`` (resolved for its algorithm) governs how it distills."""

    def __init__(
        self,
        backend: PeerBackend,
        specs: Sequence[Any],
        configs: Sequence[DistillConfig],
        seed: int,
        turn_steps: int = 0,
        share: Optional[ShareConfig] = None,
        guide: Optional[GuideConfig] = None,
    ) -> None:
        self.backend = backend
        self.share = share if share is not None else ShareConfig()
        self.guide = guide if guide is not None else GuideConfig()
        self.shared_bytes = 0  # bytes the backend moved to share transitions
        self.leader: Optional[int] = None  # the latest elected leader (guide=best)
        self.learners = [PeerProxy(backend, index, spec) for index, spec in enumerate(specs)]
        self.configs = list(configs)
        # One stream per learner: its samples do not depend on which peers sample before it.
        self.rngs = [np.random.default_rng([seed, index]) for index in range(len(specs))]
        # A learner's turn lasts at least this many env steps (and at least one iteration).
        self.turn_steps = turn_steps
        # (learners that distilled, bytes the backend moved) for each distillation phase
        self.exchanges: List[Tuple[int, int]] = []
        self.last_stats: Dict[int, List[Dict[str, float]]] = {}  # each learner's latest steps
        if self.share.enabled:
            backend.ask(Peer.start_sharing, {index: (self.share,) for index in range(len(self.learners))})

    @classmethod
    def local(
        cls,
        learners: Sequence[Learner],
        seed: int,
        turn_steps: int = 0,
        share: Optional[ShareConfig] = None,
        guide: Optional[GuideConfig] = None,
    ) -> "PeerGroup":
        """A sequential group of learners built in this process."""
        return cls(
            LocalPeers(learners),
            [learner.spec for learner in learners],
            [learner.distill_config for learner in learners],
            seed,
            turn_steps,
            share,
            guide,
        )

    @property
    def run_steps(self) -> int:
        """Env steps taken by all learners together: the budget the comparison is made at."""
        return sum(learner.num_timesteps for learner in self.learners)

    @property
    def done(self) -> bool:
        return all(learner.done for learner in self.learners)

    @property
    def random_state(self) -> List[Dict[str, Any]]:
        return [rng.bit_generator.state for rng in self.rngs]

    @random_state.setter
    def random_state(self, states: Any) -> None:
        if not isinstance(states, list):  # a run saved before per-learner streams: keep the fresh ones
            return
        for rng, state in zip(self.rngs, states):
            rng.bit_generator.state = state

    def save(self, directory: Path) -> None:
        """Nothing: a group carries nothing from round to round beyond its peers and its streams."""

    def restore(self, directory: Path) -> None:
        """Nothing (``save``)."""

    def train(
        self, after_turn: Optional[Callable[[int, int], None]] = None, after_round: Optional[Callable[[], None]] = None
    ) -> None:
        """Rounds until every learner has spent its budget; ``after_turn(index, steps_taken)``
        and ``after_round()`` let the training loop evaluate and checkpoint."""
        while not self.done:
            self.train_round(after_turn)
            if after_round is not None:
                after_round()

    def train_round(self, after_turn: Optional[Callable[[int, int], None]] = None) -> None:
        active = [index for index, learner in enumerate(self.learners) if not learner.done]
        whole_episode = self.share.act == "episode"
        if whole_episode:  # PIEKD: one peer acts, for one episode; the one with the fewest steps
            active = [min(active, key=lambda index: (self.learners[index].num_timesteps, index))]
        round_start = self.run_steps
        own_steps_before = max(learner.num_timesteps for learner in self.learners)
        reports = self.backend.ask(Peer.train_turn, {index: (round_start, self.turn_steps, whole_episode) for index in active})
        for index in active:
            self.learners[index].status = reports[index].status
            if after_turn is not None:
                after_turn(index, reports[index].taken)
        if self.share.enabled:
            self.share_transitions(active)
        own_steps_after = max(learner.num_timesteps for learner in self.learners)
        if self.guide.mode != "none" and own_steps_after // self.guide.every > own_steps_before // self.guide.every:
            self.elect()
        self.distill({index: reports[index].due for index in active if reports[index].due})

    # ----- shared experience and guidance by the best peer ------------------------------------

    def share_transitions(self, active: Sequence[int]) -> None:
        """Every transition the active peers collected this round to every other peer (its replay
        buffer or its next update), in peer order, so that every backend gives the same result."""
        before = self.backend.bytes_exchanged
        batches = self.backend.ask(Peer.take_transitions, {index: () for index in active})
        receivers = range(len(self.learners))  # a peer that is done too: its checkpoint holds the group's data
        self.backend.ask(Peer.add_transitions, {i: ([batches[j] for j in sorted(batches) if j != i],) for i in receivers})
        self.shared_bytes += self.backend.bytes_exchanged - before

    def recent_return(self, index: int) -> float:
        """Mean raw return of peer ``index``'s last ``guide.episodes`` training episodes (NaN before any)."""
        returns = self.learners[index].status.episode_returns[-self.guide.episodes :]
        return float(np.mean(returns)) if returns else float("nan")

    def elect(self) -> None:
        """Name the leader (the best recent training return); the others follow its actor
        (``best``) or are distilled towards it (``distill``)."""
        self.leader = choose_leader([self.recent_return(index) for index in range(len(self.learners))])
        if self.guide.mode == "distill":
            self.distill_from_leader()
            return
        guide = self.backend.ask_one(self.leader, Peer.guide, self.leader) if self.leader is not None else None
        leader = -1 if self.leader is None else self.leader
        followers = {i: (None if i == self.leader else guide, self.guide, leader) for i in range(len(self.learners))}
        self.backend.ask(Peer.follow, followers)

    def distill_from_leader(self) -> None:
        """PIEKD's step: ``guide.steps`` gradient steps of every other learner towards the
        leader's actions on the leader's recent states, unweighted (plain imitation), through the
        learner's loss (``distill.loss``), batch size and optimizer; with ``guide.critic`` each
        step also moves the learner's critics towards the leader's on those states."""
        leader = self.leader
        if leader is None or self.learners[leader].status.buffer_len == 0:
            return
        states = self.learners[leader].status.buffer_len
        plans = {
            i: [
                PlannedStep((leader,), ((leader, self.rngs[i].integers(0, states, size=self.configs[i].batch)),))
                for _ in range(self.guide.steps)
            ]
            for i in range(len(self.learners))
            if i != leader and not self.learners[i].done
        }
        if plans:
            self._distill_plans(plans, weighting="none", tag="guide/distill", critic=self.guide.critic)

    # ----- the distillation phase -------------------------------------------------------------

    def plan(self, index: int, rounds: int) -> List[PlannedStep]:
        """The gradient steps of ``rounds`` distillation rounds of learner ``index``: which
        peers it compares and which of their states it samples (from its own random stream)."""
        config = self.configs[index]
        peers = [
            j for j, peer in enumerate(self.learners) if j != index and peer.status.buffer_len > 0 and self.gate_open(index, j)
        ]
        if not peers:
            return []
        steps_before = (self.learners[index].iterations // config.every - rounds) * config.steps
        steps = []
        for step in range(rounds * config.steps):
            chosen = peers if config.combine == "best" else [peers[(steps_before + step) % len(peers)]]
            sizes = [len(part) for part in np.array_split(np.arange(config.batch), len(chosen))]
            draws = tuple(
                (j, self.rngs[index].integers(0, self.learners[j].status.buffer_len, size=size))
                for j, size in zip(chosen, sizes)
                if size > 0
            )
            steps.append(PlannedStep(tuple(chosen), draws))
        return steps

    def gate_open(self, index: int, peer: int) -> bool:
        """Whether learner ``index`` may distill from ``peer`` under its ``distill.gate``."""
        if self.configs[index].gate == "none":
            return True
        # NaN (no finished episode yet on either side) compares false: the gate stays closed.
        return self.learners[peer].status.recent_return > self.learners[index].status.recent_return

    def distill(self, due: Dict[int, int]) -> None:
        """Every due learner's distillation steps, with all targets taken before any update."""
        plans = {index: steps for index, steps in ((i, self.plan(i, rounds)) for i, rounds in due.items()) if steps}
        if plans:
            self.last_stats = self._distill_plans(plans)

    def _distill_plans(
        self, plans: Dict[int, List[PlannedStep]], weighting: Optional[str] = None, tag: str = "distill", critic: bool = False
    ) -> Dict[int, List[Dict[str, float]]]:
        """The planned steps of every learner, with all targets taken before any update;
        ``critic``: each step moves the critics too (guide=distill, one teacher per step)."""
        before = self.backend.bytes_exchanged
        if all(own_states(step) for steps in plans.values() for step in steps):  # fetch and answer in one trip
            states, answers = self._gather_own_answers(plans, critic)
        else:
            states = self._gather_states(plans)
            answers = self._gather_answers(plans, states, critic)
        batches = {
            i: [
                DistillBatch(states[(i, s)], tuple(answers[(i, s, k)] for k in step.teachers), weighting, tag, critic)
                for s, step in enumerate(plans[i])
            ]
            for i in sorted(plans)
        }
        stats = self.backend.ask(Peer.distill, {i: (batch,) for i, batch in batches.items()})
        self.exchanges.append((len(batches), self.backend.bytes_exchanged - before))
        return stats

    def _gather_own_answers(
        self, plans: Dict[int, List[PlannedStep]], critic: bool
    ) -> Tuple[Dict[Tuple[int, int], np.ndarray], Dict[Tuple[int, int, int], TeacherAnswer]]:
        """One request per teacher for its own states at every index drawn from it and its answer
        on them, split back per step (each step has one teacher, the peer its states come from)."""
        wanted: Dict[int, List[Tuple[Tuple[int, int], np.ndarray]]] = defaultdict(list)
        for i, steps in plans.items():
            for s, step in enumerate(steps):
                ((k, indices),) = step.draws
                wanted[k].append(((i, s), indices))
        requests = {k: (np.concatenate([idx for _, idx in wanted[k]]), critic) for k in sorted(wanted)}
        replies = self.backend.ask(Peer.answer_own, requests)
        states, answers = {}, {}
        for k, (reply_states, reply) in replies.items():
            offset = 0
            for (i, s), indices in wanted[k]:
                states[(i, s)] = reply_states[offset : offset + len(indices)]
                answers[(i, s, k)] = reply.part(offset, offset + len(indices))
                offset += len(indices)
        return states, answers

    def _gather_states(self, plans: Dict[int, List[PlannedStep]]) -> Dict[Tuple[int, int], np.ndarray]:
        """One request per peer for every state sampled from its buffer, split back per step."""
        wanted: Dict[int, List[Tuple[Tuple[int, int], np.ndarray]]] = defaultdict(list)
        for i, steps in plans.items():
            for s, step in enumerate(steps):
                for j, indices in step.draws:
                    wanted[j].append(((i, s), indices))
        requests = {j: (np.concatenate([idx for _, idx in wanted[j]]),) for j in sorted(wanted)}
        replies = self.backend.ask(Peer.states_at, requests)
        parts: Dict[Tuple[int, int], List[Tuple[int, np.ndarray]]] = defaultdict(list)
        for j, reply in replies.items():
            offset = 0
            for key, indices in wanted[j]:
                parts[key].append((j, reply[offset : offset + len(indices)]))
                offset += len(indices)
        # In the order of the step's draws, as a sequential sample would be.
        return {
            key: np.concatenate([states for _, states in sorted(chunks, key=lambda c: c[0])]) for key, chunks in parts.items()
        }

    def _gather_answers(
        self, plans: Dict[int, List[PlannedStep]], states: Dict[Tuple[int, int], np.ndarray], critic: bool = False
    ) -> Dict[Tuple[int, int, int], TeacherAnswer]:
        """One request per teacher for all the states it is asked about, split back per step."""
        questions: Dict[int, List[Tuple[int, int]]] = defaultdict(list)
        for i, steps in plans.items():
            for s, step in enumerate(steps):
                for k in step.teachers:
                    questions[k].append((i, s))
        replies = self.backend.ask(
            Peer.answer, {k: (np.concatenate([states[key] for key in questions[k]]), critic) for k in sorted(questions)}
        )
        answers = {}
        for k, reply in replies.items():
            offset = 0
            for i, s in questions[k]:
                size = len(states[(i, s)])
                answers[(i, s, k)] = reply.part(offset, offset + size)
                offset += size
        return answers

    def evaluation_metrics(self, learner: Any, mean_return: float, episodes: int, final: bool) -> Dict[str, float]:
        """Peers log their evaluation return alone (``Trainer``)."""
        return {}

    def close(self) -> None:
        self.backend.close()
