"""What every distillation method receives and returns, and the registry of methods by name.

A method is one function ``run(ctx) -> Distilled``, readable top to bottom: build the student and
any helpers, define one minibatch step from the registered losses, train, return what is deployed.
"""

from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import torch
from torch import nn

from dpd.kd.data import Dataset
from dpd.kd.fidelity import Predictor, accuracy, fidelity
from dpd.kd.models import MLP, EpochHook, ModelOutput, Schedule, StepFn, log_probs_of, one_hot, seeded_mlp, train_loop
from dpd.kd.options import KDOptions
from dpd.kd.teachers import Teacher
from dpd.kd.tensorboard import ScalarLog
from dpd.registry import Registry


@dataclass
class Distilled:
    """A method's result: the student, what is deployed (the student alone, or student plus
    retrieval), and method-specific numbers worth reporting (e.g. the cost of retrieval)."""

    student: MLP
    predict: Predictor
    extras: Dict[str, float] = field(default_factory=dict)

    @classmethod
    def alone(cls, student: MLP) -> "Distilled":
        return cls(student, lambda x: log_probs_of(student, x))


@dataclass
class DistillContext:
    """The data, the frozen teacher and the settings one distillation run shares."""

    data: Dataset
    teacher: Teacher
    student_hidden: Tuple[int, ...]
    schedule: Schedule
    seed: int
    options: KDOptions = KDOptions()
    log: ScalarLog = field(default_factory=ScalarLog)

    @cached_property
    def teacher_train(self) -> ModelOutput:
        """The teacher on the whole training set, computed once: its outputs are fixed targets."""
        return self.teacher(self.data.x_train)

    @property
    def x(self) -> torch.Tensor:
        return self.data.x_train

    @property
    def y(self) -> torch.Tensor:
        return self.data.y_train

    @cached_property
    def labels_one_hot(self) -> torch.Tensor:
        return one_hot(self.y, self.data.n_classes)

    def new_student(self) -> MLP:
        return seeded_mlp(self.data.n_features, self.student_hidden, self.data.n_classes, self.seed)

    def new_module(self, build: Callable[[], nn.Module], seed_offset: int) -> nn.Module:
        """A helper module (regressor, filter, gate) initialised from the run's seed."""
        with torch.random.fork_rng():
            torch.manual_seed(self.seed * 7919 + seed_offset)
            return build()

    def fit(
        self,
        phase: str,
        params: Iterable[nn.Parameter],
        step: StepFn,
        epochs: int,
        n_samples: int = 0,
        monitor: Optional[EpochHook] = None,
    ) -> None:
        """Train ``params`` with ``step`` for ``epochs``, logging ``kd/<phase>/*`` each epoch."""
        schedule = Schedule(epochs, self.schedule.batch_size, self.schedule.lr)
        train_loop(params, n_samples or len(self.y), schedule, self.seed, step, monitor or self.phase_log(phase))

    def fit_student(self, student: MLP, step: StepFn, extra: Iterable[nn.Parameter] = ()) -> None:
        """Train the student (and helpers trained with it) for the run's epochs, with fidelity curves."""
        self.fit("student", [*student.parameters(), *extra], step, self.schedule.epochs, monitor=self.monitor(student))

    def phase_log(self, phase: str) -> EpochHook:
        return self.log.epoch_hook(f"kd/{phase}")

    def monitor(self, student: MLP) -> EpochHook:
        """Each epoch: the student's losses (``kd/student/*``) and, when logging, its accuracy and
        fidelity to the teacher on train and test data (``fidelity/*``)."""
        losses = self.phase_log("student")
        epochs_seen = [0]

        def hook(epoch: int, values: Dict[str, float]) -> None:
            losses(epoch, values)
            step = epochs_seen[0]
            epochs_seen[0] += 1
            if not self.log.enabled:
                return
            teacher = lambda x: log_probs_of(self.teacher, x)  # noqa: E731
            for split, x, y in (("train", self.x, self.y), ("test", self.data.x_test, self.data.y_test)):
                student_log_probs = log_probs_of(student, x)
                match = fidelity(teacher(x), student_log_probs)
                self.log.scalars("fidelity", {f"{split}_agreement": match.agreement, f"{split}_kl": match.kl}, step)
                self.log.scalars("kd/student", {f"{split}_accuracy": accuracy(student_log_probs, y)}, step)

        return hook


MethodFn = Callable[[DistillContext], Distilled]


@dataclass(frozen=True)
class KDMethod:
    name: str
    summary: str
    run: MethodFn


METHODS: Registry[KDMethod] = Registry("kd method")


def kd_method(name: str, summary: str) -> Callable[[MethodFn], MethodFn]:
    """Decorator: make ``run`` available as ``dpd kd --method name``."""

    def decorator(run: MethodFn) -> MethodFn:
        METHODS.add(name, KDMethod(name, summary, run))
        return run

    return decorator


def get_method(name: str) -> KDMethod:
    return METHODS.get_or_refuse(name)


def method_names() -> List[str]:
    """In registration order: the order ``dpd kd --list`` and the KD table show them."""
    return list(METHODS)
