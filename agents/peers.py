"""Where the peers of a group live: all in this process, one process each, or Ray actors.

A ``Peer`` wraps one learner and answers the group's requests (train a turn, hand over states,
answer with its policy output and values on given states, distill from given targets, save,
evaluate). The group (``dpd.agents.peer_group``) talks to its peers only through a backend's
``call``, so one algorithm runs unchanged on every backend. Peers exchange distillation batches
(raw states, policy outputs, raw values), never models.

Each peer owns its global random state (Python, NumPy, torch: SB3 draws from them), so peers
sharing one process draw exactly the numbers they would draw in processes of their own: a
parallel run reproduces the sequential run with the same seed.
"""

import multiprocessing
import pickle
import random
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

import numpy as np
import torch

from dpd.agents.distillation import DistillBatch, TeacherAnswer, answer_on, distill_step
from dpd.agents.learner import Learner
from dpd.errors import UserError

BACKENDS = ("local", "process", "ray")
RAY_INSTALL_HINT = "the ray backend needs Ray: pip install ray (or, in the dpd checkout, pip install -e '.[ray]')"
Call = Tuple[int, Tuple[Any, ...]]  # (peer index, arguments)


def first_line(exc: BaseException, limit: int = 300) -> str:
    """An exception as one short line: some (torch's) span many lines with whole tensors."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    return text if len(text) <= limit else text[: limit - 3] + "..."


class PeerFailure(RuntimeError):
    """A peer died (its process was killed) or raised; names the peer and the cause."""

    def __init__(self, index: int, name: str, cause: str) -> None:
        super().__init__(f"{name} failed: {cause}")
        self.index = index
        self.name = name
        self.cause = cause


@dataclass(frozen=True)
class PeerStatus:
    num_timesteps: int
    iterations: int
    buffer_len: int
    planned_steps: int
    done: bool
    recent_return: float  # mean raw return of its last distill.gate_episodes training episodes


@dataclass(frozen=True)
class TurnReport:
    taken: int  # env steps of the turn
    due: int  # distillation rounds that fell due during the turn
    status: PeerStatus


RandomState = Tuple[Any, Any, torch.Tensor]


def _global_random_state() -> RandomState:
    return random.getstate(), np.random.get_state(), torch.get_rng_state()


def _set_global_random_state(state: RandomState) -> None:
    random.setstate(state[0])
    np.random.set_state(state[1])
    torch.set_rng_state(state[2])


class Peer:
    """One learner and what a peer group asks of it; see the module docstring."""

    def __init__(self, learner: Learner) -> None:
        self.learner = learner
        # A fresh, peer-specific random state: the same whichever process the peer lives in.
        seed = int(np.random.default_rng([learner.spec.seed, learner.num_timesteps]).integers(2**31))
        saved = _global_random_state()
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        self._random_state = _global_random_state()
        _set_global_random_state(saved)

    def call(self, method: str, *args: Any) -> Any:
        """Run ``method`` with this peer's random state in place of the process's."""
        saved = _global_random_state()
        _set_global_random_state(self._random_state)
        try:
            return getattr(self, method)(*args)
        finally:
            self._random_state = _global_random_state()
            _set_global_random_state(saved)

    # ----- requests -----------------------------------------------------------------------

    def status(self) -> PeerStatus:
        learner = self.learner
        recent = learner.recent_return(learner.distill_config.gate_episodes)
        return PeerStatus(
            learner.num_timesteps, learner.iterations, len(learner.states), learner.planned_steps, learner.done, recent
        )

    def start(self, tensorboard_dir: Any) -> PeerStatus:
        self.learner.start(tensorboard_dir)
        return self.status()

    def train_turn(self, run_steps_before: int, turn_steps: int) -> TurnReport:
        """Iterations until the turn has ``turn_steps`` env steps (at least one) or the budget
        is spent; counts the distillation rounds that fell due."""
        learner, config = self.learner, self.learner.distill_config
        taken = due = 0
        while True:
            taken += learner.train_iteration(run_steps_before + taken)
            if config.due(learner.iterations, learner.num_timesteps):
                due += 1
            if learner.done or taken >= turn_steps:
                break
        if not all(torch.isfinite(parameter).all() for parameter in learner.model.policy.parameters()):
            raise FloatingPointError(f"{learner.spec.name}: NaN or infinity in the policy after an RL update")
        return TurnReport(taken, due, self.status())

    def states_at(self, indices: np.ndarray) -> np.ndarray:
        return self.learner.states.at(indices)

    def answer(self, states: np.ndarray) -> TeacherAnswer:
        return answer_on(self.learner, states)

    def distill(self, batches: Sequence[DistillBatch]) -> List[Dict[str, float]]:
        """One weighted gradient step per batch; the peer computes its own values and weights.
        Returns each step's diagnostics."""
        learner, config = self.learner, self.learner.distill_config
        all_stats = []
        for batch in batches:
            stats = distill_step(learner, batch.answers, batch.states, config.weighting, config.alpha)
            if not np.isfinite(stats.get("loss", 0.0)):
                raise FloatingPointError(f"{learner.spec.name}: NaN or infinity in the distillation loss")
            for key, value in stats.items():
                learner.logger.record_mean(f"distill/{key}", value)
            all_stats.append(stats)
        return all_stats

    def evaluate(self, episodes: int) -> Tuple[float, float]:
        return self.learner.evaluate(episodes)

    def log(self, metrics: Dict[str, float], step: int) -> None:
        self.learner.log(metrics, step)

    def save(self, directory: Any) -> None:
        self.learner.save(directory)

    def finish(self) -> None:
        self.learner.finish()

    def close(self) -> None:
        self.learner.close()


