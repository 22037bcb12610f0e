"""The ``ray`` backend (``--backend ray``): peers as Ray actors, the requests of a peer process
through Ray.

Requests and their batches (raw states, policy outputs, values) travel as Ray task arguments
and results, that is through Ray's object store; models leave their actor only as the files of a
checkpoint, which go the same way to the driver (``RayPeer``), so that actors on any node of a
cluster need no shared file system. Ray is an
optional extra (``pip install '.[ray]'``), imported only when a Ray backend or a Ray benchmark
pool (``dpd.bench.runner``) is built, so the backend is registered, and named in errors, whether
Ray is installed or not.
"""

import contextlib
import importlib
import os
import pickle
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Set, Tuple

from dpd.agents.assembly import SavedLearner
from dpd.agents.backend import LearnerFactory, Message, MessageBackend, register_backend
from dpd.agents.learner import Learner
from dpd.agents.peer import Peer, PeerFailure, first_line
from dpd.agents.ray_cluster import check_cluster, code_versions, node_died, refuse_other_code
from dpd.errors import UserError
from dpd.filetree import FileTree, Mirror
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
    """Join the cluster at ``address`` (refused, in one line, where a node runs other code than
    this driver: ``check_cluster``), or start a local instance with a CPU per peer (at least the
    machine's cores). Returns the local instance this process started (and so must stop),
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
        try:
            check_cluster(ray)
        except BaseException:
            ray.shutdown()
            raise
        return None
    return LocalRay(max(os.cpu_count() or 1, cpus_needed), options)


@dataclass(frozen=True)
class Delivery:
    """An actor's reply with files for the driver: each ``FileTree`` goes under its folder on
    the driver's machine before the reply is handed on."""

    reply: Any
    trees: Tuple[Tuple[Path, FileTree], ...]

    def deliver(self) -> Any:
        for folder, tree in self.trees:
            tree.write(folder)
        return self.reply


class RayPeer:
    """The actor: one ``Peer`` in a single-threaded Ray worker, on any node of the cluster.

    The peer writes nothing where the actor lives but in a scratch folder: it saves into it and
    sends the saved files to the folder the driver named, and its TensorBoard events (written
    there too) follow, changes only, with each save, at ``finish`` and at ``close``."""

    def __init__(self, factory: Callable[[], Learner], expected: Dict[str, str]) -> None:
        import ray
        import torch

        self.scratch = Path(tempfile.mkdtemp(prefix="dpd-peer-"))
        self.tensorboard: Optional[Tuple[Path, Mirror]] = None  # the driver's folder, and ours
        # What the actor could not be built for is raised by its first request: Ray reports a
        # request's exception as it was (a user error stays one), an actor's as its death.
        self.failure: Optional[BaseException] = None
        try:
            refuse_other_code(ray, expected)
            torch.set_num_threads(1)
            self.peer = Peer(factory())
        except Exception as exc:
            self.failure = exc

    def node_id(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()

    def handle(self, request: str, *args: Any) -> Any:
        if self.failure is not None:
            raise self.failure
        if request == Peer.start.__name__ and args[0] is not None:
            self.tensorboard = (Path(args[0]), Mirror(self.scratch / "tb"))
            args = (self.scratch / "tb", *args[1:])
        if request == Peer.save.__name__:
            saved = self.scratch / "saved"
            shutil.rmtree(saved, ignore_errors=True)
            self.peer.handle(request, saved)
            return Delivery(None, ((Path(args[0]), FileTree.read(saved)), *self._events()))
        reply = self.peer.handle(request, *args)
        if request == Peer.close.__name__:
            events = self._events()
            shutil.rmtree(self.scratch, ignore_errors=True)
            return Delivery(reply, events)
        return Delivery(reply, self._events()) if request == Peer.finish.__name__ else reply

    def _events(self) -> Tuple[Tuple[Path, FileTree], ...]:
        """The TensorBoard events written since they were last sent."""
        if self.tensorboard is None:
            return ()
        folder, mirror = self.tensorboard
        return ((folder, mirror.changes()),)


@register_backend("ray")
class RayPeers(MessageBackend):
    """One Ray actor per peer, one CPU each; the behaviour of ``ProcessPeers``, wherever the
    actors live. A learner loaded from a checkpoint takes the checkpoint's files along, and
    every file a peer writes comes back to the driver (``RayPeer``). A peer whose actor is gone
    because its node died fails with ``PeerFailure.node_lost`` set: the training loop then sends
    the group back to its last checkpoint and trains on (``Trainer``)."""

    def __init__(self, factories: Sequence[LearnerFactory], names: Sequence[str], address: str = "") -> None:
        self.ray = import_ray()
        self.names = list(names)
        self.bytes_exchanged = 0  # pickled size of requests and replies: what the object store carries
        self._dead: Set[int] = set()
        self._local_ray = connect(address, len(factories))
        actor_class = self.ray.remote(num_cpus=1)(RayPeer)
        versions = code_versions()
        carried = [factory.carried() if isinstance(factory, SavedLearner) else factory for factory in factories]
        self.actors = [actor_class.remote(factory, versions) for factory in carried]
        self.nodes: List[Optional[str]] = [None] * len(self.actors)  # each actor's node, once it is built
        try:
            self._exchange(Peer.status.__name__, [(index, ()) for index in range(len(self.actors))])  # built, or the error
            self.nodes = self.ray.get([actor.node_id.remote() for actor in self.actors])
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
                if isinstance(reply, Delivery):  # files for the driver, not part of the exchange
                    reply = reply.deliver()
                self.bytes_exchanged += len(pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL))
                replies.append(reply)
            except self.ray.exceptions.RayTaskError as exc:
                cause = exc.cause if getattr(exc, "cause", None) is not None else exc
                self._dead.add(index)
                failures.append((index, cause, False))
                replies.append(None)
            except self.ray.exceptions.RayActorError as exc:
                self._dead.add(index)
                lost = not getattr(exc, "actor_init_failed", False) and node_died(self.ray, self.nodes[index])
                cause = f"its Ray node {self.nodes[index]} died" if lost else f"actor died: {first_line(exc)}"
                failures.append((index, RuntimeError(cause), lost))
                replies.append(None)
        if failures:
            index, cause, lost = failures[0]
            if isinstance(cause, UserError):
                raise UserError(str(cause))
            raise PeerFailure(index, self.names[index], f"{type(cause).__name__}: {first_line(cause)}", node_lost=lost)
        return replies

    def alive(self, index: int) -> bool:
        return index not in self._dead

    def close(self) -> None:
        living = [actor for index, actor in enumerate(self.actors) if self.alive(index)]
        for reference in [actor.handle.remote(Peer.close.__name__) for actor in living]:
            try:
                self.ray.get(reference, timeout=60).deliver()  # the TensorBoard events since the last checkpoint
            except Exception:  # a dying actor cannot close its envs; it is killed below anyway
                pass
        for actor in self.actors:
            self.ray.kill(actor)
        if self._local_ray is not None:
            self._local_ray.stop()
