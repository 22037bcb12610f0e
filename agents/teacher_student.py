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

import math
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from dpd.agents.comparison import FIDELITY_STATES, fidelity, rollout_states
from dpd.agents.distillation import answer_on, distill_step
from dpd.agents.learner import Learner
from dpd.agents.peer import PeerFailure, first_line
from dpd.config import MODES, TeacherConfig
from dpd.errors import UserError, unknown_choice

# What a student's own algorithm updates in each mode where the student acts: kickstarting keeps
# its RL; gating needs the student's critic to value its current policy, so only the critic learns.
STUDENT_UPDATES = {"online": "none", "kickstart": "rl", "gated": "critic"}


def kickstart_lambda(config: TeacherConfig, progress: float) -> float:
    """The distillation weight at ``progress`` (0 to 1) of the student's budget."""
    if config.kickstart_schedule == "constant":
        return config.kickstart_lambda
    if config.kickstart_schedule == "linear":
        return config.kickstart_lambda * max(0.0, 1.0 - progress)
    return config.kickstart_lambda * 0.5 ** (progress / config.kickstart_half_life)


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
        """One iteration per turn and per round (one learner: nothing to synchronise). A student
        that raises or turns NaN fails as a peer does (``PeerFailure``, one line): the loop keeps
        its last checkpoint."""
        while not self.done:
            try:
                taken = self.train_iteration(0)
            except (UserError, KeyboardInterrupt):
                raise
            except Exception as exc:
                raise PeerFailure(0, self.student.spec.name, f"{type(exc).__name__}: {first_line(exc)}") from exc
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
                stats = distill_step(student, [answer_on(self.teacher, states)], states, weighting, config.alpha, scale)
                if not np.isfinite(stats.get("loss", 0.0)):
                    raise FloatingPointError(f"{student.spec.name}: NaN or infinity in the distillation loss")
                for key, value in stats.items():
                    student.logger.record_mean(f"distill/{key}", value)
        if not student.parameters_finite():
            raise FloatingPointError(f"{student.spec.name}: NaN or infinity in the policy after an update")
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
