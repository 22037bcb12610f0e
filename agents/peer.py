"""A peer: one learner and the requests a peer group makes of it, and the messages they return.

A ``Peer`` wraps one learner and answers the group's requests (train a turn, hand over states,
answer with its policy output and values on given states, distill from given targets, save,
evaluate). Its public methods are the requests: a backend (``dpd.agents.backend``) runs them
wherever the peer lives, through ``Peer.handle``, so one algorithm runs unchanged on every
backend. Peers exchange distillation batches (raw states, policy outputs, raw values), never
models.

Each peer owns its global random state (Python, NumPy, torch: SB3 draws from them;
``dpd.agents.random_state``), so peers sharing one process draw exactly the numbers they would
draw in processes of their own: a parallel run reproduces the sequential run with the same seed.
"""

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from dpd.agents.distillation import DistillBatch, TeacherAnswer, answer_on, distill_steps
from dpd.agents.guidance import Guide
from dpd.agents.learner import Learner
from dpd.agents.off_policy import OffPolicyLearner
from dpd.agents.random_state import PrivateRandomState
from dpd.agents.sharing import Experience
from dpd.config import GuideConfig, ShareConfig


def first_line(exc: BaseException, limit: int = 300) -> str:
    """An exception as one short line: some (torch's) span many lines with whole tensors."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _subclass_names(cls: type) -> Set[str]:
    return {cls.__name__}.union(*(_subclass_names(sub) for sub in cls.__subclasses__()))


class PeerFailure(RuntimeError):
    """A peer died (its process was killed) or raised; names the peer and the cause, which
    every backend writes as ``<exception type>: <first line of its message>``."""

    def __init__(self, index: int, name: str, cause: str, node_lost: bool = False) -> None:
        super().__init__(f"{name} failed: {cause}")
        self.index = index
        self.name = name
        self.cause = cause
        self.node_lost = node_lost  # it lived on a Ray node that died: not the peer's fault

    @property
    def os_error(self) -> bool:
        """Whether the peer raised an ``OSError`` (a full disk, say): the fault of where it writes,
        not of the peer. Told by the type's name, as that is what crosses a process boundary."""
        return self.cause.partition(":")[0] in _subclass_names(OSError)


@dataclass(frozen=True)
class PeerStatus:
    num_timesteps: int
    iterations: int
    buffer_len: int
    planned_steps: int
    done: bool
    recent_return: float  # mean raw return of its last distill.gate_episodes training episodes
    episode_returns: Tuple[float, ...] = ()  # raw returns of its last (up to 100) training episodes
    gradient_updates: int = 0  # RL gradient updates so far


@dataclass(frozen=True)
class TurnReport:
    taken: int  # env steps of the turn
    due: int  # distillation rounds that fell due during the turn
    status: PeerStatus