# ----- backends --------------------------------------------------------------------------------


class LocalPeers:
    """Every peer in this process, served one after another: the sequential group."""

    def __init__(self, learners: Sequence[Learner]) -> None:
        self.peers = [Peer(learner) for learner in learners]
        self.names = [learner.spec.name for learner in learners]
        self.bytes_exchanged = 0  # nothing crosses a process boundary
        self._dead: Set[int] = set()

    def call(self, method: str, calls: Sequence[Call]) -> List[Any]:
        replies = []
        for index, args in calls:
            try:
                replies.append(self.peers[index].call(method, *args))
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


def _serve(factory: Callable[[], Learner], connection: Any) -> None:
    """A peer process: build the learner, then answer requests until told to close or until
    the group's end of the pipe is gone (the group died: no orphan survives it)."""
    torch.set_num_threads(1)
    try:
        peer = Peer(factory())
    except BaseException as exc:  # reported to the group, which raises it there
        connection.send(("error", type(exc).__name__, first_line(exc, limit=2000)))
        return
    connection.send(("ok", peer.status()))
    while True:
        try:
            method, args = connection.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            break
        try:
            connection.send(("ok", peer.call(method, *args)))
        except BaseException as exc:
            connection.send(("error", type(exc).__name__, first_line(exc, limit=2000)))
        if method == "close":
            break


class ProcessPeers:
    """One process per peer (``--parallel``), one core and one torch thread each. Requests to
    several peers are sent to all before any reply is awaited, so the peers work at once."""

    def __init__(self, factories: Sequence[Callable[[], Learner]], names: Sequence[str]) -> None:
        context = multiprocessing.get_context("spawn")
        self.names = list(names)
        self.connections = []
        self.processes = []
        self.bytes_exchanged = 0
        self._dead: Dict[int, str] = {}
        for factory, name in zip(factories, names):
            ours, theirs = context.Pipe()
            process = context.Process(target=_serve, args=(factory, theirs), name=f"dpd {name}", daemon=True)
            process.start()
            theirs.close()
            self.connections.append(ours)
            self.processes.append(process)
        try:
            self._receive_all(range(len(self.names)))
        except BaseException:
            self.close()
            raise

    def call(self, method: str, calls: Sequence[Call]) -> List[Any]:
        for index, args in calls:
            self._send(index, (method, args))
        return self._receive_all([index for index, _ in calls])

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
        """Close the learners that still answer, then make sure no peer process is left."""
        living = [index for index in range(len(self.processes)) if self.alive(index)]
        for index in living:
            self._send(index, ("close", ()))
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


def make_backend(kind: str, factories: Sequence[Callable[[], Learner]], names: Sequence[str], address: str = "") -> Any:
    """The peers of a group on backend ``kind`` (one of ``BACKENDS``)."""
    if kind == "local":
        return LocalPeers([factory() for factory in factories])
    if kind == "process":
        return ProcessPeers(factories, names)
    if kind == "ray":
        from dpd.agents.ray_peers import RayPeers

        return RayPeers(factories, names, address)
    raise UserError(f"unknown backend {kind!r}; choose one of: {', '.join(BACKENDS)}")


class PeerProxy:
    """What the training loop sees of a peer wherever it lives: its spec, its last reported
    status, and the requests it forwards through the backend."""

    def __init__(self, backend: Any, index: int, spec: Any, status: Optional[PeerStatus] = None) -> None:
        self.backend = backend
        self.index = index
        self.spec = spec
        self.status = status if status is not None else backend.call("status", [(index, ())])[0]

    def _call(self, method: str, *args: Any) -> Any:
        return self.backend.call(method, [(self.index, args)])[0]

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

    def start(self, tensorboard_dir: Any) -> None:
        self.status = self._call("start", tensorboard_dir)

    def evaluate(self, episodes: int) -> Tuple[float, float]:
        return self._call("evaluate", episodes)

    def log(self, metrics: Dict[str, float], step: int) -> None:
        self._call("log", metrics, step)

    def save(self, directory: Any) -> None:
        self._call("save", directory)

    def finish(self) -> None:
        self._call("finish")
