"""The ``process`` backend (``--parallel``): one spawned process per peer, talking over a pipe.

Each peer process builds its learner, then answers requests (pickled ``(request, arguments)``
messages) until told to close or until the group's end of the pipe is gone. Requests to several
peers are sent to all before any reply is awaited, so the peers work at once, one core and one
torch thread each. The bytes of every message both ways are counted (``bytes_exchanged``): the
cost of the distillation exchange.
"""

import multiprocessing
import os
import pickle
from typing import Any, Callable, Dict, List, Sequence

import torch

from dpd.agents.backend import LearnerFactory, Message, MessageBackend, register_backend
from dpd.agents.learner import Learner
from dpd.agents.peer import Peer, PeerFailure, first_line
from dpd.errors import UserError
from dpd.processes import die_with_parent


def _serve(factory: Callable[[], Learner], connection: Any, parent: int) -> None:
    """A peer process: build the learner, then answer requests until told to close or until
    the group's end of the pipe is gone. If the group dies (``parent``, its pid), no orphan
    survives it, and none prints a BrokenPipeError traceback on the terminal the group had."""
    die_with_parent(parent)
    torch.set_num_threads(1)
    try:
        try:
            peer = Peer(factory())
        except BaseException as exc:  # reported to the group, which raises it there
            connection.send(("error", type(exc).__name__, first_line(exc, limit=2000)))
            return
        connection.send(("ok", peer.status()))
        while True:
            request, args = connection.recv()
            try:
                reply: Any = ("ok", peer.handle(request, *args))
            except BaseException as exc:
                reply = ("error", type(exc).__name__, first_line(exc, limit=2000))
            connection.send(reply)
            if request == Peer.close.__name__:
                break
    except (EOFError, OSError, KeyboardInterrupt):  # the group is gone, or Ctrl-C reached us too
        pass


@register_backend("process")
class ProcessPeers(MessageBackend):
    """One process per peer (``--parallel``), one core and one torch thread each. Requests to
    several peers are sent to all before any reply is awaited, so the peers work at once."""

    def __init__(self, factories: Sequence[LearnerFactory], names: Sequence[str]) -> None:
        context = multiprocessing.get_context("spawn")
        self.names = list(names)
        self.connections = []
        self.processes = []
        self.bytes_exchanged = 0
        self._dead: Dict[int, str] = {}
        for factory, name in zip(factories, names):
            ours, theirs = context.Pipe()
            process = context.Process(target=_serve, args=(factory, theirs, os.getpid()), name=f"dpd {name}", daemon=True)
            process.start()
            theirs.close()
            self.connections.append(ours)
            self.processes.append(process)
        try:
            self._receive_all(range(len(self.names)))
        except BaseException:
            self.close()
            raise

    @classmethod
    def build(cls, factories: Sequence[LearnerFactory], names: Sequence[str], address: str = "") -> "ProcessPeers":
        return cls(factories, names)

    def _exchange(self, request: str, messages: Sequence[Message]) -> List[Any]:
        for index, args in messages:
            self._send(index, (request, args))
        return self._receive_all([index for index, _ in messages])

    def _send(self, index: int, message: Any) -> None:
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        self.bytes_exchanged += len(data)
        try:
            self.connections[index].send_bytes(data)
        except (BrokenPipeError, OSError):
            pass  # the receive below reports the dead peer

    def _receive_all(self, indices: Sequence[int]) -> List[Any]:
        """Every reply (so no answer is left in a pipe), then the first failure, if any."""
        replies, failures = [], []
        for index in indices:
            try:
                data = self.connections[index].recv_bytes()
                self.bytes_exchanged += len(data)
                reply = pickle.loads(data)
            except (EOFError, OSError):
                self.processes[index].join(timeout=5)
                reply = ("error", "process died", f"exit code {self.processes[index].exitcode}")
            if reply[0] == "error":
                self._dead[index] = f"{reply[1]}: {reply[2]}"
                failures.append((index, reply[1], reply[2]))
                replies.append(None)
            else:
                replies.append(reply[1])
        if failures:
            index, kind, message = failures[0]
            if kind == "UserError":  # e.g. a hyperparameter SB3 rejects: one line, no traceback
                raise UserError(message)
            raise PeerFailure(index, self.names[index], f"{kind}: {message}")
        return replies

    def alive(self, index: int) -> bool:
        return index not in self._dead and self.processes[index].is_alive()

    def close(self) -> None:
        """Close every peer process that still runs (one whose request raised still answers: told
        to close, it ends at once rather than after ``join``'s timeout), then make sure none is left."""
        living = [index for index in range(len(self.processes)) if self.processes[index].is_alive()]
        for index in living:
            self._send(index, (Peer.close.__name__, ()))
        for index in living:
            if self.connections[index].poll(30):
                try:
                    self.connections[index].recv_bytes()
                except (EOFError, OSError):
                    pass
        for process in self.processes:
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
                process.join()
        for connection in self.connections:
            connection.close()
