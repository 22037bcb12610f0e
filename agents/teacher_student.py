"""Teacher-student distillation: a trained SB3 model teaches one learner (often a smaller one).

The teacher is any SB3 zip, from this project, plain SB3 or the RL zoo, with its VecNormalize
statistics when it has them. Teacher and student each normalise raw observations with their own
statistics, so neither sees the other's normalised inputs.

Modes (who samples the states, Czarnecki et al. 2019):
- ``offline``: the teacher acts and the student regresses on the teacher's states (Rusu et al.);
- ``online``: the student acts without RL updates and the teacher labels its states (DAgger-like);
- ``kickstart``: the student's own RL plus ``lambda`` times distillation on its own states, lambda
  annealed (Schmitt et al.); the two losses take alternate gradient steps rather than one summed step;
- ``gated``: ``online`` weighted by the disadvantage weight of ``xi = V_teacher - V_student``
  (DPD's rule in teacher-student form; with ``distill.weighting=hard`` it is Czarnecki et al.'s
  value-gated loss); the student's critic trains (its actor frozen) so that ``V_student`` values
  the student's current policy.
"""

import json
import math
import zipfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np
from stable_baselines3.common.vec_env import VecNormalize

from dpd.agents.algorithms import ALGORITHMS
from dpd.agents.distillation import answer_on, distill_step
from dpd.agents.learner import Learner, LearnerSpec, make_eval_env
from dpd.config import DistillConfig, RunConfig, TeacherConfig
from dpd.envs import check_env_id, make_env
from dpd.errors import UserError, unknown_choice
from dpd.fidelity import policy_fidelity

MODES = ("offline", "online", "kickstart", "gated")
# What a student's own algorithm updates in each mode where the student acts: kickstarting keeps
# its RL; gating needs the student's critic to value its current policy, so only the critic learns.
STUDENT_UPDATES = {"online": "none", "kickstart": "rl", "gated": "critic"}
SCHEDULES = ("constant", "linear", "exponential")
TEACHER_SEED_SHIFT = 20_000  # a teacher acts in its own env, seeded away from the student's
# Distillation defaults for a student: every iteration, 128 steps of 256 states at lr 1e-3 (ours,
# from benchmarks/teacher_student.py: a student learns from the teacher alone, so it needs far
# more distillation than a DPD peer).
STUDENT_DISTILL_DEFAULTS = {"every": 1, "steps": 128, "batch": 256, "lr": 1e-3, "buffer_size": 100_000}
FIDELITY_STATES = 1000


def detect_algo(path: Path) -> str:
    """The algorithm of an SB3 zip, read from its saved policy class and hyperparameters."""
    try:
        with zipfile.ZipFile(path) as archive:
            data = json.loads(archive.read("data"))
        module = str(data["policy_class"]["__module__"])
    except (zipfile.BadZipFile, KeyError, ValueError, TypeError) as exc:
        raise UserError(f"{path} is not a readable SB3 model zip: {exc}") from None
    if ".sac." in module:
        return "sac"
    if ".td3." in module:  # DDPG saves TD3's policy; TD3 loads it for acting and values
        return "td3"
    if module.endswith("common.policies"):
        return "ppo" if "clip_range" in data else "a2c"
    raise UserError(f"cannot tell the algorithm of {path} (policy module {module}); name it ({', '.join(sorted(ALGORITHMS))})")


def student_distill_defaults(cfg: RunConfig, student_algo: str) -> Dict[str, Any]:
    """A student's distillation defaults; the loss is KL where student and teacher are Gaussians
    of one kind (it matches the spread as well as the mean: a student that acts on its own
    states needs the teacher's exploration noise, not its own initial one), MSE otherwise."""
    path = Path(cfg.teacher.path)
    if not path.is_file():
        raise UserError(f"teacher model not found: {path}")
    teacher_algo = cfg.teacher.algo or detect_algo(path)
    if teacher_algo not in ALGORITHMS:
        raise unknown_choice("teacher algorithm", teacher_algo, ALGORITHMS)
    kinds = {ALGORITHMS[teacher_algo].distribution_kind, ALGORITHMS[student_algo].distribution_kind}
    same_gaussian = len(kinds) == 1 and "deterministic" not in kinds
    return dict(STUDENT_DISTILL_DEFAULTS, loss="kl" if same_gaussian else "mse")


