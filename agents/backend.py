"""Where the peers of a group live, behind one typed interface; backends registered by name.

The group (``dpd.agents.peer_group``) talks to its peers only through a ``PeerBackend``, so one
algorithm runs unchanged on every backend: all peers in this process (``local``), one process
each (``process``, ``--parallel``), or Ray actors (``ray``). A request goes to one peer, or to
several at once (a mapping from peer index to that peer's arguments, answered by a mapping from
peer index to its reply); requests to several peers are sent to all before any reply is
awaited, so peers in processes or actors work at once.

A backend is only a transport. ``MessageBackend`` turns each typed request into messages for the
``Peer`` method of the same name (``dpd.agents.peer``), and each backend delivers messages with
its one ``_exchange``. A new request is therefore a method on ``Peer`` and a method on
``PeerBackend`` and ``MessageBackend`` here; no backend changes.

Backends register under their name with ``@register_backend("name")``, as losses do
(``dpd.losses.registry``); ``make_backend`` builds one by name.
"""

from abc import ABC, abstractmethod
from typing import (
    Any,
    Callable,
    Dict,
    List,
    Mapping,
    Optional,
    Protocol,
    Sequence,
    Tuple,
    Type,
    TypeVar,
)

import numpy as np

from dpd.agents.distillation import DistillBatch, TeacherAnswer
from dpd.agents.guidance import Guide
from dpd.agents.learner import Learner
from dpd.agents.peer import Peer, PeerStatus, TurnReport
from dpd.agents.sharing import Experience
from dpd.config import GuideConfig, ShareConfig
from dpd.registry import Registry

LearnerFactory = Callable[[], Learner]
Message = Tuple[int, Tuple[Any, ...]]  # (peer index, arguments of the request)
Stats = List[Dict[str, float]]  # the diagnostics of each distillation step


class PeerBackend(Protocol):
    """The peers of a group as the group sees them, wherever they live. Every request may raise
    ``PeerFailure`` (one line: the peer's name and the cause) or, for a user's mistake such as
    a hyperparameter SB3 rejects, ``UserError``."""

    bytes_exchanged: int  # bytes of requests and replies that crossed a process boundary

    def status(self, index: int) -> PeerStatus: ...

    def start(self, index: int, tensorboard_dir: Optional[Any], callback: Optional[Any] = None) -> PeerStatus:
        """Ready the peer to train; ``callback`` is the user's SB3 callback for it (pickled to
        the peer's process or actor where it lives elsewhere)."""
        ...

    def train_turns(self, turns: Mapping[int, Tuple[int, int, bool]]) -> Dict[int, TurnReport]:
        """One turn of each peer ``index`` in ``turns``, given ``(run_steps_before, turn_steps,
        whole_episode)`` (``Peer.train_turn``)."""
        ...

    def states_at(self, requests: Mapping[int, np.ndarray]) -> Dict[int, np.ndarray]:
        """Each peer's buffered raw states at the given indices."""
        ...

    def answer(self, requests: Mapping[int, np.ndarray], critic: bool = False) -> Dict[int, TeacherAnswer]:
        """Each peer's policy output and values on the given raw states (and, with ``critic``,
        its critics' answer, ``Peer.answer``)."""
        ...

    def distill(self, batches: Mapping[int, Sequence[DistillBatch]]) -> Dict[int, Stats]:
        """One distillation step of each peer per batch; each step's diagnostics."""
        ...

    def start_sharing(self, configs: Mapping[int, ShareConfig]) -> None:
        """Each peer keeps its experience for the others from now on (share=on)."""
        ...

    def take_transitions(self, indices: Sequence[int]) -> Dict[int, Experience]:
        """Each peer's own experience since it last handed it over (share=on)."""
        ...

    def add_transitions(self, batches: Mapping[int, Sequence[Experience]]) -> Dict[int, int]:
        """Peers' experience for each peer to learn from; how many transitions each received."""
        ...

    def guide(self, index: int) -> Guide:
        """A frozen copy of the leader's actor (guide=best)."""
        ...

    def follow(self, guides: Mapping[int, Tuple[Optional[Guide], GuideConfig, int]]) -> Dict[int, Dict[str, float]]:
        """Each peer's new guide (None: it leads, or no leader yet), settings and leader index."""
        ...

    def evaluate(self, index: int, episodes: int) -> Tuple[float, float]: ...

    def log(self, index: int, metrics: Dict[str, float], step: int) -> None: ...

    def save(self, index: int, directory: Any) -> None: ...

    def parameters_finite(self, index: int) -> bool:
        """Whether every parameter of the peer's policy is finite."""
        ...

    def finish(self, index: int) -> None: ...

    def alive(self, index: int) -> bool:
        """Whether the peer still answers (it has not died or raised)."""
        ...

    def close(self) -> None:
        """Close the learners that still answer; leave no process or actor behind."""
        ...


