"""Building, training, checkpointing and resuming a peer group inside a run directory."""

import inspect
import platform
import sys
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Dict, List, Optional, Type

from tqdm import tqdm

from agents.learner import Learner, LearnerSpec
from agents.on_policy import PPOLearner
from agents.peer_group import COMBINE_RULES, PeerGroup
from dpd.config import RunConfig, build_config, merge
from dpd.errors import UserError, unknown_choice
from dpd.losses import get_loss
from dpd.rundir import RunDirectory
from dpd.weighting import WEIGHTINGS
from envs import check_env_id
from envs.defaults import env_defaults

ALGORITHMS: Dict[str, Type[Learner]] = {"ppo": PPOLearner}
# Arguments of SB3 constructors that dpd sets itself.
RESERVED_ALGO_KWARGS = ("env", "seed", "device", "verbose", "tensorboard_log", "_init_setup_model")


@dataclass(frozen=True)
class EvalResult:
    learner: str
    algo: str
    env_steps: int
    mean_return: float
    std_return: float
    episodes: int


def resolve_config(cfg: RunConfig) -> RunConfig:
    """Put the per-env default hyperparameters under the user's ``algo_kwargs``, then check."""
    resolved = build_config(cfg.to_dict(), {"algo_kwargs": merge(env_defaults(cfg.env, cfg.algo), cfg.algo_kwargs)})
    check_config(resolved)
    return resolved


def check_config(cfg: RunConfig) -> None:
    """Every user error that can be found before anything is built or written."""
    check_env_id(cfg.env)
    if cfg.algo not in ALGORITHMS:
        raise unknown_choice("algorithm", cfg.algo, ALGORITHMS)
    positive = {
        "total_steps": cfg.total_steps,
        "peers": cfg.peers,
        "n_envs": cfg.n_envs,
        "distill.every": cfg.distill.every,
        "distill.steps": cfg.distill.steps,
        "distill.batch": cfg.distill.batch,
        "distill.buffer_size": cfg.distill.buffer_size,
        "distill.lr": cfg.distill.lr,
        "distill.max_grad_norm": cfg.distill.max_grad_norm,
        "eval.episodes": cfg.eval.episodes,
        "eval.final_episodes": cfg.eval.final_episodes,
    }
    for key, value in positive.items():
        if value <= 0:
            raise UserError(f"{key} must be positive, got {value}")
    for key, value in {"eval.every": cfg.eval.every, "checkpoint_every": cfg.checkpoint_every, "distill.alpha": cfg.distill.alpha}.items():
        if value < 0:
            raise UserError(f"{key} must not be negative, got {value}")
    if cfg.total_steps < cfg.peers:
        raise UserError(f"total_steps ({cfg.total_steps}) must give each of the {cfg.peers} peers at least one step")
    get_loss(cfg.distill.loss, kind="policy")
    if cfg.distill.weighting not in WEIGHTINGS:
        raise unknown_choice("weighting", cfg.distill.weighting, WEIGHTINGS)
    if cfg.distill.combine not in COMBINE_RULES:
        raise unknown_choice("combine rule", cfg.distill.combine, COMBINE_RULES)
    accepted = set(inspect.signature(ALGORITHMS[cfg.algo].algo_class.__init__).parameters) - {"self", *RESERVED_ALGO_KWARGS}
    for key in cfg.algo_kwargs:
        if key not in accepted:
            raise unknown_choice(f"{cfg.algo} hyperparameter (algo_kwargs)", key, accepted)
    if cfg.algo_kwargs.get("use_sde"):
        raise UserError("use_sde is not supported: distillation needs a state-independent Gaussian")


def learner_specs(cfg: RunConfig) -> List[LearnerSpec]:
    """Peer k: seed ``seed + k * seed_offset`` and an equal share of the total budget."""
    return [
        LearnerSpec(
            name=f"peer{k}",
            algo=cfg.algo,
            env_id=cfg.env,
            seed=cfg.seed + k * cfg.seed_offset,
            budget=cfg.total_steps // cfg.peers,
            n_envs=cfg.n_envs,
            normalize_obs=cfg.normalize_obs,
            normalize_reward=cfg.normalize_reward,
        )
        for k in range(cfg.peers)
    ]


