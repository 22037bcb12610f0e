"""Running one benchmark run, and a whole grid on a local process pool.

Each run lives in ``<out>/<env>/<algo>/<method>/seed<k>/``: its TensorBoard logs, its models,
and ``result.json`` once it is complete (written last, atomically). A rerun with the same
``--out`` skips complete runs, continues a killed run from its latest checkpoint
(``CHECKPOINTS_PER_RUN`` of them per run) and restarts failed runs from scratch; a run that fails
leaves ``error.txt`` and does not stop the others.
"""

import json
import multiprocessing
import os
import shutil
import sys
import time
import traceback
from collections import defaultdict
from dataclasses import asdict, dataclass, fields
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from dpd.bench.grid import PLAIN_SB3, SINGLE_LEARNER_METHODS, BenchRun
from dpd.errors import UserError
from dpd.processes import die_with_parent

RESULT_FILE = "result.json"
TRAINING_EPISODES = 10  # training episodes whose mean return picks a group's deployable peer
ERROR_FILE = "error.txt"
Curve = List[List[float]]  # [total env steps, score] pairs


def run_dir(out: Path, run: BenchRun) -> Path:
    return out / run.key


def run_fields(run: BenchRun) -> Dict[str, Any]:
    """The run's settings as they appear in its result row (JSON types)."""
    return {**asdict(run), "overrides": list(run.overrides)}


# What every result row holds: the run's settings and its scores.
RESULT_KEYS = (*(f.name for f in fields(BenchRun)), "status", "score", "peer_scores", "curve")


def load_result(directory: Path) -> Optional[Dict[str, Any]]:
    """The run's result row, or None where it has none. A truncated or malformed ``result.json``
    (a copy cut short, an edit gone wrong) makes the run incomplete, said in one line: it is run
    again, never a traceback."""
    path = directory / RESULT_FILE
    if not path.exists():
        return None
    try:
        row = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        problem = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    else:
        if isinstance(row, dict) and all(key in row for key in RESULT_KEYS):
            return row
        problem = "not a result row" if isinstance(row, dict) else f"a JSON {type(row).__name__}, not a result row"
    print(f"dpd bench: {path} is truncated or malformed ({problem}); the run counts as incomplete", file=sys.stderr)
    return None


def completed_result(out: Path, run: BenchRun) -> Optional[Dict[str, Any]]:
    """The run's result if it is complete; one made with other settings is a user error, not a skip."""
    row = load_result(run_dir(out, run))
    if row is None:
        return None
    differing = [key for key, value in run_fields(run).items() if row.get(key) != value]
    if differing:
        changes = ", ".join(f"{key} {row.get(key)!r} there, {run_fields(run)[key]!r} now" for key in differing)
        raise UserError(f"{run_dir(out, run)} holds a run with other settings ({changes}); choose another --out")
    return row


# --- one run, inside a worker process ------------------------------------------------------


def plain_sb3_learner(cfg: Any, tensorboard_dir: Optional[Path] = None) -> Any:
    """One learner with the whole budget and the same hyperparameters as a dpd peer, to be
    trained by SB3's own ``learn()``: the baseline a user knows."""
    from stable_baselines3.common.logger import configure

    from dpd.agents import build_learner, check_config

    learner = build_learner(check_config(cfg)[0])
    formats = ["tensorboard"] if tensorboard_dir else []
    learner.model.set_logger(configure(str(tensorboard_dir) if tensorboard_dir else None, formats))
    return learner


