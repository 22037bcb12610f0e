"""Building, training, checkpointing and resuming a peer group inside a run directory."""

import functools
import inspect
import platform
import shutil
import sys
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Union

from tqdm import tqdm

from dpd.agents.algorithms import ALGORITHMS
from dpd.agents.learner import Learner, LearnerSpec
from dpd.agents.peer_group import COMBINE_RULES, GATES, PeerGroup
from dpd.agents.peers import BACKENDS, PeerFailure, make_backend
from dpd.agents.teacher_student import MODES, SCHEDULES, TeacherStudent, load_teacher, student_distill_defaults
from dpd.config import DistillConfig, RunConfig, build_config, build_distill_config, merge
from dpd.envs import check_env_id
from dpd.envs.defaults import env_defaults
from dpd.errors import UserError, unknown_choice
from dpd.losses import get_loss
from dpd.rundir import RunDirectory
from dpd.weighting import WEIGHTINGS

# Arguments of SB3 constructors that dpd sets itself.
RESERVED_ALGO_KWARGS = ("env", "seed", "device", "verbose", "tensorboard_log", "_init_setup_model")
PEER_CONFIG_KEYS = ("algo", "algo_kwargs", "distill")
DISTRIBUTION_LOSSES = ("nll", "kl", "kl_reverse")
PEER_DISTILL_DEFAULTS = {"loss": "mse"}  # the paper's choice


@dataclass(frozen=True)
class EvalResult:
    learner: str
    algo: str
    env_steps: int
    mean_return: float
    std_return: float
    episodes: int
    metrics: Dict[str, float] = field(default_factory=dict)  # e.g. a student's fidelity to its teacher


@dataclass(frozen=True)
class PeerSetup:
    """Everything needed to build one peer: who it is, its SB3 arguments, how it distills."""

    spec: LearnerSpec
    algo_kwargs: Dict[str, Any]
    distill: DistillConfig


def peer_setups(cfg: RunConfig) -> List[PeerSetup]:
    """Peer k: algorithm ``algo`` (cycled) or its ``peer_configs[k]`` entry, seed
    ``seed + k * seed_offset``, an equal share of the budget, and its hyperparameters and
    distillation settings merged as: algorithm/env defaults < run config < peer config."""
    if len(cfg.peer_configs) > cfg.peers:
        raise UserError(f"peer_configs has {len(cfg.peer_configs)} entries for {cfg.peers} peers")
    algos = [name.strip() for name in cfg.algo.split(",")]
    run_distill = {key: value for key, value in asdict(cfg.distill).items() if value is not None}
    setups = []
    for k in range(cfg.peers):
        override = cfg.peer_configs[k] if k < len(cfg.peer_configs) else {}
        for key in override:
            if key not in PEER_CONFIG_KEYS:
                raise unknown_choice(f"key in peer_configs[{k}]", key, PEER_CONFIG_KEYS)
        algo = override.get("algo", algos[k % len(algos)])
        if algo not in ALGORITHMS:
            raise unknown_choice("algorithm", algo, ALGORITHMS)
        if not isinstance(override.get("algo_kwargs", {}), dict) or not isinstance(override.get("distill", {}), dict):
            raise UserError(f"peer_configs[{k}]: algo_kwargs and distill must be mappings")
        build_distill_config(override.get("distill"), prefix=f"peer_configs[{k}].distill.")  # checks keys and types
        role_defaults = student_distill_defaults(cfg, algo) if cfg.teacher.path else PEER_DISTILL_DEFAULTS
        distill = build_distill_config(ALGORITHMS[algo].distill_defaults, role_defaults, run_distill, override.get("distill"))
        algo_kwargs = merge(merge(env_defaults(cfg.env, algo), cfg.algo_kwargs), override.get("algo_kwargs", {}))
        spec = LearnerSpec(
            name="student" if cfg.teacher.path else f"peer{k}",
            algo=algo,
            env_id=cfg.env,
            seed=cfg.seed + k * cfg.seed_offset,
            budget=cfg.total_steps // cfg.peers,
            n_envs=cfg.n_envs,
            normalize_obs=cfg.normalize_obs,
            normalize_reward=cfg.normalize_reward,
            save_replay_buffer=cfg.save_replay_buffer,
            env_kwargs=dict(cfg.env_kwargs),
        )
        setups.append(PeerSetup(spec, algo_kwargs, distill))
    return setups