class MessageBackend(ABC):
    """A ``PeerBackend`` as a transport: each typed request becomes one message per peer, for
    the ``Peer`` method of that name; a backend only delivers messages (``_exchange``)."""

    bytes_exchanged: int

    @classmethod
    @abstractmethod
    def build(cls, factories: Sequence[LearnerFactory], names: Sequence[str], address: str) -> "MessageBackend":
        """The backend whose peers' learners ``factories`` build (where the peers live), named
        ``names``; ``address`` is the Ray cluster's (empty: a local instance)."""

    @abstractmethod
    def _exchange(self, request: str, messages: Sequence[Message]) -> List[Any]:
        """Send ``request`` to each message's peer with its arguments, all before awaiting any
        reply; the replies in the order of ``messages``. Raises the first failure once every
        reply is in."""

    @abstractmethod
    def alive(self, index: int) -> bool: ...

    @abstractmethod
    def close(self) -> None: ...

    def _ask(self, request: Callable[..., Any], arguments: Mapping[int, Tuple[Any, ...]]) -> Dict[int, Any]:
        """``request`` (a ``Peer`` method) of every peer in ``arguments``, at once."""
        indices = list(arguments)
        replies = self._exchange(request.__name__, [(index, tuple(arguments[index])) for index in indices])
        return dict(zip(indices, replies))

    def _ask_one(self, index: int, request: Callable[..., Any], *args: Any) -> Any:
        return self._exchange(request.__name__, [(index, args)])[0]

    # ----- the typed requests (see PeerBackend) ----------------------------------------------

    def status(self, index: int) -> PeerStatus:
        return self._ask_one(index, Peer.status)

    def start(self, index: int, tensorboard_dir: Optional[Any], callback: Optional[Any] = None) -> PeerStatus:
        return self._ask_one(index, Peer.start, tensorboard_dir, callback)

    def train_turns(self, turns: Mapping[int, Tuple[int, int, bool]]) -> Dict[int, TurnReport]:
        return self._ask(Peer.train_turn, turns)

    def states_at(self, requests: Mapping[int, np.ndarray]) -> Dict[int, np.ndarray]:
        return self._ask(Peer.states_at, {index: (indices,) for index, indices in requests.items()})

    def answer(self, requests: Mapping[int, np.ndarray], critic: bool = False) -> Dict[int, TeacherAnswer]:
        return self._ask(Peer.answer, {index: (states, critic) for index, states in requests.items()})

    def distill(self, batches: Mapping[int, Sequence[DistillBatch]]) -> Dict[int, Stats]:
        return self._ask(Peer.distill, {index: (batch,) for index, batch in batches.items()})

    def start_sharing(self, configs: Mapping[int, ShareConfig]) -> None:
        self._ask(Peer.start_sharing, {index: (config,) for index, config in configs.items()})

    def take_transitions(self, indices: Sequence[int]) -> Dict[int, Experience]:
        return self._ask(Peer.take_transitions, {index: () for index in indices})

    def add_transitions(self, batches: Mapping[int, Sequence[Experience]]) -> Dict[int, int]:
        return self._ask(Peer.add_transitions, {index: (list(parts),) for index, parts in batches.items()})

    def guide(self, index: int) -> Guide:
        return self._ask_one(index, Peer.guide, index)

    def follow(self, guides: Mapping[int, Tuple[Optional[Guide], GuideConfig, int]]) -> Dict[int, Dict[str, float]]:
        return self._ask(Peer.follow, guides)

    def evaluate(self, index: int, episodes: int) -> Tuple[float, float]:
        return self._ask_one(index, Peer.evaluate, episodes)

    def log(self, index: int, metrics: Dict[str, float], step: int) -> None:
        self._ask_one(index, Peer.log, metrics, step)

    def save(self, index: int, directory: Any) -> None:
        self._ask_one(index, Peer.save, directory)

    def parameters_finite(self, index: int) -> bool:
        return bool(self._ask_one(index, Peer.parameters_finite))

    def finish(self, index: int) -> None:
        self._ask_one(index, Peer.finish)


# ----- the registry ------------------------------------------------------------------------------

Backend = TypeVar("Backend", bound=Type[MessageBackend])

BACKENDS: Registry[Type[MessageBackend]] = Registry("backend")  # name -> backend class


def register_backend(name: str) -> Callable[[Backend], Backend]:
    """Class decorator: make a backend available to ``make_backend`` under ``name``."""
    return BACKENDS.register(name)


def available_backends() -> List[str]:
    """The registered backend names, sorted."""
    return BACKENDS.names()


def make_backend(kind: str, factories: Sequence[LearnerFactory], names: Sequence[str], address: str = "") -> PeerBackend:
    """The peers of a group on backend ``kind`` (one of ``BACKENDS``); a ``UserError`` naming
    the valid choices otherwise."""
    backend_class = BACKENDS.get_or_refuse(kind)
    return backend_class.build(factories, names, address)