class Peer:
    """One learner and what a peer group asks of it; see the module docstring."""

    def __init__(self, learner: Learner) -> None:
        self.learner = learner
        # A fresh, peer-specific random state: the same whichever process the peer lives in.
        seed = int(np.random.default_rng([learner.spec.seed, learner.num_timesteps]).integers(2**31))
        self._random_state = PrivateRandomState(seed)

    def handle(self, request: str, *args: Any) -> Any:
        """Run the request (the name of one of the methods below) with this peer's random state
        in place of the process's."""
        with self._random_state.active():
            return getattr(self, request)(*args)

    # ----- requests -----------------------------------------------------------------------

    def status(self) -> PeerStatus:
        learner = self.learner
        recent = learner.recent_return(learner.distill_config.gate_episodes)
        return PeerStatus(
            learner.num_timesteps,
            learner.iterations,
            len(learner.states),
            learner.planned_steps,
            learner.done,
            recent,
            learner.episode_returns(),
            learner.gradient_updates,
        )

    def start(self, tensorboard_dir: Any, callback: Optional[BaseCallback] = None) -> PeerStatus:
        self.learner.start(tensorboard_dir, callback)
        return self.status()

    def train_turn(self, run_steps_before: int, turn_steps: int, whole_episode: bool = False) -> TurnReport:
        """Iterations until the turn has ``turn_steps`` env steps (at least one), or, with
        ``whole_episode`` (``share.act=episode``), until an episode ends; or until the budget is
        spent. Counts the distillation rounds that fell due."""
        learner, config = self.learner, self.learner.distill_config
        episodes_before = self._off_policy().finished_episodes if whole_episode else 0
        taken = due = 0
        while True:
            taken += learner.train_iteration(run_steps_before + taken)
            if config.due(learner.iterations, learner.num_timesteps):
                due += 1
            if whole_episode:
                turn_over = self._off_policy().finished_episodes > episodes_before
            else:
                turn_over = taken >= turn_steps
            if learner.done or turn_over:
                break
        if not learner.parameters_finite():
            raise FloatingPointError(f"{learner.spec.name}: NaN or infinity in the policy after an RL update")
        return TurnReport(taken, due, self.status())

    def states_at(self, indices: np.ndarray) -> np.ndarray:
        return self.learner.states.at(indices)

    def answer(self, states: np.ndarray, critic: bool = False) -> TeacherAnswer:
        return answer_on(self.learner, states, critic)

    def answer_own(self, indices: np.ndarray, critic: bool = False) -> Tuple[np.ndarray, TeacherAnswer]:
        """Its buffered raw states at ``indices`` and its answer on them: one trip where a peer
        answers on states from its own buffer (two peers; one teacher per step)."""
        states = self.states_at(indices)
        return states, self.answer(states, critic)

    def distill(self, batches: Sequence[DistillBatch]) -> List[Dict[str, float]]:
        """One weighted gradient step per batch (``distill_steps``); the peer computes its own
        values and weights. Returns each step's diagnostics."""
        return distill_steps(self.learner, batches)

    # ----- shared experience (dpd.agents.sharing, .rollout_sharing) and guidance (.guidance) --

    def _off_policy(self) -> OffPolicyLearner:
        assert isinstance(self.learner, OffPolicyLearner), "needs an off-policy peer"
        return self.learner

    def start_sharing(self, config: ShareConfig) -> None:
        """From now on, keep own experience for the peers and learn from theirs."""
        self.learner.start_sharing(config)

    def take_transitions(self) -> Experience:
        """Own experience since the last hand-over, raw."""
        return self.learner.take_transitions()

    def add_transitions(self, batches: Sequence[Experience]) -> int:
        """Peers' experience to learn from; logged as ``share/transitions_in``."""
        received = self.learner.add_transitions(batches)
        self.learner.logger.record_mean("share/transitions_in", received)
        return received

    def guide(self, index: int) -> Guide:
        """This peer leads: a frozen copy of its actor for the others."""
        return self.learner.guide(index)

    def follow(self, guide: Optional[Guide], config: GuideConfig, leader: int) -> Dict[str, float]:
        """A new election (``leader`` -1: none yet); logged as ``guide/*``."""
        stats = self.learner.follow(guide, config)
        for key, value in {"leader": leader, **stats}.items():
            self.learner.logger.record(f"guide/{key}", value)
        return stats

    def evaluate(self, episodes: int) -> Tuple[float, float]:
        return self.learner.evaluate(episodes)

    def log(self, metrics: Dict[str, float], step: int) -> None:
        self.learner.log(metrics, step)

    def parameters_finite(self) -> bool:
        return self.learner.parameters_finite()

    def save(self, directory: Any) -> None:
        """Save the learner; one with NaN or infinite parameters is refused (a checkpoint that
        loads but cannot act would make every ``--resume`` fail)."""
        if not self.learner.parameters_finite():
            raise FloatingPointError(f"{self.learner.spec.name}: NaN or infinity in the parameters; not saved")
        self.learner.save(directory)

    def finish(self) -> None:
        self.learner.finish()

    def close(self) -> None:
        self.learner.close()