def _evaluate_and_checkpoint(
    learner: Any, run: BenchRun, curve: Curve, checkpoints: Any, checkpoint_every: int, seconds_before: float
) -> Any:
    """An SB3 callback that, after each training iteration (where dpd's trainer evaluates and
    checkpoints its learners too), evaluates when it crossed a multiple of ``run.eval_every`` env
    steps, and saves the learner and the curve so far in ``checkpoints`` (a ``RunDirectory``)
    when it crossed a multiple of ``checkpoint_every``."""
    from stable_baselines3.common.callbacks import BaseCallback

    from dpd.agents.trainer import next_multiple

    started = time.perf_counter()

    class EvaluateAndCheckpoint(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.next_eval = next_multiple(learner.num_timesteps, run.eval_every)
            self.next_checkpoint = next_multiple(learner.num_timesteps, checkpoint_every)

        def _on_rollout_start(self) -> None:  # the previous iteration has trained
            steps = self.num_timesteps
            if steps >= self.next_eval:
                mean, _ = learner.evaluate(run.eval_episodes)
                self.logger.record("eval/mean_reward", mean)
                curve.append([steps, mean])
                self.next_eval = next_multiple(steps, run.eval_every)
            if steps >= self.next_checkpoint:
                seconds = seconds_before + time.perf_counter() - started
                progress = {"run_steps": steps, "finished": False, "evaluations": curve, "train_seconds": seconds}
                checkpoints.save_checkpoint(f"step_{steps:010d}", learner.save, progress)
                self.next_checkpoint = next_multiple(steps, checkpoint_every)

        def _on_step(self) -> bool:
            return True

    return EvaluateAndCheckpoint()


@dataclass(frozen=True)
class Trained:
    """What a run's learners reached: final scores, training returns, updates, the curve."""

    peer_scores: List[float]  # each learner's final deterministic evaluation return
    training_returns: List[float]  # each learner's mean raw return over its last training episodes
    gradient_updates: int  # RL gradient updates of all learners together
    curve: Curve
    seconds_before: float = 0.0  # training seconds of earlier processes, for a resumed run
    resumed_from: int = 0  # the total env steps this process resumed the run at (0: from scratch)


def deployable_index(training_returns: Sequence[float]) -> int:
    """The learner a user would keep: the best mean training return (never the evaluation
    episodes, which then score it without a selection bias); the first on a tie or all NaN."""
    finite = [(value, -index) for index, value in enumerate(training_returns) if value == value]
    return -max(finite)[1] if finite else 0


# Inside a run's directory, what a rerun continues from: a group's dpd run directory, or the
# checkpoints of a plain SB3 run (removed once it is complete).
RUN_DIR = "run"


def resumable(run_path: Path, cfg: Any) -> bool:
    """Whether ``run_path`` holds an unfinished run of exactly ``cfg`` with a checkpoint: what a
    kill (a session's end) leaves, to be continued rather than started again."""
    from dpd.rundir import RunDirectory

    try:
        existing = RunDirectory.open(run_path)
    except UserError:
        return False
    progress = existing.manifest["progress"]
    same = existing.manifest["config"] == json.loads(json.dumps(cfg.to_dict()))
    return same and existing.checkpoint_dir is not None and not progress.get("finished")


def _train_plain_sb3(run: BenchRun, directory: Path, cfg: Any) -> Trained:
    from stable_baselines3.common.logger import configure

    from dpd.agents import build_learner, check_config
    from dpd.agents.assembly import load_learner

    checkpoints = _checkpoints_to_continue(directory / RUN_DIR, cfg)
    try:
        setup = check_config(cfg)[0]
        saved = checkpoints.checkpoint_dir
        learner = load_learner(setup, saved, 0) if saved is not None else build_learner(setup)
    except BaseException:
        checkpoints.unlock()
        raise
    if saved is None:
        shutil.rmtree(directory / "tb", ignore_errors=True)  # the logs of an attempt that cannot be continued
    learner.model.set_logger(configure(str(directory / "tb" / PLAIN_SB3), ["tensorboard"]))
    progress = checkpoints.manifest["progress"]
    curve: Curve = [list(point) for point in progress.get("evaluations", [])]
    seconds_before, resumed_from = float(progress.get("train_seconds", 0.0)), learner.num_timesteps
    callback = _evaluate_and_checkpoint(learner, run, curve, checkpoints, cfg.checkpoint_every, seconds_before)
    try:
        learner.model.learn(learner.spec.budget - resumed_from, callback=callback, reset_num_timesteps=resumed_from == 0)
        final, _ = learner.evaluate(run.final_episodes)
        learner.model.save(directory / "model.zip")
        learner.env.save(str(directory / "vecnormalize.pkl"))
    finally:
        learner.close()
        checkpoints.unlock()
    shutil.rmtree(directory / RUN_DIR)  # the model is saved above; its checkpoint (a replay buffer) can go
    recent = learner.recent_return(TRAINING_EPISODES)
    curve = with_final_point(curve, learner.num_timesteps, final)
    return Trained([final], [recent], learner.gradient_updates, curve, seconds_before, resumed_from)


def _checkpoints_to_continue(run_path: Path, cfg: Any) -> Any:
    """The locked ``RunDirectory`` of a plain SB3 run's checkpoints: the one a killed attempt
    left, if it can be continued, else a new one."""
    from dpd.rundir import RunDirectory

    if resumable(run_path, cfg):
        checkpoints = RunDirectory.open(run_path)
        checkpoints.lock()
        return checkpoints
    shutil.rmtree(run_path, ignore_errors=True)
    progress = {"run_steps": 0, "finished": False, "checkpoint": None}
    return RunDirectory.create(run_path, {"config": cfg.to_dict(), "progress": progress})


def group_curve(history: Sequence[Any], peers: int) -> Curve:
    """Mean over peers of evaluations at the same own step, at total steps ``own * peers``
    (peers share the budget equally)."""
    by_step: Dict[int, List[float]] = defaultdict(list)
    for result in history:
        by_step[result.env_steps].append(result.mean_return)
    return [[step * peers, sum(scores) / len(scores)] for step, scores in sorted(by_step.items()) if len(scores) == peers]


def _train_group(run: BenchRun, directory: Path, cfg: Any) -> Trained:
    from dpd.agents import new_run, open_run

    run_path = directory / RUN_DIR
    if resumable(run_path, cfg):
        trainer = open_run(run_path)
    else:
        shutil.rmtree(run_path, ignore_errors=True)
        trainer = new_run(run_path, cfg)
    resumed_from = trainer.group.run_steps
    try:
        final = trainer.train(progress_bar=False)
    finally:
        trainer.close()
    curve = group_curve(trainer.history, cfg.peers)
    scores = [result.mean_return for result in final]
    statuses = [learner.status for learner in trainer.group.learners]
    recent = [
        float(np.mean(status.episode_returns[-TRAINING_EPISODES:])) if status.episode_returns else float("nan")
        for status in statuses
    ]
    updates = sum(status.gradient_updates for status in statuses)
    steps = sum(result.env_steps for result in final)
    curve = with_final_point(curve, steps, sum(scores) / len(scores))
    return Trained(scores, recent, updates, curve, trainer.seconds_before, resumed_from)


def with_final_point(curve: Curve, env_steps: int, score: float) -> Curve:
    """The curve ending in the final score (more episodes), which replaces an evaluation at the
    same step; SB3 finishes its last iteration, so ``env_steps`` may pass the budget a little."""
    return [point for point in curve if point[0] < env_steps] + [[env_steps, score]]


def execute(run: BenchRun, directory: Path) -> Dict[str, Any]:
    """Train and score one run; the row that ``report`` reads."""
    from dpd.config import build_config

    cfg = build_config(run.config())
    start = time.perf_counter()
    train = _train_plain_sb3 if run.method in SINGLE_LEARNER_METHODS else _train_group
    trained = train(run, directory, cfg)
    peer_scores = trained.peer_scores
    return {
        **run_fields(run),
        "status": "ok",
        "score": sum(peer_scores) / len(peer_scores),
        "peer_scores": peer_scores,
        "best_peer": max(peer_scores) if run.method not in SINGLE_LEARNER_METHODS else None,
        "deployable": peer_scores[deployable_index(trained.training_returns)],
        "training_returns": trained.training_returns,
        "gradient_updates": trained.gradient_updates,
        "seconds": trained.seconds_before + time.perf_counter() - start,
        "resumed_from": trained.resumed_from,
        "curve": trained.curve,
    }


def execute_and_record(run: BenchRun, directory: Path) -> bool:
    """One thread, one run, its result or its error written to disk; whether it succeeded."""
    import torch

    from dpd.rundir import atomic_write_text

    torch.set_num_threads(1)
    try:
        row = execute(run, directory)
    except BaseException:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / ERROR_FILE).write_text(traceback.format_exc())
        return False
    atomic_write_text(directory / RESULT_FILE, json.dumps(row))
    return True


