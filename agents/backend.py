"""Where the peers of a group live, behind one typed interface; backends registered by name.

The group (``dpd.agents.peer_group``) talks to its peers only through a ``PeerBackend``, so one
algorithm runs unchanged on every backend: all peers in this process (``local``), one process
each (``process``, ``--parallel``), or Ray actors (``ray``). A request goes to one peer, or to
several at once (a mapping from peer index to that peer's arguments, answered by a mapping from
peer index to its reply); requests to several peers are sent to all before any reply is
awaited, so peers in processes or actors work at once.

A request is declared once, as a method of ``Peer`` (``dpd.agents.peer``): its arguments and
its reply are that method's. The group names the method (``backend.ask(Peer.train_turn,
...)``); a backend is only a transport, which ``MessageBackend`` turns into messages for the
``Peer`` method of that name, delivered by each backend's one ``_exchange``. A new request is
therefore a method on ``Peer``; no backend changes.

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
    Protocol,
    Sequence,
    Tuple,
    Type,
    TypeVar,
)

from dpd.agents.learner import Learner
from dpd.registry import Registry

LearnerFactory = Callable[[], Learner]
Message = Tuple[int, Tuple[Any, ...]]  # (peer index, arguments of the request)
Reply = TypeVar("Reply")  # what a request's ``Peer`` method returns


class PeerBackend(Protocol):
    """The peers of a group as the group sees them, wherever they live.

    A request is a method of ``Peer`` (``dpd.agents.peer``), declared there once with its
    arguments and its reply; the group names it (``backend.ask(Peer.answer, {0: (states,
    False)})``) and the backend carries it. Every request may raise ``PeerFailure`` (one line:
    the peer's name and the cause) or, for a user's mistake such as a hyperparameter SB3
    rejects, ``UserError``."""

    bytes_exchanged: int  # bytes of requests and replies that crossed a process boundary

    def ask(self, request: Callable[..., Reply], arguments: Mapping[int, Tuple[Any, ...]]) -> Dict[int, Reply]:
        """``request`` of every peer in ``arguments`` with that peer's arguments, sent to all
        before any reply is awaited; the replies by peer index."""
        ...

    def ask_one(self, index: int, request: Callable[..., Reply], *args: Any) -> Reply:
        """``request`` of peer ``index``."""
        ...

    def alive(self, index: int) -> bool:
        """Whether the peer still answers (it has not died or raised)."""
        ...

    def close(self) -> None:
        """Close the learners that still answer; leave no process or actor behind."""
        ...


class MessageBackend(ABC):
    """A ``PeerBackend`` as a transport: a request becomes one message per peer, for the ``Peer``
    method of that name; a backend only delivers messages (``_exchange``)."""

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

    def ask(self, request: Callable[..., Reply], arguments: Mapping[int, Tuple[Any, ...]]) -> Dict[int, Reply]:
        indices = list(arguments)
        replies = self._exchange(request.__name__, [(index, tuple(arguments[index])) for index in indices])
        return dict(zip(indices, replies))

    def ask_one(self, index: int, request: Callable[..., Reply], *args: Any) -> Reply:
        return self._exchange(request.__name__, [(index, args)])[0]


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
