"""One ``dpd kd`` run: validate everything, then train or load the teacher, distill, measure, and
write the run directory.

Layout::

    RUN_DIR/config.json     the resolved settings
    RUN_DIR/teacher.pt      the teacher (``--teacher RUN_DIR/teacher.pt`` reuses it)
    RUN_DIR/student.pt      the student's weights and widths
    RUN_DIR/results.json    accuracy, fidelity and method-specific numbers
    RUN_DIR/tb/             TensorBoard: kd/* and fidelity/*

Every check that can fail on user input runs before the run directory is created, so a
``UserError`` leaves nothing behind.
"""

import json
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from dpd.errors import UserError
from dpd.kd.data import Dataset, load_dataset
from dpd.kd.fidelity import FidelityReport, measure
from dpd.kd.methods import DistillContext, Distilled, get_method
from dpd.kd.models import log_probs_of, save_atomically
from dpd.kd.options import KDConfig, KDOptions, Schedule
from dpd.kd.teachers import NuisanceTeacher, Teacher, load_teacher, save_teacher, train_teacher
from dpd.kd.tensorboard import ScalarLog
from dpd.rundir import atomic_write_text, make_directory


@dataclass(frozen=True)
class KDReport:
    """What a run prints and writes to results.json."""

    method: str
    dataset: str
    teacher: str
    student: str
    epochs: int
    seed: int
    fidelity: FidelityReport
    extras: Dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def distill_and_measure(
    data: Dataset,
    teacher: Teacher,
    method: str,
    student_hidden: Tuple[int, ...],
    schedule: Schedule,
    seed: int,
    options: KDOptions = KDOptions(),
    log: Optional[ScalarLog] = None,
) -> Tuple[KDReport, Distilled]:
    """Distill ``teacher`` into a fresh student with ``method`` and measure accuracy and fidelity.
    The benchmark calls this directly with a teacher it trained once for all methods."""
    start = time.perf_counter()
    ctx = DistillContext(data, teacher, tuple(student_hidden), schedule, seed, options, log or ScalarLog())
    result = get_method(method).run(ctx)
    report = measure(lambda x: log_probs_of(teacher, x), result.predict, data)
    summary = KDReport(
        method=method,
        dataset=data.describe(),
        teacher=teacher.describe(),
        student=",".join(map(str, student_hidden)),
        epochs=schedule.epochs,
        seed=seed,
        fidelity=report,
        extras=result.extras,
        seconds=time.perf_counter() - start,
    )
    return summary, result


def default_run_dir(config: KDConfig) -> Path:
    dataset = Path(config.data_path).stem if config.data_path else config.dataset
    return Path(f"runs/kd_{dataset}_{config.method}_seed{config.seed}_{time.strftime('%Y%m%d-%H%M%S')}")


def run_kd(config: KDConfig) -> Tuple[KDReport, Path]:
    """Validate, then train (or load) the teacher, distill, measure and write the run dir."""
    config.validate()
    run_dir = Path(config.run_dir) if config.run_dir else default_run_dir(config)
    if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
        raise UserError(f"run dir {run_dir} exists and is not empty; choose another --run-dir")
    data = load_dataset(
        config.dataset, config.data_path, config.synthetic, config.split_seed, config.test_fraction, config.noise_features
    )
    loaded = load_teacher(Path(config.teacher_path), data) if config.teacher_path else None
    config.options.validate(len(loaded.hidden if loaded else config.teacher_hidden))

    made = make_directory(run_dir, "run dir")  # under a file, read-only: a user error, nothing written
    try:
        atomic_write_text(run_dir / "config.json", json.dumps(asdict(replace(config, run_dir=str(run_dir))), indent=2))
    except OSError as exc:
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)
        raise UserError(f"cannot write run dir {run_dir}: {exc}") from None
    log = ScalarLog(run_dir / "tb")
    try:
        teacher = loaded or _train_teacher(config, data, log)
        save_teacher(teacher, run_dir / "teacher.pt", data)
        if config.nuisance_dim:
            teacher = NuisanceTeacher(teacher, data, config.nuisance_dim, config.nuisance_scale, config.seed)
        report, result = distill_and_measure(
            data, teacher, config.method, config.student_net, config.schedule(), config.seed, config.options, log
        )
    finally:
        log.close()
    save_atomically(
        {
            "hidden": list(config.student_net),
            "n_classes": data.n_classes,
            "in_dim": data.n_features,
            "state": result.student.state_dict(),
        },
        run_dir / "student.pt",
    )
    atomic_write_text(run_dir / "results.json", json.dumps(report.to_dict(), indent=2))
    return report, run_dir


def _train_teacher(config: KDConfig, data: Dataset, log: ScalarLog) -> Teacher:
    members = config.teacher_ensemble
    hooks = [log.epoch_hook("kd/teacher" if members == 1 else f"kd/teacher{k}") for k in range(members)]
    return train_teacher(
        data, config.teacher_hidden, config.teacher_kind, members, config.schedule(config.teacher_epochs), config.seed, hooks
    )
