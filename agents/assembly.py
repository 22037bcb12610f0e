"""Building learners, peer groups and teacher-student pairs from checked peer setups.

It exists so that a fresh run, a resumed run and the tools that drive learners by hand
(benchmarks, tests) build them the same way, and so that hyperparameter values SB3 rejects and
unreadable checkpoints become user errors in one place.
"""

import functools
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, List, Optional

from dpd.agents.algorithms import ALGORITHMS
from dpd.agents.backend import make_backend
from dpd.agents.checks import check_config, check_group
from dpd.agents.demonstrations import dataset_id, load_demonstrations
from dpd.agents.learner import Learner
from dpd.agents.peer_group import PeerGroup
from dpd.agents.peer_setup import PeerSetup
from dpd.agents.teacher_loading import load_teachers
from dpd.agents.teacher_student import TeacherStudent
from dpd.agents.trainer import TrainableAgent
from dpd.config import RunConfig
from dpd.errors import UserError
from dpd.filetree import FileTree

LearnerFactory = Callable[[], Learner]


def build_group(cfg: RunConfig) -> PeerGroup:
    """Fresh peers for a config without a teacher; bad hyperparameter values become user errors."""
    setups = check_config(cfg)
    group = assemble(cfg, setups, fresh_learners(setups))
    assert isinstance(group, PeerGroup), "a config with a teacher builds a TeacherStudent"
    return group


def build_learners(cfg: RunConfig) -> List[Learner]:
    """Fresh learners of a config, in this process (to drive by hand, as the tests do)."""
    return [build_learner(setup) for setup in check_config(cfg)]


def fresh_learners(setups: List[PeerSetup]) -> List[LearnerFactory]:
    """Factories of fresh learners, one per setup, to run where the backend puts each peer."""
    return [functools.partial(build_learner, setup) for setup in setups]


def assemble(cfg: RunConfig, setups: List[PeerSetup], factories: List[LearnerFactory]) -> TrainableAgent:
    """The peer group on its backend (where the factories run), or the teacher-student pair
    when the config names a teacher."""
    if not cfg.teacher.path:
        backend = make_backend(cfg.backend, factories, [setup.spec.name for setup in setups], cfg.ray_address)
        return PeerGroup(
            backend,
            [setup.spec for setup in setups],
            [setup.distill for setup in setups],
            cfg.seed,
            cfg.turn_steps,
            share=cfg.share,
            guide=cfg.guide,
        )
    student = factories[0]()
    teachers: List[Learner] = []
    demonstrations = None
    try:
        teachers = load_teachers(cfg, setups[0].distill)
        for teacher in teachers:
            _checked_teacher(setups[0], teacher, cfg.teacher.mode)
        recorded = dataset_id(cfg.teacher.path)
        if recorded is not None:
            steps = cfg.teacher.dataset_steps or student.spec.budget
            space = student.env
            demonstrations = load_demonstrations(
                recorded, space.observation_space, space.action_space, steps, exact=bool(cfg.teacher.dataset_steps)
            )
    except BaseException:
        for learner in [student, *teachers]:
            learner.close()
        raise
    return TeacherStudent(teachers, student, cfg.teacher, seed=cfg.seed, demonstrations=demonstrations)


def _checked_teacher(student: PeerSetup, teacher: Learner, mode: str) -> Learner:
    """What a mixed peer group refuses, a student and teacher must also satisfy; their discounts
    must agree only where their values are compared (mode ``gated``)."""
    teacher_setup = PeerSetup(teacher.spec, {"gamma": teacher.gamma}, student.distill)
    try:
        check_group([student, teacher_setup], compares_values=mode == "gated")
    except UserError as exc:
        raise UserError(f"teacher and student: {exc}") from None  # the caller closes them
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


@dataclass(frozen=True)
class SavedLearner:
    """A factory of the learner saved in a checkpoint ``folder`` (``load_learner``). Where the
    learner is built on another machine (a Ray node), ``carried`` takes the folder's files
    along, and the learner is loaded from a scratch copy of them there."""

    setup: PeerSetup
    folder: Path
    iterations: int
    files: Optional[FileTree] = None

    def carried(self) -> "SavedLearner":
        return replace(self, files=FileTree.read(self.folder))

    def __call__(self) -> Learner:
        if self.files is None:
            return load_learner(self.setup, self.folder, self.iterations)
        with tempfile.TemporaryDirectory(prefix="dpd-checkpoint-") as scratch:
            copy = Path(scratch) / self.folder.name
            if self.files.files:  # none: the peer had no checkpoint yet
                self.files.write(copy)
            try:
                return load_learner(self.setup, copy, self.iterations)
            except UserError as exc:  # name the checkpoint the user knows
                raise UserError(str(exc).replace(str(copy), str(self.folder))) from None