def check_config(cfg: RunConfig) -> List[PeerSetup]:
    """Every user error that can be found before anything is built or written."""
    check_env_id(cfg.env)
    positive = {
        "total_steps": cfg.total_steps,
        "peers": cfg.peers,
        "n_envs": cfg.n_envs,
        "eval.episodes": cfg.eval.episodes,
        "eval.final_episodes": cfg.eval.final_episodes,
    }
    for key, value in positive.items():
        if value <= 0:
            raise UserError(f"{key} must be positive, got {value}")
    for key, value in {
        "eval.every": cfg.eval.every,
        "checkpoint_every": cfg.checkpoint_every,
        "turn_steps": cfg.turn_steps,
    }.items():
        if value < 0:
            raise UserError(f"{key} must not be negative, got {value}")
    if cfg.backend not in BACKENDS:
        raise unknown_choice("backend", cfg.backend, BACKENDS)
    if cfg.teacher.path and cfg.backend != "local":
        raise UserError("a teacher-student run trains one learner: --parallel and --backend apply to peer groups")
    if cfg.total_steps < cfg.peers:
        raise UserError(f"total_steps ({cfg.total_steps}) must give each of the {cfg.peers} peers at least one step")
    if cfg.teacher.path:
        _check_teacher_config(cfg)
    setups = peer_setups(cfg)
    for setup in setups:
        _check_peer(setup)
    _check_group(setups)
    return setups


def _check_teacher_config(cfg: RunConfig) -> None:
    teacher = cfg.teacher
    if cfg.peers != 1:
        raise UserError(f"a teacher teaches one student; got peers={cfg.peers}")
    if teacher.mode not in MODES:
        raise unknown_choice("distillation mode", teacher.mode, MODES)
    if teacher.kickstart_schedule not in SCHEDULES:
        raise unknown_choice("kickstart schedule", teacher.kickstart_schedule, SCHEDULES)
    if teacher.algo and teacher.algo not in ALGORITHMS:
        raise unknown_choice("teacher algorithm", teacher.algo, ALGORITHMS)
    if teacher.kickstart_lambda < 0 or teacher.kickstart_half_life <= 0 or teacher.agreement_tolerance <= 0:
        raise UserError(
            "teacher.kickstart_lambda must not be negative; kickstart_half_life and agreement_tolerance must be positive"
        )
    if cfg.distill.gate != "none":
        raise UserError("distill.gate compares peers' returns: a teacher-student run has no peer to gate")


def _check_peer(setup: PeerSetup) -> None:
    distill, algo = setup.distill, setup.spec.algo
    where = f"{setup.spec.name} ({algo})"
    for key in ("every", "steps", "batch", "buffer_size", "lr", "max_grad_norm", "temperature", "gate_episodes"):
        if getattr(distill, key) <= 0:
            raise UserError(f"distill.{key} must be positive, got {getattr(distill, key)} for {where}")
    for key in ("alpha", "start"):
        if getattr(distill, key) < 0:
            raise UserError(f"distill.{key} must not be negative, got {getattr(distill, key)} for {where}")
    get_loss(distill.loss, kind="policy")
    if distill.temperature != 1.0 and distill.loss not in ("kl", "kl_reverse"):
        raise UserError(f"distill.temperature applies to the kl and kl_reverse losses, not {distill.loss!r} ({where})")
    if distill.weighting not in WEIGHTINGS:
        raise unknown_choice("weighting", distill.weighting, WEIGHTINGS)
    if distill.combine not in COMBINE_RULES:
        raise unknown_choice("combine rule", distill.combine, COMBINE_RULES)
    if distill.gate not in GATES:
        raise unknown_choice("distillation gate", distill.gate, GATES)
    learner_class = ALGORITHMS[algo]
    if distill.enabled and distill.loss in DISTRIBUTION_LOSSES and learner_class.distribution_kind == "deterministic":
        raise UserError(f"loss {distill.loss!r} needs a stochastic policy but {where} is deterministic; use distill.loss=mse")
    accepted = set(inspect.signature(learner_class.algo_class.__init__).parameters) - {"self", *RESERVED_ALGO_KWARGS}
    for key in setup.algo_kwargs:
        if key not in accepted:
            raise unknown_choice(f"{algo} hyperparameter (algo_kwargs)", key, accepted)
    if setup.algo_kwargs.get("use_sde"):
        raise UserError(f"use_sde is not supported ({where}): distillation needs a state-independent Gaussian")


