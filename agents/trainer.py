"""The training loop: it drives any agent that trains in turns and rounds (a peer group or a
teacher-student pair) through its budget, with evaluation, TensorBoard logs and checkpoints.

It exists apart from how agents are built (``dpd.agents.assembly``) and how runs are created and
reopened (``dpd.agents.runs``), so that what the loop needs of an agent is one small protocol,
``TrainableAgent``.
"""

import math
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Protocol, Sequence, Tuple

from tqdm import tqdm

from dpd.agents.learner import LearnerSpec
from dpd.agents.peer import PeerFailure
from dpd.config import RunConfig
from dpd.rundir import RunDirectory


@dataclass(frozen=True)
class EvalResult:
    learner: str
    algo: str
    env_steps: int
    mean_return: float
    std_return: float
    episodes: int
    metrics: Dict[str, float] = field(default_factory=dict)  # e.g. a student's fidelity to its teacher


class TrainedLearner(Protocol):
    """What the loop uses of each learner, wherever it lives: a ``Learner`` in this process or
    a ``PeerProxy`` for a peer on another backend."""

    spec: LearnerSpec

    @property
    def num_timesteps(self) -> int: ...

    @property
    def iterations(self) -> int: ...

    @property
    def planned_steps(self) -> int: ...

    @property
    def gradient_updates(self) -> int: ...

    def episode_returns(self) -> Tuple[float, ...]:
        """Raw returns of its last (up to 100) training episodes."""
        ...

    def start(self, tensorboard_dir: Any, callback: Any = None) -> None: ...

    def evaluate(self, episodes: int) -> Tuple[float, float]: ...

    def log(self, metrics: Dict[str, float], step: int) -> None: ...

    def save(self, directory: Any) -> None: ...

    def sound(self) -> bool:
        """Whether it may be checkpointed: it answers, and its parameters are finite."""
        ...

    def finish(self) -> None: ...


class TrainableAgent(Protocol):
    """What the loop drives: what ``PeerGroup`` and ``TeacherStudent`` both provide."""

    @property
    def learners(self) -> Sequence[TrainedLearner]:
        """The learners the loop evaluates, logs and saves."""
        ...

    @property
    def run_steps(self) -> int:
        """Env steps of all learners together."""
        ...

    @property
    def done(self) -> bool: ...

    @property
    def random_state(self) -> Any:
        """The agent's own random streams, saved with each checkpoint and restored on resume."""
        ...

    @random_state.setter
    def random_state(self, state: Any) -> None: ...

    def save(self, directory: Path) -> None:
        """Into a checkpoint's ``directory``, beside its learners: what the agent itself carries
        from round to round beyond them and ``random_state`` (a teacher-student pair: its labels, and
        the episodes of a teacher that acts)."""
        ...

    def restore(self, directory: Path) -> None:
        """Put back what ``save`` wrote in the checkpoint ``directory``."""
        ...

    def train(
        self, after_turn: Optional[Callable[[int, int], None]] = None, after_round: Optional[Callable[[], None]] = None
    ) -> None:
        """Train to the budget; ``after_turn(index, steps_taken)`` and ``after_round()`` let the
        loop evaluate and checkpoint."""
        ...

    def evaluation_metrics(self, learner: Any, mean_return: float, episodes: int, final: bool) -> Dict[str, float]:
        """Metrics logged beside a learner's evaluation (a student's fidelity to its teacher; a
        peer's: none)."""
        ...

    def close(self) -> None: ...