def load_saved_learner(
    name: str, path: Path, norm: str, algo: str, env_id: str, seed: int, env_kwargs: Dict[str, Any], distill: DistillConfig
) -> Learner:
    """Any saved SB3 model as a learner that is not trained: acting, values, targets on raw states.

    ``norm``: its VecNormalize statistics; empty means ``vecnormalize.pkl`` beside the zip, or no
    normalisation when there is none. ``seed`` seeds its evaluation episodes, so a teacher and a
    student with the same seed are scored on the same episodes; it acts in an env seeded apart.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{name} model not found: {path}")
    algo = algo or detect_algo(path)
    if algo not in ALGORITHMS:
        raise unknown_choice(f"{name} algorithm", algo, ALGORITHMS)
    norm_path = Path(norm) if norm else path.with_name("vecnormalize.pkl")
    if norm and not norm_path.is_file():
        raise UserError(f"{name} normalisation file not found: {norm_path}")
    venv = make_env(env_id, seed=seed + TEACHER_SEED_SHIFT, normalize=False, env_kwargs=env_kwargs)
    try:
        if norm_path.is_file():
            env = VecNormalize.load(str(norm_path), venv)
        else:  # a model trained without normalisation: an identity wrapper keeps one interface
            env = VecNormalize(venv, norm_obs=False, norm_reward=False)
        env.training = False
        model = ALGORITHMS[algo].algo_class.load(path, env=env, device="cpu")
    except (ValueError, KeyError, AssertionError) as exc:
        venv.close()
        raise UserError(f"{name} {path} does not fit {env_id}: {exc}") from None
    except Exception as exc:  # a damaged file fails in many ways; all are the user's to fix
        venv.close()
        raise UserError(f"cannot load {name} {path}: {type(exc).__name__}: {exc}") from None
    spec = LearnerSpec(name, algo, env_id, seed, budget=0, normalize_obs=bool(env.norm_obs), env_kwargs=dict(env_kwargs))
    return ALGORITHMS[algo](spec, model, distill)


def load_teacher(cfg: RunConfig, distill: DistillConfig) -> Learner:
    """The run's teacher, evaluated on the student's episodes."""
    teacher = cfg.teacher
    return load_saved_learner(
        "teacher", Path(teacher.path), teacher.norm, teacher.algo, cfg.env, cfg.seed, cfg.env_kwargs, distill
    )


def compare_models(
    teacher_path: str,
    student_path: str,
    env_id: str,
    teacher_norm: Optional[str],
    student_norm: Optional[str],
    episodes: int,
    n_states: int,
    tolerance: float,
) -> Dict[str, Optional[float]]:
    """Fidelity of any saved student to any saved teacher, on held-out states from both
    policies' deterministic episodes, and the return ratio student / teacher."""
    check_env_id(env_id)
    distill = DistillConfig(loss="mse", alpha=0.0, every=1, steps=1, batch=1, lr=1e-3, buffer_size=1)  # neither is trained
    teacher = load_saved_learner("teacher", Path(teacher_path), teacher_norm or "", "", env_id, 0, {}, distill)
    student = load_saved_learner("student", Path(student_path), student_norm or "", "", env_id, 0, {}, distill)
    try:
        if teacher.action_space_shape != student.action_space_shape:
            raise UserError(
                f"teacher and student act in different spaces: {teacher.model.action_space} vs {student.model.action_space}"
            )
        report: Dict[str, Optional[float]] = {}
        for source, learner in (("teacher_states", teacher), ("student_states", student)):
            for key, value in fidelity(teacher, student, rollout_states(learner, n_states), tolerance).items():
                report[f"{source}/{key}"] = value
        teacher_return, _ = teacher.evaluate(episodes)
        student_return, _ = student.evaluate(episodes)
        report.update(teacher_return=teacher_return, student_return=student_return)
        report["return_ratio"] = student_return / teacher_return if teacher_return else None
        return report
    finally:
        teacher.close()
        student.close()


def kickstart_lambda(config: TeacherConfig, progress: float) -> float:
    """The distillation weight at ``progress`` (0 to 1) of the student's budget."""
    if config.kickstart_schedule == "constant":
        return config.kickstart_lambda
    if config.kickstart_schedule == "linear":
        return config.kickstart_lambda * max(0.0, 1.0 - progress)
    return config.kickstart_lambda * 0.5 ** (progress / config.kickstart_half_life)


def rollout_states(learner: Learner, steps: int) -> np.ndarray:
    """Raw states of deterministic episodes of ``learner`` on a fresh evaluation env."""
    env = make_eval_env(learner.spec)
    env.obs_rms = learner.env.obs_rms.copy()
    states = np.zeros((steps, int(np.prod(env.observation_space.shape))), dtype=np.float32)
    obs = env.reset()
    for step in range(steps):
        states[step] = env.get_original_obs()[0]
        action, _ = learner.model.predict(obs, deterministic=True)
        obs, _, _, _ = env.step(action)
    env.close()
    return states


def fidelity(teacher: Learner, student: Learner, states: np.ndarray, tolerance: float) -> Dict[str, Optional[float]]:
    """Action MSE, agreement and KL(teacher || student) of ``student`` on raw ``states``."""
    own, target = student.policy_on(states), teacher.policy_on(states)
    return policy_fidelity(
        own,
        target,
        student.scale_action(own.env_action),
        teacher.scale_action(target.env_action),
        tolerance,
        comparable_distributions=student.distribution_kind == teacher.distribution_kind,
    )