def run_in_process(run: BenchRun, directory: Path) -> None:
    """A pool worker's whole life: one run, then exit (non-zero on failure)."""
    if not execute_and_record(run, directory):
        sys.exit(1)


# --- the grid --------------------------------------------------------------------------------


def failure_row(run: BenchRun, directory: Path, exit_detail: str) -> Dict[str, Any]:
    error_file = directory / ERROR_FILE
    lines = error_file.read_text().strip().splitlines() if error_file.exists() else []
    error = lines[-1] if lines else f"{exit_detail} and left no error (killed?)"
    return {**run_fields(run), "status": "failed", "error": error}


def run_grid(
    runs: Sequence[BenchRun],
    out: Path,
    workers: int,
    on_event: Callable[[str, BenchRun, Dict[str, Any]], None] = lambda kind, run, row: None,
    target: Callable[[BenchRun, Path], None] = run_in_process,
    backend: str = "process",
    address: str = "",
) -> List[Dict[str, Any]]:
    """Run every incomplete run, at most ``workers`` at once, each in a fresh process
    (``target(run, directory)``); returns one row per run (complete, skipped because complete
    earlier, or failed). ``on_event(kind, run, row)`` reports "skipped", "done" and "failed"
    as they happen. ``backend`` "ray" runs them as Ray tasks instead (``target`` is then
    ``execute_and_record``)."""
    rows: Dict[str, Dict[str, Any]] = {}
    pending: List[BenchRun] = []
    for run in runs:
        done = completed_result(out, run)
        if done is not None:
            rows[run.key] = done
            on_event("skipped", run, done)
        else:
            pending.append(run)
    pool = RayPool(workers, address) if backend == "ray" else ProcessPool(workers, target)
    try:
        while pending or pool.busy:
            while pending and pool.has_room:
                run = pending.pop(0)
                directory = run_dir(out, run)
                clear_incomplete(directory)
                pool.start(run, directory)
            for run, exit_detail in pool.wait_finished():
                result = load_result(run_dir(out, run))
                if result is not None:
                    rows[run.key] = result
                    on_event("done", run, result)
                else:
                    rows[run.key] = failure_row(run, run_dir(out, run), exit_detail)
                    on_event("failed", run, rows[run.key])
    finally:
        pool.close()  # interrupted: no worker outlives the sweep
    return [rows[run.key] for run in runs]