class Trainer:
    """The training loop: peers take turns, with evaluation, TensorBoard logs and checkpoints."""

    # How often a run goes back to its last checkpoint because a peer's Ray node died, before
    # the loss ends it as any failed peer does.
    NODE_LOSSES = 3

    def __init__(
        self,
        run: RunDirectory,
        group: TrainableAgent,
        cfg: RunConfig,
        reopen: Optional[Callable[[], TrainableAgent]] = None,
    ) -> None:
        self.run = run
        self.group = group
        self.cfg = cfg
        # The agent rebuilt from the run's latest checkpoint (``dpd.agents.runs``): where a peer's
        # node died, the group goes back to it and trains on.
        self.reopen = reopen
        self._from_checkpoint()
        self._train_started: Optional[float] = None

    def _from_checkpoint(self) -> None:
        """The loop's state as the run's latest checkpoint (or a new run) has it."""
        progress = self.run.manifest["progress"]
        # The periodic evaluations of the whole run, in order (the final ones are ``train``'s
        # result): kept in each checkpoint, so a resumed run's learning curve starts at step 0.
        self.history: List[EvalResult] = [EvalResult(**entry) for entry in progress.get("evaluations", [])]
        # Seconds spent training up to the checkpoint this run resumed from (0 for a new run).
        self.seconds_before: float = float(progress.get("train_seconds", 0.0))

    @property
    def finished(self) -> bool:
        return bool(self.run.manifest["progress"].get("finished"))

    def train(self, progress_bar: bool = True, callbacks: Optional[Sequence[Any]] = None) -> List[EvalResult]:
        """Train to the budget. ``callbacks``: one SB3 callback (or None) per learner. A peer
        lost with its Ray node sends every peer back to the last checkpoint, and training goes on
        from there (at most ``NODE_LOSSES`` times); any other failure ends it."""
        losses = 0
        while True:
            try:
                return self._train(progress_bar, callbacks)
            except PeerFailure as failure:
                if not self._goes_back(failure) or losses == self.NODE_LOSSES:
                    raise
                losses += 1
                self.group.close()
                assert self.reopen is not None
                self.group = self.reopen()
                self._from_checkpoint()
                tqdm.write(
                    f"dpd: {failure}; every peer goes back to the last checkpoint "
                    f"({self.run.manifest['progress']['run_steps']} env steps) and trains on",
                    file=sys.stderr,
                )

    def _goes_back(self, failure: PeerFailure) -> bool:
        """Whether a failure sends the whole group back to its last checkpoint to train on."""
        return failure.node_lost and self.reopen is not None

    def _train(self, progress_bar: bool, callbacks: Optional[Sequence[Any]]) -> List[EvalResult]:
        group, cfg = self.group, self.cfg
        self._train_started = time.perf_counter()
        callbacks = list(callbacks) if callbacks is not None else [None] * len(group.learners)
        try:
            for learner, callback in zip(group.learners, callbacks):
                learner.start(self.run.tensorboard_dir(learner.spec.name), callback)
        except PeerFailure as failure:
            if not self._goes_back(failure):
                self.checkpoint_survivors(failure.index)
            raise
        next_eval = [next_multiple(learner.num_timesteps, cfg.eval.every) for learner in group.learners]
        next_checkpoint = next_multiple(group.run_steps, cfg.checkpoint_every)
        total = sum(learner.planned_steps for learner in group.learners)
        bar = tqdm(
            total=total,
            initial=min(group.run_steps, total),
            unit="step",
            desc="dpd train",
            disable=not progress_bar,
            mininterval=1.0,
            dynamic_ncols=True,
        )

        # Each learner's latest evaluation return, shown beside the bar in the learners' order.
        latest: Dict[str, float] = dict.fromkeys((learner.spec.name for learner in group.learners), float("nan"))

        def after_turn(index: int, taken: int) -> None:
            bar.update(taken)
            learner = group.learners[index]
            if learner.num_timesteps >= next_eval[index]:
                latest[learner.spec.name] = self._evaluate(learner, cfg.eval.episodes).mean_return
                bar.set_postfix_str(eval_postfix(latest))
                next_eval[index] = next_multiple(learner.num_timesteps, cfg.eval.every)

        def after_round() -> None:  # between rounds every peer is in a consistent state
            nonlocal next_checkpoint
            if group.run_steps >= next_checkpoint:
                self.checkpoint()
                next_checkpoint = next_multiple(group.run_steps, cfg.checkpoint_every)

        try:
            group.train(after_turn, after_round)
        except KeyboardInterrupt:
            bar.close()
            self.checkpoint()
            raise
        except PeerFailure as failure:
            bar.close()
            if not self._goes_back(failure):
                self.checkpoint_survivors(failure.index)
            raise
        bar.close()
        results = [self._evaluate(learner, cfg.eval.final_episodes, final=True) for learner in group.learners]
        for learner in group.learners:
            learner.finish()
        self.checkpoint(final_eval=[asdict(result) for result in results])
        return results

    def _evaluate(self, learner: TrainedLearner, episodes: int, final: bool = False) -> EvalResult:
        mean, std = learner.evaluate(episodes)
        metrics = self.group.evaluation_metrics(learner, mean, episodes, final)
        learner.log(
            {"eval/mean_reward": mean, "eval/std_reward": std, "time/run_total_steps": self.group.run_steps, **metrics},
            learner.num_timesteps,
        )
        result = EvalResult(learner.spec.name, learner.spec.algo, learner.num_timesteps, mean, std, episodes, metrics)
        if not final:
            self.history.append(result)
        return result

    @property
    def train_seconds(self) -> float:
        """Wall-clock seconds of training over every process that trained this run, up to now
        (work lost to a kill after the last checkpoint not counted)."""
        since = time.perf_counter() - self._train_started if self._train_started is not None else 0.0
        return self.seconds_before + since

    def _progress(self, run_steps: int, learners: Dict[str, Dict[str, int]], finished: bool) -> Dict[str, Any]:
        """The loop's state a checkpoint records beside the learners: their evaluations up to
        the steps the checkpoint holds them at (a failed peer's are then its older ones)."""
        evaluations = [result for result in self.history if result.env_steps <= learners[result.learner]["num_timesteps"]]
        return {
            "run_steps": run_steps,
            "learners": learners,
            "rng": self.group.random_state,
            "finished": finished,
            "evaluations": [asdict(result) for result in evaluations],
            "train_seconds": self.train_seconds,
        }

    def checkpoint(self, final_eval: Optional[List[Dict[str, Any]]] = None) -> Path:
        """Save every learner and the loop's state; ``final_eval`` marks the run finished."""
        group = self.group

        def write(directory: Path) -> None:
            for learner in group.learners:
                _save(learner, directory / learner.spec.name)
            group.save(directory)

        learners = {
            learner.spec.name: {"num_timesteps": learner.num_timesteps, "iterations": learner.iterations}
            for learner in group.learners
        }
        progress = self._progress(group.run_steps, learners, finished=final_eval is not None)
        if final_eval is not None:
            progress["final_eval"] = final_eval
        return self.run.save_checkpoint(f"step_{group.run_steps:010d}", write, progress)

    @property
    def keeps_survivors(self) -> bool:
        """Whether a failed peer's sound peers are checkpointed as they are (``checkpoint_survivors``).
        Not where peers share experience: a survivor would keep its transitions of the unfinished
        round, which the failed peer never received and, back at its last checkpoint, would never
        get again (benchmarks/kill_campaign.py found such a pair of replay buffers)."""
        return len(self.group.learners) > 1 and not self.cfg.share.enabled

    def checkpoint_survivors(self, failed: int) -> Optional[Path]:
        """After peer ``failed`` died: the sound others as they are now; the failed one, and any
        other that died or turned NaN with it (peers on other backends fail at once), as in the
        last checkpoint (or afresh, if they had none), so that ``--resume`` loses only their
        work. Where none survives, or none is kept (peers that share experience go back
        together), the last checkpoint stands (returned; None if there is none)."""
        group = self.group
        previous, before = self.run.checkpoint_dir, self.run.manifest["progress"].get("learners", {})
        fallen = {learner.spec.name for index, learner in enumerate(group.learners) if index == failed or not _sound(learner)}
        if len(fallen) == len(group.learners) or not self.keeps_survivors:
            return previous

        def write(directory: Path) -> None:
            for learner in group.learners:
                name = learner.spec.name
                if name not in fallen:
                    _save(learner, directory / name)
                elif previous is not None and (previous / name).exists():
                    shutil.copytree(previous / name, directory / name)

        learners = {
            learner.spec.name: {"num_timesteps": learner.num_timesteps, "iterations": learner.iterations}
            for learner in group.learners
        }
        for name in fallen:
            learners[name] = before.get(name, {"num_timesteps": 0, "iterations": 0})
        run_steps = sum(entry["num_timesteps"] for entry in learners.values())
        progress = self._progress(run_steps, learners, finished=False)
        return self.run.save_checkpoint(f"step_{run_steps:010d}", write, progress)

    def close(self) -> None:
        """Close the agent and give the run directory's lock back."""
        try:
            self.group.close()
        finally:
            self.run.unlock()