class TeacherStudent:
    """One student distilling from one teacher; trained by the same loop as a peer group."""

    def __init__(self, teacher: Learner, student: Learner, config: TeacherConfig, seed: int) -> None:
        if config.mode not in MODES:
            raise unknown_choice("distillation mode", config.mode, MODES)
        self.teacher = teacher
        self.student = student
        self.config = config
        self.learners: List[Learner] = [student]  # what the loop trains, evaluates and saves
        self.rng = np.random.default_rng(seed)
        self._teacher_obs: Optional[np.ndarray] = None
        self._teacher_states: Optional[np.ndarray] = None
        self._teacher_return: Optional[float] = None

    @property
    def run_steps(self) -> int:
        return self.student.num_timesteps

    @property
    def done(self) -> bool:
        return self.student.done

    @property
    def random_state(self) -> Dict[str, Any]:
        return self.rng.bit_generator.state

    @random_state.setter
    def random_state(self, state: Dict[str, Any]) -> None:
        self.rng.bit_generator.state = state

    def train(
        self, after_turn: Optional[Callable[[int, int], None]] = None, after_round: Optional[Callable[[], None]] = None
    ) -> None:
        """One iteration per turn and per round (one learner: nothing to synchronise)."""
        while not self.done:
            taken = self.train_iteration(0)
            if after_turn is not None:
                after_turn(0, taken)
            if after_round is not None:
                after_round()

    def close(self) -> None:
        self.student.close()
        self.teacher.close()

    def train_iteration(self, index: int = 0) -> int:
        """One iteration of the student (or, offline, of the teacher), then distillation."""
        student, mode = self.student, self.config.mode
        if mode == "offline":
            taken = self._teacher_rollout(student.steps_per_iteration)
            student.model.num_timesteps += taken  # env steps the student has learned from
            student.iterations += 1
            source = self.teacher.states
        else:
            taken = student.train_iteration(self.run_steps, update=STUDENT_UPDATES[mode])
            source = student.states
        config = student.distill_config
        if config.due(student.iterations, student.num_timesteps):
            weighting = config.weighting if mode == "gated" else "none"
            scale = kickstart_lambda(self.config, student.num_timesteps / student.spec.budget) if mode == "kickstart" else 1.0
            student.logger.record("distill/lambda", scale)
            for _ in range(config.steps):
                states = source.sample(config.batch, self.rng)
                for key, value in distill_step(
                    student, [answer_on(self.teacher, states)], states, weighting, config.alpha, scale
                ).items():
                    student.logger.record_mean(f"distill/{key}", value)
        if mode == "offline":
            student.logger.dump(step=student.num_timesteps)  # no SB3 rollout dumps the records
        return taken

    def _teacher_rollout(self, steps: int) -> int:
        """The teacher acts (sampling from its policy) in its own env; its raw states are kept.

        The student learns on these states alone, so its observation statistics follow them.
        """
        env = self.teacher.env
        if self._teacher_obs is None:
            self._teacher_obs = env.reset()
        visited = []
        for _ in range(max(1, steps // env.num_envs)):
            action, _ = self.teacher.model.predict(self._teacher_obs, deterministic=False)
            self._teacher_obs, _, _, _ = env.step(action)
            visited.append(env.get_original_obs())
        states = np.concatenate(visited)
        self.teacher.states.add(states)
        if self.student.env.norm_obs:
            self.student.env.obs_rms.update(states)
        return len(states)

    def evaluation_metrics(self, learner: Learner) -> Dict[str, float]:
        """Fidelity on held-out states from the teacher's and the student's distributions."""
        if self._teacher_states is None:
            self._teacher_states = rollout_states(self.teacher, FIDELITY_STATES)
        metrics: Dict[str, float] = {}
        for source, states in (
            ("teacher_states", self._teacher_states),
            ("student_states", rollout_states(learner, FIDELITY_STATES)),
        ):
            for key, value in fidelity(self.teacher, learner, states, self.config.agreement_tolerance).items():
                if value is not None:
                    metrics[f"fidelity/{source}/{key}"] = value
        return metrics

    def final_metrics(self, learner: Learner, student_return: float, episodes: int) -> Dict[str, float]:
        """Fidelity plus the return ratio student / teacher from deterministic episodes."""
        if self._teacher_return is None:
            self._teacher_return, _ = self.teacher.evaluate(episodes)
        metrics = self.evaluation_metrics(learner)
        metrics["fidelity/teacher_return"] = self._teacher_return
        metrics["fidelity/return_ratio"] = student_return / self._teacher_return if self._teacher_return else math.nan
        return metrics