def _discount(setup: PeerSetup) -> float:
    default = inspect.signature(ALGORITHMS[setup.spec.algo].algo_class.__init__).parameters["gamma"].default
    return float(setup.algo_kwargs.get("gamma", default))


def _check_group(setups: List[PeerSetup]) -> None:
    """Peers' values must estimate the same quantity, and KL needs one kind of distribution."""
    discounts = {setup.spec.name: _discount(setup) for setup in setups}
    if len(set(discounts.values())) > 1:
        listed = ", ".join(f"{name}: {gamma}" for name, gamma in discounts.items())
        raise UserError(f"peers must share one discount to compare values ({listed}); set algo_kwargs.gamma for all")
    kinds = {setup.spec.name: ALGORITHMS[setup.spec.algo].distribution_kind for setup in setups}
    for setup in setups:
        if setup.distill.enabled and setup.distill.loss in ("kl", "kl_reverse") and len(set(kinds.values())) > 1:
            raise UserError(
                f"loss {setup.distill.loss!r} compares distributions of one kind, but the peers mix "
                f"{', '.join(sorted(set(kinds.values())))}; use mse or nll"
            )


def package_versions() -> Dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in ("dpd", "torch", "stable-baselines3", "gymnasium", "mujoco", "numpy"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


Agent = Union[PeerGroup, TeacherStudent]


LearnerFactory = Callable[[], Learner]


def build_group(cfg: RunConfig) -> PeerGroup:
    """Fresh peers for a config without a teacher; bad hyperparameter values become user errors."""
    setups = check_config(cfg)
    group = assemble(cfg, setups, [functools.partial(build_learner, setup) for setup in setups])
    assert isinstance(group, PeerGroup), "a config with a teacher builds a TeacherStudent"
    return group


def build_learners(cfg: RunConfig) -> List[Learner]:
    """Fresh learners of a config, in this process (to drive by hand, as the tests do)."""
    return [build_learner(setup) for setup in check_config(cfg)]


def assemble(cfg: RunConfig, setups: List[PeerSetup], factories: List[LearnerFactory]) -> Agent:
    """The peer group on its backend (where the factories run), or the teacher-student pair
    when the config names a teacher."""
    if not cfg.teacher.path:
        backend = make_backend(cfg.backend, factories, [setup.spec.name for setup in setups], cfg.ray_address)
        return PeerGroup(
            backend, [setup.spec for setup in setups], [setup.distill for setup in setups], cfg.seed, cfg.turn_steps
        )
    student = factories[0]()
    try:
        teacher = _checked_teacher(setups[0], load_teacher(cfg, setups[0].distill))
    except BaseException:
        student.close()
        raise
    return TeacherStudent(teacher, student, cfg.teacher, seed=cfg.seed)


def _checked_teacher(student: PeerSetup, teacher: Learner) -> Learner:
    """What a mixed peer group refuses, a student and teacher must also satisfy."""
    teacher_setup = PeerSetup(teacher.spec, {"gamma": teacher.gamma}, student.distill)
    try:
        _check_group([student, teacher_setup])
    except UserError as exc:
        teacher.close()
        raise UserError(f"teacher and student: {exc}") from None
    return teacher


def build_learner(setup: PeerSetup) -> Learner:
    """A fresh learner; hyperparameter values SB3 rejects become user errors."""
    try:
        return ALGORITHMS[setup.spec.algo].create(setup.spec, setup.algo_kwargs, setup.distill)
    except (TypeError, ValueError, AssertionError, KeyError) as exc:
        raise UserError(f"cannot build a {setup.spec.algo} learner from algo_kwargs {setup.algo_kwargs}: {exc}") from None


def load_learner(setup: PeerSetup, directory: Path, iterations: int) -> Learner:
    """A learner from its checkpoint directory; any failure to read it is a user error. A peer
    that never reached a checkpoint (it died first) starts afresh."""
    if iterations == 0 and not directory.exists():
        return build_learner(setup)
    try:
        return ALGORITHMS[setup.spec.algo].load(setup.spec, directory, setup.distill, iterations)
    except Exception as exc:
        raise UserError(f"checkpoint {directory} is missing or corrupt: {type(exc).__name__}: {exc}") from None


def new_run(run_path: Path, cfg: RunConfig) -> "Trainer":
    """Build everything in memory first, so a user error leaves no run directory behind."""
    setups = check_config(cfg)
    group = assemble(cfg, setups, [functools.partial(build_learner, setup) for setup in setups])
    manifest = {
        "dpd_run": 1,
        "command": " ".join(sys.argv),
        "config": cfg.to_dict(),
        "learners": [asdict(setup.spec) for setup in setups],
        "resolved_peers": [
            {"name": setup.spec.name, "algo_kwargs": setup.algo_kwargs, "distill": asdict(setup.distill)} for setup in setups
        ],
        "versions": package_versions(),
        "progress": {"run_steps": 0, "finished": False, "checkpoint": None},
    }
    return Trainer(RunDirectory.create(run_path, manifest), group, cfg)


def open_run(run_path: Path, backend: Optional[str] = None) -> "Trainer":
    """A run rebuilt from its latest checkpoint (or from scratch if it has none yet), on its
    own backend or on ``backend`` (the backend does not change the results)."""
    run = RunDirectory.open(run_path)
    try:
        cfg = build_config(run.manifest["config"], {"backend": backend} if backend else None)
        setups = check_config(cfg)
    except UserError as exc:
        raise UserError(f"run manifest in {run_path} is corrupt: {exc}") from None
    progress = run.manifest["progress"]
    checkpoint = run.checkpoint_dir
    if checkpoint is None:
        return Trainer(run, assemble(cfg, setups, [functools.partial(build_learner, setup) for setup in setups]), cfg)
    try:
        iterations = {setup.spec.name: int(progress["learners"][setup.spec.name]["iterations"]) for setup in setups}
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"run manifest in {run_path} is corrupt: no progress for {exc}") from None
    factories = [
        functools.partial(load_learner, setup, checkpoint / setup.spec.name, iterations[setup.spec.name]) for setup in setups
    ]
    group = assemble(cfg, setups, factories)
    group.random_state = progress["rng"]
    return Trainer(run, group, cfg)


