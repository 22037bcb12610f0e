"""The ``local`` backend: every peer in this process, served one after another.

This is the sequential group (the default, and what ``PeerGroup.local`` builds). Nothing crosses
a process boundary, but a peer that raises is reported as a peer process's failure would be, so
the training loop handles failures the same way on every backend.
"""

from typing import Any, List, Sequence, Set

from dpd.agents.backend import LearnerFactory, Message, MessageBackend, register_backend
from dpd.agents.learner import Learner
from dpd.agents.peer import Peer, PeerFailure, first_line
from dpd.errors import UserError


@register_backend("local")
class LocalPeers(MessageBackend):
    """Every peer in this process, served one after another: the sequential group."""

    def __init__(self, learners: Sequence[Learner]) -> None:
        self.peers = [Peer(learner) for learner in learners]
        self.names = [learner.spec.name for learner in learners]
        self.bytes_exchanged = 0  # nothing crosses a process boundary
        self._dead: Set[int] = set()

    @classmethod
    def build(cls, factories: Sequence[LearnerFactory], names: Sequence[str], address: str = "") -> "LocalPeers":
        return cls([factory() for factory in factories])

    def _exchange(self, request: str, messages: Sequence[Message]) -> List[Any]:
        replies = []
        for index, args in messages:
            try:
                replies.append(self.peers[index].handle(request, *args))
            except (UserError, KeyboardInterrupt):
                raise
            except Exception as exc:  # the same report as from a peer process
                self._dead.add(index)
                raise PeerFailure(index, self.names[index], f"{type(exc).__name__}: {first_line(exc)}") from exc
        return replies

    def alive(self, index: int) -> bool:
        return index not in self._dead

    def close(self) -> None:
        for peer in self.peers:
            peer.close()
