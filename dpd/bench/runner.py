"""Running one benchmark run (plain SB3 or a dpd group), and a whole grid on a pool.

A rerun with the same ``--out`` skips complete runs, continues a killed run from its latest
checkpoint (``CHECKPOINTS_PER_RUN`` of them per run) and restarts failed runs from scratch; a run
that fails leaves ``error.txt`` and does not stop the others. The run's files are
``dpd.bench.results``'; the pools that run them, ``dpd.bench.pools``'.
"""

import dataclasses
import json
import shutil
import sys
import time
import traceback
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from dpd.bench.grid import DISTILLED, PLAIN_SB3, SINGLE_LEARNER_METHODS, BenchRun
from dpd.bench.pools import ProcessPool, RayPool
from dpd.bench.results import (
    ERROR_FILE,
    GROUP_FILE,
    RESULT_FILE,
    RUN_DIR,
    STUDENT_DIR,
    Curve,
    clear_incomplete,
    completed_result,
    failure_row,
    load_result,
    run_dir,
    run_fields,
)
from dpd.errors import UserError

TRAINING_EPISODES = 10  # training episodes whose mean return picks a group's deployable peer


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
    teacher_scores: Optional[List[float]] = None  # dpd-distilled: the final scores of the group that taught


def deployable_index(training_returns: Sequence[float]) -> int:
    """The learner a user would keep: the best mean training return (never the evaluation
    episodes, which then score it without a selection bias); the first on a tie or all NaN."""
    finite = [(value, -index) for index, value in enumerate(training_returns) if value == value]
    return -max(finite)[1] if finite else 0


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
    # What the checkpoint holds for the moment it was written is put back as training starts.
    callbacks = [
        learner.continuation(),
        _evaluate_and_checkpoint(learner, run, curve, checkpoints, cfg.checkpoint_every, seconds_before),
    ]
    try:
        learner.model.learn(learner.spec.budget - resumed_from, callback=callbacks, reset_num_timesteps=resumed_from == 0)
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
    learners = trainer.group.learners
    returns = [learner.episode_returns()[-TRAINING_EPISODES:] for learner in learners]
    recent = [float(np.mean(last)) if last else float("nan") for last in returns]
    updates = sum(learner.gradient_updates for learner in learners)
    steps = sum(result.env_steps for result in final)
    curve = with_final_point(curve, steps, sum(scores) / len(scores))
    return Trained(scores, recent, updates, curve, trainer.seconds_before, resumed_from)


def _train_distilled(run: BenchRun, directory: Path, cfg: Any) -> Trained:
    """A DPD group, then its student (``BenchRun.student_config``). The finished group's summary
    is kept (``GROUP_FILE``, with its whole training time) and announced as a checkpoint is, so a
    rerun after a kill in the student's part, or on another Ray node, goes on from it. The
    student's curve follows the group's at the group's total env steps; updates are both parts'."""
    from dpd.config import build_config
    from dpd.rundir import announce_consistent, atomic_write_text

    summary = directory / GROUP_FILE
    earlier = summary.is_file()  # the group finished in an earlier process
    if earlier:
        group = Trained(**json.loads(summary.read_text()))
    else:
        started = time.perf_counter()
        group = _train_group(run, directory, cfg)
        whole = dataclasses.replace(group, seconds_before=group.seconds_before + time.perf_counter() - started)
        atomic_write_text(summary, json.dumps(dataclasses.asdict(whole)))
        announce_consistent(summary)
    group_steps = int(group.curve[-1][0])
    student = _train_group(run, directory / STUDENT_DIR, build_config(run.student_config(str(directory / RUN_DIR))))
    return Trained(
        student.peer_scores,
        student.training_returns,
        group.gradient_updates + student.gradient_updates,
        group.curve + [[group_steps + step, score] for step, score in student.curve],
        # seconds of earlier processes (``execute`` adds this one's, the group's part included)
        group.seconds_before + student.seconds_before,
        group_steps + student.resumed_from if earlier else group.resumed_from,
        teacher_scores=group.peer_scores,
    )


def with_final_point(curve: Curve, env_steps: int, score: float) -> Curve:
    """The curve ending in the final score (more episodes), which replaces an evaluation at the
    same step; SB3 finishes its last iteration, so ``env_steps`` may pass the budget a little."""
    return [point for point in curve if point[0] < env_steps] + [[env_steps, score]]


def execute(run: BenchRun, directory: Path) -> Dict[str, Any]:
    """Train and score one run; the row that ``report`` reads."""
    from dpd.config import build_config

    cfg = build_config(run.config())
    start = time.perf_counter()
    if run.method in SINGLE_LEARNER_METHODS:
        trained = _train_plain_sb3(run, directory, cfg)
    else:
        trained = (_train_distilled if run.method == DISTILLED else _train_group)(run, directory, cfg)
    peer_scores = trained.peer_scores
    return {
        **run_fields(run),
        "status": "ok",
        "score": sum(peer_scores) / len(peer_scores),
        "peer_scores": peer_scores,
        # dpd-distilled: the best peer of the group that taught its student
        "best_peer": None if run.method in SINGLE_LEARNER_METHODS else max(trained.teacher_scores or peer_scores),
        "teacher_scores": trained.teacher_scores,
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
    as they happen, and "retried" for a run lost with its Ray node and started again from its last
    checkpoint. ``backend`` "ray" runs them as Ray tasks instead (``target`` is then
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
    pool = RayPool(workers, address, execute_and_record) if backend == "ray" else ProcessPool(workers, target)
    try:
        while pending or pool.busy:
            while pending and pool.has_room:
                run = pending.pop(0)
                directory = run_dir(out, run)
                clear_incomplete(directory)
                pool.start(run, directory)
            finished = pool.wait_finished()
            for run in pool.retried:
                on_event("retried", run, {})
            pool.retried.clear()
            for run, exit_detail in finished:
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