class Trainer:
    """The training loop: peers take turns, with evaluation, TensorBoard logs and checkpoints."""

    def __init__(self, run: RunDirectory, group: Agent, cfg: RunConfig) -> None:
        self.run = run
        self.group = group
        self.cfg = cfg
        self.history: List[EvalResult] = []  # every evaluation of this process, in order

    @property
    def finished(self) -> bool:
        return bool(self.run.manifest["progress"].get("finished"))

    def train(self, progress_bar: bool = True) -> List[EvalResult]:
        group, cfg = self.group, self.cfg
        try:
            for learner in group.learners:
                learner.start(self.run.tensorboard_dir(learner.spec.name))
        except PeerFailure as failure:
            self.checkpoint_survivors(failure.index)
            raise
        next_eval = [self._next_multiple(learner.num_timesteps, cfg.eval.every) for learner in group.learners]
        next_checkpoint = self._next_multiple(group.run_steps, cfg.checkpoint_every)
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

        def after_turn(index: int, taken: int) -> None:
            bar.update(taken)
            learner = group.learners[index]
            if learner.num_timesteps >= next_eval[index]:
                self._evaluate(learner, cfg.eval.episodes)
                next_eval[index] = self._next_multiple(learner.num_timesteps, cfg.eval.every)

        def after_round() -> None:  # between rounds every peer is in a consistent state
            nonlocal next_checkpoint
            if group.run_steps >= next_checkpoint:
                self.checkpoint()
                next_checkpoint = self._next_multiple(group.run_steps, cfg.checkpoint_every)

        try:
            group.train(after_turn, after_round)
        except KeyboardInterrupt:
            bar.close()
            self.checkpoint()
            raise
        except PeerFailure as failure:
            bar.close()
            self.checkpoint_survivors(failure.index)
            raise
        bar.close()
        results = [self._evaluate(learner, cfg.eval.final_episodes, final=True) for learner in group.learners]
        for learner in group.learners:
            learner.finish()
        self.checkpoint(final_eval=[asdict(result) for result in results])
        return results

    @staticmethod
    def _next_multiple(current: int, every: int) -> float:
        return (current // every + 1) * every if every > 0 else float("inf")

    def _evaluate(self, learner: Learner, episodes: int, final: bool = False) -> EvalResult:
        mean, std = learner.evaluate(episodes)
        metrics: Dict[str, float] = {}
        if isinstance(self.group, TeacherStudent):
            metrics = self.group.final_metrics(learner, mean, episodes) if final else self.group.evaluation_metrics(learner)
        learner.log(
            {"eval/mean_reward": mean, "eval/std_reward": std, "time/run_total_steps": self.group.run_steps, **metrics},
            learner.num_timesteps,
        )
        result = EvalResult(learner.spec.name, learner.spec.algo, learner.num_timesteps, mean, std, episodes, metrics)
        self.history.append(result)
        return result

    def checkpoint(self, final_eval: Optional[List[Dict[str, Any]]] = None) -> Path:
        """Save every learner and the loop's state; ``final_eval`` marks the run finished."""
        group = self.group

        def write(directory: Path) -> None:
            for learner in group.learners:
                learner.save(directory / learner.spec.name)

        progress: Dict[str, Any] = {
            "run_steps": group.run_steps,
            "learners": {
                learner.spec.name: {"num_timesteps": learner.num_timesteps, "iterations": learner.iterations}
                for learner in group.learners
            },
            "rng": group.random_state,
            "finished": final_eval is not None,
        }
        if final_eval is not None:
            progress["final_eval"] = final_eval
        return self.run.save_checkpoint(f"step_{group.run_steps:010d}", write, progress)

    def checkpoint_survivors(self, failed: int) -> Path:
        """After peer ``failed`` died: the others as they are now, the failed one as in the last
        checkpoint (or afresh, if it had none), so that ``--resume`` loses only its work."""
        group = self.group
        previous, before = self.run.checkpoint_dir, self.run.manifest["progress"].get("learners", {})
        failed_name = group.learners[failed].spec.name
        failed_progress = before.get(failed_name, {"num_timesteps": 0, "iterations": 0})

        def write(directory: Path) -> None:
            for learner in group.learners:
                if learner.spec.name != failed_name:
                    learner.save(directory / learner.spec.name)
                elif previous is not None and (previous / failed_name).exists():
                    shutil.copytree(previous / failed_name, directory / failed_name)

        learners = {
            learner.spec.name: {"num_timesteps": learner.num_timesteps, "iterations": learner.iterations}
            for learner in group.learners
        }
        learners[failed_name] = failed_progress
        run_steps = sum(entry["num_timesteps"] for entry in learners.values())
        progress = {"run_steps": run_steps, "learners": learners, "rng": group.random_state, "finished": False}
        return self.run.save_checkpoint(f"step_{run_steps:010d}", write, progress)

    def close(self) -> None:
        self.group.close()


def evaluate_run(run_path: Path, episodes: int) -> List[EvalResult]:
    """Deterministic returns of each learner of a run, from its latest checkpoint."""
    trainer = open_run(run_path, backend="local")  # evaluation needs no parallelism
    if trainer.run.checkpoint_dir is None:
        raise UserError(f"run {run_path} has no checkpoint yet; nothing to evaluate")
    try:
        return [
            EvalResult(learner.spec.name, learner.spec.algo, learner.num_timesteps, *learner.evaluate(episodes), episodes)
            for learner in trainer.group.learners
        ]
    finally:
        trainer.close()
