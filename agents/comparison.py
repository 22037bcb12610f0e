"""How closely a student's policy follows a teacher's: fidelity on states from deterministic
episodes, shared by a teacher-student run's evaluations and by ``dpd fidelity`` on two saved models."""

import time
from typing import Dict, NamedTuple, Optional

import numpy as np
import torch

from dpd.agents.learner import Learner, copy_obs_statistics, make_eval_env
from dpd.agents.teacher_loading import UNTRAINED, load_saved_learner, teacher_files
from dpd.config import TeacherConfig, comma_list
from dpd.envs import check_env_id
from dpd.envs.observation_view import TrajectoryViews, seen_and_full
from dpd.errors import UserError
from dpd.fidelity import policy_fidelity

FIDELITY_STATES = 1000


class VisitedStates(NamedTuple):
    """Raw states of a rollout as a student sees them (``seen``) and in full, as its teacher sees
    them: one array twice where the student sees the full observation."""

    seen: np.ndarray
    full: np.ndarray


def rollout_states(learner: Learner, steps: int, views: Optional[TrajectoryViews] = None) -> VisitedStates:
    """Raw states of deterministic episodes of ``learner`` on a fresh evaluation env. A student
    that sees a view (``student.obs``) reads the full observations from its env; a learner that
    sees them all (a teacher) gets a student's view of its own episodes from ``views``."""
    env = make_eval_env(learner.spec)
    copy_obs_statistics(learner.env, env)
    seen_rows, full_rows = [], []
    obs = env.reset()
    starts = np.ones(1, dtype=bool)
    for _ in range(steps):
        seen, full = seen_and_full(env)
        seen_rows.append(seen[0] if views is None else views.observe(full, starts)[0])
        full_rows.append(full[0])
        action, _ = learner.model.predict(obs, deterministic=True)
        obs, _, starts, _ = env.step(action)
    env.close()
    return VisitedStates(np.array(seen_rows, dtype=np.float32), np.array(full_rows, dtype=np.float32))


def microseconds_per_action(learner: Learner, states: np.ndarray, repeats: int = 2000) -> float:
    """Median microseconds of one deterministic action at batch 1 on one CPU thread, through the
    SB3 policy from a normalised observation (``policy._predict``: the network and the action
    distribution it builds; ``predict``'s numpy conversions left out). For small MLPs the per-call
    work outweighs the matrix products (benchmarks/RESULTS.md, teacher-student)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        observations = [learner.normalize(states[i % len(states)][None]) for i in range(repeats)]
        policy = learner.model.policy  # on its device: dpd's default, the CPU
        timings = []
        with torch.no_grad():
            for obs in observations:
                start = time.perf_counter()
                policy._predict(obs, deterministic=True)
                timings.append(time.perf_counter() - start)
        return float(np.median(timings) * 1e6)
    finally:
        torch.set_num_threads(threads)


def fidelity(
    teacher: Learner, student: Learner, states: np.ndarray, tolerance: float, teacher_states: Optional[np.ndarray] = None
) -> Dict[str, Optional[float]]:
    """Action MSE, agreement and KL(teacher || student) of ``student`` on raw ``states``; the
    teacher answers on ``teacher_states``, the same states in full where the student sees a view
    of them (default: ``states``)."""
    own, target = student.policy_on(states), teacher.policy_on(states if teacher_states is None else teacher_states)
    return policy_fidelity(
        own,
        target,
        student.scale_action(own.env_action),
        teacher.scale_action(target.env_action),
        tolerance,
        comparable_distributions=student.distribution_kind == teacher.distribution_kind,
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
    gym_packages: str = "",
) -> Dict[str, Optional[float]]:
    """Fidelity of any saved student to any saved teacher, on held-out states from both
    policies' deterministic episodes, and the return ratio student / teacher. ``gym_packages``:
    modules to import first, comma-separated (``dpd.envs.custom``)."""
    check_env_id(env_id, comma_list(gym_packages))

    def load(name: str, path: str, norm: Optional[str]) -> Learner:
        ((model, statistics),) = teacher_files(TeacherConfig(path=path, norm=norm or ""))  # a zip, or a run's best learner
        return load_saved_learner(name, model, statistics, "", env_id, 0, {}, UNTRAINED, gym_packages=gym_packages)

    teacher, student = load("teacher", teacher_path, teacher_norm), load("student", student_path, student_norm)
    try:
        if teacher.action_space_shape != student.action_space_shape:
            raise UserError(
                f"teacher and student act in different spaces: {teacher.model.action_space} vs {student.model.action_space}"
            )
        report: Dict[str, Optional[float]] = {}
        for source, learner in (("teacher_states", teacher), ("student_states", student)):
            for key, value in fidelity(teacher, student, rollout_states(learner, n_states).seen, tolerance).items():
                report[f"{source}/{key}"] = value
        teacher_return, _ = teacher.evaluate(episodes)
        student_return, _ = student.evaluate(episodes)
        report.update(teacher_return=teacher_return, student_return=student_return)
        states = rollout_states(teacher, 200).seen
        report.update(
            teacher_us_per_action=microseconds_per_action(teacher, states),
            student_us_per_action=microseconds_per_action(student, states),
        )
        report["return_ratio"] = student_return / teacher_return if teacher_return else None
        return report
    finally:
        teacher.close()
        student.close()
