"""Loading a saved SB3 model (a teacher, or either side of a comparison) as a learner that is
not trained, and the distillation defaults a student of such a teacher starts from.

The model is any SB3 zip, from this project, plain SB3 or the RL zoo, with its VecNormalize
statistics when it has them; it is kept apart from the agent so that comparing two saved models
needs no teacher-student run.
"""

import dataclasses
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from stable_baselines3.common.vec_env import VecNormalize

from dpd.agents.algorithms import ALGORITHMS
from dpd.agents.demonstrations import RECORDED_KIND, dataset_id
from dpd.agents.learner import MODEL_FILE, NORM_FILE, Learner, LearnerSpec
from dpd.agents.model_zip import detect_algo
from dpd.config import DistillConfig, ObservationViewConfig, RunConfig, TeacherConfig
from dpd.errors import UserError, unknown_choice
from dpd.rundir import learner_files

TEACHER_SEED_SHIFT = 20_000  # a teacher acts in its own env, seeded away from the student's
# Distillation defaults for a student: every iteration, 128 steps of 256 states at lr 1e-3 (ours,
# from benchmarks/teacher_student.py: a student learns from the teacher alone, so it needs far
# more distillation than a DPD peer). bc and dagger take batch, lr and buffer_size (their data
# set's cap) from here and their gradient steps from teacher.epochs and teacher.max_round_updates.
# The distillation settings of a saved model that only acts and answers (a teacher, either side of
# a comparison, a model being exported): it is never trained, so nothing here is used to train.
UNTRAINED = DistillConfig(loss="mse", alpha=0.0, every=1, steps=1, batch=1, lr=1e-3, buffer_size=1)
STUDENT_DISTILL_DEFAULTS = {"every": 1, "steps": 128, "batch": 256, "lr": 1e-3, "buffer_size": 100_000}


def teacher_files(teacher: TeacherConfig) -> List[Tuple[Path, str]]:
    """Each teacher's zip and its VecNormalize statistics (empty: beside the zip, if any), the
    one that acts first. A dpd run directory as ``teacher.path`` teaches with its learners from
    its latest checkpoint: the one with the best final evaluation (else the first, as ``dpd
    export`` picks) and, with ``teacher.learners=all``, the others after it. A Minari dataset has none."""
    if dataset_id(teacher.path) is not None:
        return []  # recorded demonstrations: no model teaches
    path = Path(teacher.path)
    if not path.is_dir():
        if teacher.learners == "all":
            raise UserError(f"teacher.learners=all takes the learners of a dpd run directory; {path} is no directory")
        return [(path, teacher.norm)]
    manifest, best, folder = learner_files(path)
    if best.get("view"):  # its policy takes a stack of some entries: it cannot answer on an env's observation
        raise UserError(
            f"{path}'s {best['name']} sees a view of the observation (student.obs); a teacher, or a model dpd fidelity "
            "compares, sees the whole observation"
        )
    folders = [folder]
    if teacher.learners == "all":
        folders += [folder.parent / spec["name"] for spec in manifest["learners"] if spec["name"] != best["name"]]
    files = [(learner / MODEL_FILE, str(learner / NORM_FILE)) for learner in folders]
    if teacher.norm:  # --teacher-norm: the statistics of the one that acts
        files[0] = (files[0][0], teacher.norm)
    return files


def student_distill_defaults(cfg: RunConfig, student_algo: str) -> Dict[str, Any]:
    """A student's distillation defaults; the loss is KL where student and teacher are Gaussians
    of one kind (it matches the spread as well as the mean: a student that acts on its own
    states needs the teacher's exploration noise, not its own initial one), MSE otherwise."""
    kinds = {ALGORITHMS[student_algo].distribution_kind}
    if dataset_id(cfg.teacher.path) is not None:
        kinds.add(RECORDED_KIND)  # actions alone
    for path, _ in teacher_files(cfg.teacher):
        if not path.is_file():
            raise UserError(f"teacher model not found: {path}")
        teacher_algo = cfg.teacher.algo or detect_algo(path)
        if teacher_algo not in ALGORITHMS:
            raise unknown_choice("teacher algorithm", teacher_algo, ALGORITHMS)
        kinds.add(ALGORITHMS[teacher_algo].distribution_kind)
    same_gaussian = len(kinds) == 1 and "deterministic" not in kinds
    return dict(STUDENT_DISTILL_DEFAULTS, loss="kl" if same_gaussian else "mse")


def load_saved_learner(
    name: str,
    path: Path,
    norm: str,
    algo: str,
    env_id: str,
    seed: int,
    env_kwargs: Dict[str, Any],
    distill: DistillConfig,
    gym_packages: str = "",
    device: str = "cpu",
    view: Optional[ObservationViewConfig] = None,
) -> Learner:
    """Any saved SB3 model as a learner that is not trained: acting, values, targets on raw states.

    ``norm``: its VecNormalize statistics; empty means ``vecnormalize.pkl`` beside the zip, or no
    normalisation when there is none. ``seed`` seeds its evaluation episodes, so a teacher and a
    student with the same seed are scored on the same episodes; it acts in an env seeded apart.
    ``gym_packages`` (comma-separated) and ``device`` as the run's config gives them; ``view``:
    what it sees of the observation, a student's (``student.obs``) where it saw less than all.
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
    spec = LearnerSpec(
        name,
        algo,
        env_id,
        seed,
        budget=0,
        env_kwargs=dict(env_kwargs),
        gym_packages=gym_packages,
        device=device,
        view=view,
    )
    venv = spec.make_env(seed + TEACHER_SEED_SHIFT, normalize=False)
    try:
        if norm_path.is_file():
            env = VecNormalize.load(str(norm_path), venv)
        else:  # a model trained without normalisation: an identity wrapper keeps one interface
            env = VecNormalize(venv, norm_obs=False, norm_reward=False)
        env.training = False
        model = ALGORITHMS[algo].algo_class.load(path, env=env, device=device)
    except (ValueError, KeyError, AssertionError) as exc:
        venv.close()
        raise UserError(f"{name} {path} does not fit {env_id}: {exc}") from None
    except Exception as exc:  # a damaged file fails in many ways; all are the user's to fix
        venv.close()
        raise UserError(f"cannot load {name} {path}: {type(exc).__name__}: {exc}") from None
    return ALGORITHMS[algo](dataclasses.replace(spec, normalize_obs=bool(env.norm_obs)), model, distill)


def load_teachers(cfg: RunConfig, distill: DistillConfig) -> List[Learner]:
    """The run's teachers (``teacher_files``; the one that acts first), evaluated on the student's episodes."""
    teacher = cfg.teacher
    files = teacher_files(teacher)
    teachers: List[Learner] = []
    try:
        for path, norm in files:
            name = "teacher" if len(files) == 1 else f"teacher {path.parent.name}"
            teachers.append(
                load_saved_learner(
                    name,
                    path,
                    norm,
                    teacher.algo,
                    cfg.env,
                    cfg.seed,
                    cfg.env_kwargs,
                    distill,
                    gym_packages=cfg.gym_packages,
                    device=cfg.device,
                )
            )
    except BaseException:
        for loaded in teachers:
            loaded.close()
        raise
    return teachers
