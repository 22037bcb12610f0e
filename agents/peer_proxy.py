"""What the training loop sees of a peer wherever it lives.

The training loop (``dpd.agents.trainer``) evaluates, logs, saves and finishes learners; a
``PeerProxy`` lets it do so for a peer in another process or actor as for a learner in this one:
it holds the peer's spec and its last reported status, and forwards requests to the peer's
backend.
"""

from typing import Any, Dict, Optional, Tuple

from dpd.agents.backend import PeerBackend
from dpd.agents.peer import Peer, PeerStatus


class PeerProxy:
    """What the training loop sees of a peer wherever it lives: its spec, its last reported
    status, and the requests it forwards through the backend."""

    def __init__(self, backend: PeerBackend, index: int, spec: Any, status: Optional[PeerStatus] = None) -> None:
        self.backend = backend
        self.index = index
        self.spec = spec
        self.status = status if status is not None else backend.ask_one(index, Peer.status)

    @property
    def num_timesteps(self) -> int:
        return self.status.num_timesteps

    @property
    def iterations(self) -> int:
        return self.status.iterations

    @property
    def planned_steps(self) -> int:
        return self.status.planned_steps

    @property
    def done(self) -> bool:
        return self.status.done

    @property
    def gradient_updates(self) -> int:
        return self.status.gradient_updates

    def episode_returns(self) -> Tuple[float, ...]:
        return self.status.episode_returns

    def start(self, tensorboard_dir: Any, callback: Any = None) -> None:
        self.status = self.backend.ask_one(self.index, Peer.start, tensorboard_dir, callback)

    def evaluate(self, episodes: int) -> Tuple[float, float]:
        return self.backend.ask_one(self.index, Peer.evaluate, episodes)

    def log(self, metrics: Dict[str, float], step: int) -> None:
        self.backend.ask_one(self.index, Peer.log, metrics, step)

    def save(self, directory: Any) -> None:
        self.backend.ask_one(self.index, Peer.save, directory)

    def sound(self) -> bool:
        """Whether the peer may be checkpointed as it is: it still answers (it has not died or
        raised) and its parameters are finite."""
        return self.backend.alive(self.index) and bool(self.backend.ask_one(self.index, Peer.parameters_finite))

    def finish(self) -> None:
        self.backend.ask_one(self.index, Peer.finish)
