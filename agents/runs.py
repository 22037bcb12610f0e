"""A run's life cycle on disk: creating a run directory for a config, reopening one from its
latest checkpoint, and evaluating its learners.

It exists so that what a run directory holds (the manifest, ``config.yaml``, the checkpoints;
``dpd.rundir``) and how an agent is rebuilt from it are decided in one place, apart from the
training loop (``dpd.agents.trainer``).
"""

import functools
import sys
from dataclasses import asdict
from pathlib import Path
from typing import List, Optional

from dpd.agents.assembly import SavedLearner, assemble, fresh_learners
from dpd.agents.checks import check_config
from dpd.agents.peer_setup import resolved_config
from dpd.agents.teacher_student import TeacherStudent
from dpd.agents.trainer import EvalResult, TrainableAgent, Trainer
from dpd.config import RunConfig, build_config
from dpd.errors import UserError
from dpd.provenance import package_versions, provenance
from dpd.rundir import RunDirectory


def new_run(run_path: Path, cfg: RunConfig) -> Trainer:
    """Build everything in memory first, so a user error leaves no run directory behind."""
    setups = check_config(cfg)
    group = assemble(cfg, setups, fresh_learners(setups))
    manifest = {
        "dpd_run": 1,
        "command": " ".join(sys.argv),
        "config": cfg.to_dict(),
        "learners": [asdict(setup.spec) for setup in setups],
        "resolved_peers": [
            {"name": setup.spec.name, "algo_kwargs": setup.algo_kwargs, "distill": asdict(setup.distill)} for setup in setups
        ],
        "versions": package_versions(),
        "provenance": provenance(),  # the commit, every package and the CPU: what exact repetition needs
        "progress": {"run_steps": 0, "finished": False, "checkpoint": None},
    }
    if isinstance(group, TeacherStudent):  # what the compression bought
        manifest["policy_parameters"] = group.policy_parameters()
    try:
        run = RunDirectory.create(run_path, manifest, resolved_config(cfg))
    except BaseException:
        group.close()
        raise
    return Trainer(run, group, cfg, reopen=functools.partial(at_checkpoint, run, cfg))


def open_run(run_path: Path, backend: Optional[str] = None, lock: bool = True) -> Trainer:
    """A run rebuilt from its latest checkpoint (or from scratch if it has none yet), on its
    own backend or on ``backend`` (the backend does not change the results). ``lock``: take the
    run's lock, as every writer does (``Trainer.close`` gives it back); a run another process
    writes is then a user error."""
    run = RunDirectory.open(run_path)
    if lock:
        run.lock()
    try:
        return _rebuilt(run, run_path, backend)
    except BaseException:
        run.unlock()
        raise


def _rebuilt(run: RunDirectory, run_path: Path, backend: Optional[str]) -> Trainer:
    try:
        cfg = build_config(run.manifest["config"], {"backend": backend} if backend else None)
        check_config(cfg)
    except UserError as exc:
        raise UserError(f"run manifest in {run_path} is corrupt: {exc}") from None
    return Trainer(run, at_checkpoint(run, cfg), cfg, reopen=functools.partial(at_checkpoint, run, cfg))


def at_checkpoint(run: RunDirectory, cfg: RunConfig) -> TrainableAgent:
    """The run's agent as its latest checkpoint holds it (fresh if it has none yet): what
    ``--resume`` continues, and what a group goes back to when a peer's Ray node dies."""
    setups = check_config(cfg)
    progress = run.manifest["progress"]
    checkpoint = run.checkpoint_dir
    if checkpoint is None:
        return assemble(cfg, setups, fresh_learners(setups))
    try:
        iterations = {setup.spec.name: int(progress["learners"][setup.spec.name]["iterations"]) for setup in setups}
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"run manifest in {run.path} is corrupt: no progress for {exc}") from None
    factories = [SavedLearner(setup, checkpoint / setup.spec.name, iterations[setup.spec.name]) for setup in setups]
    group = assemble(cfg, setups, factories)
    group.random_state = progress["rng"]
    group.restore(checkpoint)
    return group


def evaluate_run(run_path: Path, episodes: int) -> List[EvalResult]:
    """Deterministic returns of each learner of a run, from its latest checkpoint."""
    trainer = open_run(run_path, backend="local", lock=False)  # evaluation writes nothing, needs no parallelism
    try:
        if trainer.run.checkpoint_dir is None:
            raise UserError(f"run {run_path} has no checkpoint yet; nothing to evaluate")
        return [
            EvalResult(learner.spec.name, learner.spec.algo, learner.num_timesteps, *learner.evaluate(episodes), episodes)
            for learner in trainer.group.learners
        ]
    finally:
        trainer.close()