def next_multiple(current: int, every: int) -> float:
    """The next multiple of ``every`` above ``current``: when a periodic evaluation or checkpoint
    is due; never (infinity) for ``every <= 0``."""
    return (current // every + 1) * every if every > 0 else float("inf")


def eval_postfix(returns: Mapping[str, float]) -> str:
    """The progress bar's postfix: each learner's latest evaluation return, e.g.
    ``peer0=-12.3 peer1=-9.8``, so a run shows how its peers fare while it trains; learners not
    evaluated yet (NaN) are left out."""
    return " ".join(f"{name}={value:.1f}" for name, value in returns.items() if not math.isnan(value))


def _sound(learner: TrainedLearner) -> bool:
    """Whether a learner may be checkpointed as it is; one that cannot even answer may not."""
    try:
        return learner.sound()
    except PeerFailure:
        return False


def _save(learner: TrainedLearner, directory: Path) -> None:
    """Save one learner. A peer that could not write (an ``OSError`` where it lives: a full disk)
    is not broken: its failure is raised as the ``OSError`` it was, which the run directory reports
    as a checkpoint it could not write."""
    try:
        learner.save(directory)
    except PeerFailure as failure:
        if failure.os_error:
            raise OSError(f"{failure.name}: {failure.cause}") from failure
        raise