def package_versions() -> Dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in ("dpd", "torch", "stable-baselines3", "gymnasium", "mujoco", "numpy"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def build_group(cfg: RunConfig) -> PeerGroup:
    """Fresh learners for a checked config; bad hyperparameter values become user errors."""
    learners = []
    for spec in learner_specs(cfg):
        try:
            learners.append(ALGORITHMS[spec.algo].create(spec, cfg.algo_kwargs, cfg.distill))
        except (TypeError, ValueError, AssertionError, KeyError) as exc:
            raise UserError(f"cannot build a {spec.algo} learner from algo_kwargs {cfg.algo_kwargs}: {exc}") from None
    return PeerGroup(learners, cfg.distill, seed=cfg.seed)


def new_run(run_path: Path, cfg: RunConfig) -> "Trainer":
    """Build everything in memory first, so a user error leaves no run directory behind."""
    group = build_group(cfg)
    manifest = {
        "dpd_run": 1,
        "command": " ".join(sys.argv),
        "config": cfg.to_dict(),
        "learners": [asdict(learner.spec) for learner in group.learners],
        "versions": package_versions(),
        "progress": {"run_steps": 0, "finished": False, "checkpoint": None},
    }
    return Trainer(RunDirectory.create(run_path, manifest), group, cfg)


def open_run(run_path: Path) -> "Trainer":
    """A run rebuilt from its latest checkpoint (or from scratch if it has none yet)."""
    run = RunDirectory.open(run_path)
    try:
        cfg = build_config(run.manifest["config"])
        specs = [LearnerSpec(**spec) for spec in run.manifest["learners"]]
    except (UserError, TypeError, KeyError) as exc:
        raise UserError(f"run manifest in {run_path} is corrupt: {exc}") from None
    progress = run.manifest["progress"]
    checkpoint = run.checkpoint_dir
    if checkpoint is None:
        group = build_group(cfg)
    else:
        learners = []
        for spec in specs:
            try:
                iterations = int(progress["learners"][spec.name]["iterations"])
                learners.append(ALGORITHMS[spec.algo].load(spec, checkpoint / spec.name, cfg.distill, iterations))
            except Exception as exc:  # any failure to read a checkpoint is reported, not raised
                raise UserError(f"checkpoint {checkpoint / spec.name} is missing or corrupt: {type(exc).__name__}: {exc}") from None
        group = PeerGroup(learners, cfg.distill, seed=cfg.seed)
        group.rng.bit_generator.state = progress["rng"]
        group._turn = int(progress.get("turn", 0))
    return Trainer(run, group, cfg)


class Trainer:
    """The training loop: peers take turns, with evaluation, TensorBoard logs and checkpoints."""

    def __init__(self, run: RunDirectory, group: PeerGroup, cfg: RunConfig) -> None:
        self.run = run
        self.group = group
        self.cfg = cfg

    @property
    def finished(self) -> bool:
        return bool(self.run.manifest["progress"].get("finished"))

    def train(self, progress_bar: bool = True) -> List[EvalResult]:
        group, cfg = self.group, self.cfg
        for learner in group.learners:
            learner.start(self.run.tensorboard_dir(learner.spec.name))
        next_eval = [self._next_multiple(learner.num_timesteps, cfg.eval.every) for learner in group.learners]
        next_checkpoint = self._next_multiple(group.run_steps, cfg.checkpoint_every)
        total = sum(learner.planned_steps for learner in group.learners)
        bar = tqdm(total=total, initial=min(group.run_steps, total), unit="step", desc="dpd train", disable=not progress_bar, mininterval=1.0, dynamic_ncols=True)

        def after_iteration(index: int, taken: int) -> None:
            nonlocal next_checkpoint
            bar.update(taken)
            learner = group.learners[index]
            if learner.num_timesteps >= next_eval[index]:
                self._evaluate(learner, cfg.eval.episodes)
                next_eval[index] = self._next_multiple(learner.num_timesteps, cfg.eval.every)
            if group.run_steps >= next_checkpoint:
                self.checkpoint()
                next_checkpoint = self._next_multiple(group.run_steps, cfg.checkpoint_every)

        try:
            group.train(after_iteration)
        except KeyboardInterrupt:
            bar.close()
            self.checkpoint()
            raise
        bar.close()
        results = [self._evaluate(learner, cfg.eval.final_episodes) for learner in group.learners]
        for learner in group.learners:
            learner.finish()
        self.checkpoint(final_eval=[asdict(result) for result in results])
        return results

    @staticmethod
    def _next_multiple(current: int, every: int) -> float:
        return (current // every + 1) * every if every > 0 else float("inf")

    def _evaluate(self, learner: Learner, episodes: int) -> EvalResult:
        mean, std = learner.evaluate(episodes)
        learner.logger.record("eval/mean_reward", mean)
        learner.logger.record("eval/std_reward", std)
        learner.logger.record("time/run_total_steps", self.group.run_steps)
        learner.logger.dump(step=learner.num_timesteps)
        return EvalResult(learner.spec.name, learner.spec.algo, learner.num_timesteps, mean, std, episodes)

    def checkpoint(self, final_eval: Optional[List[Dict[str, Any]]] = None) -> Path:
        """Save every learner and the loop's state; ``final_eval`` marks the run finished."""
        group = self.group

        def write(directory: Path) -> None:
            for learner in group.learners:
                learner.save(directory / learner.spec.name)

        progress: Dict[str, Any] = {
            "run_steps": group.run_steps,
            "learners": {l.spec.name: {"num_timesteps": l.num_timesteps, "iterations": l.iterations} for l in group.learners},
            "turn": group._turn,
            "rng": group.rng.bit_generator.state,
            "finished": final_eval is not None,
        }
        if final_eval is not None:
            progress["final_eval"] = final_eval
        return self.run.save_checkpoint(f"step_{group.run_steps:010d}", write, progress)

    def close(self) -> None:
        for learner in self.group.learners:
            learner.close()


def evaluate_run(run_path: Path, episodes: int) -> List[EvalResult]:
    """Deterministic returns of each learner of a run, from its latest checkpoint."""
    trainer = open_run(run_path)
    if trainer.run.checkpoint_dir is None:
        raise UserError(f"run {run_path} has no checkpoint yet; nothing to evaluate")
    try:
        return [
            EvalResult(l.spec.name, l.spec.algo, l.num_timesteps, *l.evaluate(episodes), episodes)
            for l in trainer.group.learners
        ]
    finally:
        trainer.close()