def clear_incomplete(directory: Path) -> None:
    """Remove what an earlier, incomplete attempt left, except what a killed attempt leaves to
    continue from: its run directory of checkpoints and (a plain run's) TensorBoard logs. A run
    that failed (``error.txt``) starts again from scratch."""
    directory.mkdir(parents=True, exist_ok=True)
    killed = (directory / RUN_DIR).is_dir() and not (directory / ERROR_FILE).exists()
    for entry in directory.iterdir():
        if killed and entry.name in (RUN_DIR, "tb"):
            continue
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()


class RunPool:
    """At most ``workers`` runs at once; ``active`` maps a run's handle to the run."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.active: Dict[Any, BenchRun] = {}

    @property
    def busy(self) -> bool:
        return bool(self.active)

    @property
    def has_room(self) -> bool:
        return len(self.active) < self.workers


def _worker(target: Callable[[BenchRun, Path], None], run: BenchRun, directory: Path, parent: int) -> None:
    """A pool worker: tied to the sweep's life, then ``target(run, directory)``."""
    die_with_parent(parent)
    target(run, directory)


class ProcessPool(RunPool):
    """Each run in a fresh process (a crash takes one run only)."""

    def __init__(self, workers: int, target: Callable[[BenchRun, Path], None]) -> None:
        super().__init__(workers)
        self.target = target
        self.context = multiprocessing.get_context("spawn")

    def start(self, run: BenchRun, directory: Path) -> None:
        process = self.context.Process(
            target=_worker, args=(self.target, run, directory, os.getpid()), name=f"dpd-bench {run.key}"
        )
        process.start()
        self.active[process] = run

    def wait_finished(self) -> List[Tuple[BenchRun, str]]:
        finished = []
        for sentinel in wait([process.sentinel for process in self.active]):
            process = next(p for p in self.active if p.sentinel == sentinel)
            process.join()
            finished.append((self.active.pop(process), f"worker exited with code {process.exitcode}"))
        return finished

    def close(self) -> None:
        for process in self.active:
            process.terminate()
        for process in self.active:
            process.join()


class RayPool(RunPool):
    """Each run a Ray task (one CPU), on a local instance or the cluster at ``address``."""

    def __init__(self, workers: int, address: str) -> None:
        from dpd.agents.ray_backend import connect, import_ray

        super().__init__(workers)
        self.ray = import_ray()
        self._local_ray = connect(address, cpus_needed=1)
        self.task = self.ray.remote(num_cpus=1, max_retries=0)(execute_and_record)

    def start(self, run: BenchRun, directory: Path) -> None:
        self.active[self.task.remote(run, directory)] = run

    def wait_finished(self) -> List[Tuple[BenchRun, str]]:
        ready, _ = self.ray.wait(list(self.active), num_returns=1)
        finished = []
        for reference in ready:
            run = self.active.pop(reference)
            try:
                self.ray.get(reference)
                detail = "the run left no result"
            except Exception as exc:  # the worker died: no error.txt was written
                detail = f"Ray task failed: {type(exc).__name__}"
            finished.append((run, detail))
        return finished

    def close(self) -> None:
        for reference in self.active:
            self.ray.cancel(reference, force=True)
        if self._local_ray is not None:
            self._local_ray.stop()
