"""The ``ray`` backend (``--backend ray``): peers as Ray actors, the requests of a peer process
through Ray.

Requests and their batches (raw states, policy outputs, values) travel as Ray task arguments
and results, that is through Ray's object store; models never leave their actor. Ray is an
optional extra (``pip install '.[ray]'``), imported only when a Ray backend or a Ray benchmark
pool (``dpd.bench.runner``) is built, so the backend is registered, and named in errors, whether
Ray is installed or not.
"""

import contextlib
import importlib
import os
import pickle
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Set

from dpd.agents.backend import LearnerFactory, Message, MessageBackend, register_backend
from dpd.agents.learner import Learner
from dpd.agents.peer import Peer, PeerFailure, first_line
from dpd.errors import UserError
from dpd.processes import Reaper

RAY_INSTALL_HINT = "the ray backend needs Ray: pip install ray (or, in the dpd checkout, pip install -e '.[ray]')"


def import_ray() -> Any:
    """The ``ray`` module; a ``UserError`` saying how to install it where it is missing."""
    try:
        import ray
    except ImportError:
        raise UserError(RAY_INSTALL_HINT) from None
    return ray


class LocalRay:
    """The Ray instance dpd starts when no ``--address`` names a cluster: one job, to own it.

    It listens on the loopback only, not on the machine's network interfaces (Ray passes pickles
    between its processes, so anyone who could reach it could run code). On Linux Ray takes the
    machine's network address for its node whenever clusters are enabled, even when asked for
    127.0.0.1 (``ray.init(_node_ip_address=...)`` resolves the loopback to that address), and its
    servers listen on all interfaces unless the node's address is 127.0.0.1; with clusters
    disabled (what ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` sets) the node is 127.0.0.1 and every
    server listens there. A ``Reaper`` ends the instance's processes if this process is killed:
    Ray's own fate sharing ends its direct children, but its agents outlive a killed driver."""

    def __init__(self, cpus: int, options: Dict[str, Any]) -> None:
        self.ray = import_ray()
        self.reaper = Reaper.start()
        try:
            with loopback_node(self.ray):
                self.ray.init(num_cpus=cpus, **options)
        except BaseException:
            self._stop_reaper()
            raise

    def stop(self) -> None:
        try:
            self.ray.shutdown()
        finally:
            self._stop_reaper()

    def _stop_reaper(self) -> None:
        if self.reaper is not None:
            self.reaper.stop()
            self.reaper = None


@contextlib.contextmanager
def loopback_node(ray: Any) -> Iterator[None]:
    """Ray starts its node on 127.0.0.1 inside this block (see ``LocalRay``). Ray reads the
    setting when it resolves the node's address, in ``ray.init``; it is restored after."""
    constants = importlib.import_module("ray._private.ray_constants")
    saved = getattr(constants, "ENABLE_RAY_CLUSTER", True)
    constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        constants.ENABLE_RAY_CLUSTER = saved


def connect(address: str, cpus_needed: int) -> Optional[LocalRay]:
    """Join the cluster at ``address``, or start a local instance with a CPU per peer (at least
    the machine's cores). Returns the local instance this process started (and so must stop),
    or None where it joined a cluster or found Ray already initialised."""
    ray = import_ray()
    if ray.is_initialized():
        return None
    options = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    if address:
        # A cluster on this machine's loopback (a simulated one): Ray would otherwise look for it
        # at the machine's network address (see ``LocalRay``) and not find it.
        on_loopback = address.rpartition(":")[0] in ("127.0.0.1", "localhost")
        with loopback_node(ray) if on_loopback else contextlib.nullcontext():
            ray.init(address=address, **options)
        return None
    return LocalRay(max(os.cpu_count() or 1, cpus_needed), options)


class RayPeer:
    """The actor: one ``Peer`` in a single-threaded Ray worker."""

    def __init__(self, factory: Callable[[], Learner]) -> None:
        import torch

        torch.set_num_threads(1)
        self.peer = Peer(factory())

    def handle(self, request: str, *args: Any) -> Any:
        return self.peer.handle(request, *args)


@register_backend("ray")
class RayPeers(MessageBackend):
    """One Ray actor per peer, one CPU each; the behaviour of ``ProcessPeers``."""

    def __init__(self, factories: Sequence[LearnerFactory], names: Sequence[str], address: str = "") -> None:
        self.ray = import_ray()
        self.names = list(names)
        self.bytes_exchanged = 0  # pickled size of requests and replies: what the object store carries
        self._dead: Set[int] = set()
        self._local_ray = connect(address, len(factories))
        actor_class = self.ray.remote(num_cpus=1)(RayPeer)
        self.actors = [actor_class.remote(factory) for factory in factories]
        try:
            self._exchange(Peer.status.__name__, [(index, ()) for index in range(len(self.actors))])  # built, or the error
        except BaseException:
            self.close()
            raise

    @classmethod
    def build(cls, factories: Sequence[LearnerFactory], names: Sequence[str], address: str = "") -> "RayPeers":
        return cls(factories, names, address)

    def _exchange(self, request: str, messages: Sequence[Message]) -> List[Any]:
        references = [self.actors[index].handle.remote(request, *args) for index, args in messages]
        self.bytes_exchanged += sum(len(pickle.dumps(args, protocol=pickle.HIGHEST_PROTOCOL)) for _, args in messages)
        replies, failures = [], []
        for (index, _), reference in zip(messages, references):
            try:
                reply = self.ray.get(reference)
                self.bytes_exchanged += len(pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL))
                replies.append(reply)
            except self.ray.exceptions.RayTaskError as exc:
                cause = exc.cause if getattr(exc, "cause", None) is not None else exc
                self._dead.add(index)
                failures.append((index, cause))
                replies.append(None)
            except self.ray.exceptions.RayActorError as exc:
                self._dead.add(index)
                failures.append((index, RuntimeError(f"actor died: {first_line(exc)}")))
                replies.append(None)
        if failures:
            index, cause = failures[0]
            if isinstance(cause, UserError):
                raise UserError(str(cause))
            raise PeerFailure(index, self.names[index], f"{type(cause).__name__}: {first_line(cause)}")
        return replies

    def alive(self, index: int) -> bool:
        return index not in self._dead

    def close(self) -> None:
        living = [actor for index, actor in enumerate(self.actors) if self.alive(index)]
        try:
            self.ray.get([actor.handle.remote(Peer.close.__name__) for actor in living], timeout=60)
        except Exception:  # a dying actor cannot close its envs; it is killed below anyway
            pass
        for actor in self.actors:
            self.ray.kill(actor)
        if self._local_ray is not None:
            self._local_ray.stop()
