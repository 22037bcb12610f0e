"""The ``dpd kd`` subcommand: supervised knowledge distillation with fidelity metrics.

``add_kd_parser(subparsers)`` adds it to the ``dpd`` command line; the handler prints teacher and
student test accuracy, and top-1 agreement and KL(teacher || student) on train and test data.
"""

import argparse
import dataclasses
import json
from typing import Any, List

from dpd.errors import UserError
from dpd.kd.options import DATASETS, DIFFICULTIES, METHOD_NAMES, KDConfig, KDOptions, SyntheticSpec, parse_hidden

DEFAULT = KDConfig(method="ce")  # the one source of the flags' defaults
# Flags whose defaults are filled in by the handler, so that it can tell whether they were given.
TEACHER_FLAGS = ("teacher_net", "teacher_ensemble", "teacher_epochs")
SYNTHETIC_DEFAULTS = {name: getattr(DEFAULT.synthetic, name) for name in ("samples", "features", "classes", "difficulty")}


def add_kd_parser(subparsers: Any) -> None:
    """Add ``kd`` to the subparsers of the ``dpd`` command (whose parser class reports usage
    errors as ``UserError``)."""
    kd = subparsers.add_parser(
        "kd",
        help="supervised knowledge distillation: teacher -> student, with accuracy and fidelity",
        description="Train (or load) a teacher, distill it into a small student, and print accuracy and fidelity.",
    )
    kd.add_argument("--method", required=True, help=f"distillation method: {', '.join(METHOD_NAMES)}")

    data = kd.add_argument_group("data")
    data.add_argument("--dataset", help=f"bundled dataset: {', '.join(DATASETS)} (default {DEFAULT.dataset})")
    data.add_argument("--data", metavar="FILE.npz", help="your own data: arrays X, y and optionally X_test, y_test")
    data.add_argument("--samples", type=int, help=f"synthetic: number of samples (default {SYNTHETIC_DEFAULTS['samples']})")
    data.add_argument("--features", type=int, help=f"synthetic: number of features (default {SYNTHETIC_DEFAULTS['features']})")
    data.add_argument("--classes", type=int, help=f"synthetic: number of classes (default {SYNTHETIC_DEFAULTS['classes']})")
    data.add_argument(
        "--difficulty", help=f"synthetic: {', '.join(DIFFICULTIES)} (default {SYNTHETIC_DEFAULTS['difficulty']})"
    )
    data.add_argument(
        "--split-seed",
        type=int,
        default=DEFAULT.split_seed,
        help=f"seed of the train/test split, kept apart from --seed (default {DEFAULT.split_seed})",
    )
    data.add_argument(
        "--test-fraction",
        type=float,
        default=DEFAULT.test_fraction,
        help=f"share held out for testing when the data has no test set (default {DEFAULT.test_fraction})",
    )
    data.add_argument(
        "--noise-features",
        type=int,
        default=DEFAULT.noise_features,
        help="append N label-independent Gaussian columns (nuisance experiments)",
    )

    models = kd.add_argument_group("teacher and student")
    models.add_argument("--teacher-net", help=f"teacher hidden widths (default {_shown(DEFAULT.teacher_net)})")
    models.add_argument(
        "--student-net",
        default=_shown(DEFAULT.student_net),
        help=f"student hidden widths (default {_shown(DEFAULT.student_net)})",
    )
    models.add_argument(
        "--teacher-ensemble", type=int, metavar="K", help="teacher: an ensemble of K networks averaging their probabilities"
    )
    models.add_argument(
        "--self-distill", action="store_true", help="teacher: the student's own architecture (self-distillation)"
    )
    models.add_argument(
        "--teacher", metavar="PATH", help="load the teacher from RUN_DIR/teacher.pt of an earlier run on the same data"
    )
    models.add_argument("--teacher-epochs", type=int, help="epochs of teacher training (default: --epochs)")
    models.add_argument(
        "--nuisance-dim",
        type=int,
        default=DEFAULT.nuisance_dim,
        help="append N task-irrelevant units to every teacher hidden layer (RID's nuisance teacher)",
    )
    models.add_argument(
        "--nuisance-scale",
        type=float,
        default=DEFAULT.nuisance_scale,
        help=f"amplitude of the nuisance units, relative to the layer's RMS (default {DEFAULT.nuisance_scale})",
    )

    training = kd.add_argument_group("training")
    training.add_argument("--epochs", type=int, default=DEFAULT.epochs, help=f"student epochs (default {DEFAULT.epochs})")
    training.add_argument(
        "--batch-size", type=int, default=DEFAULT.batch_size, help=f"minibatch size (default {DEFAULT.batch_size})"
    )
    training.add_argument("--lr", type=float, default=DEFAULT.lr, help=f"Adam learning rate (default {DEFAULT.lr})")
    training.add_argument("--seed", type=int, default=DEFAULT.seed, help="seed of initialisations and data order")
    training.add_argument(
        "--run-dir",
        help="where teacher, student, results and TensorBoard events go (default runs/kd_<data>_<method>_seed<S>_<time>)",
    )
    training.add_argument("--json", action="store_true", help="print results.json instead of the table")

    options = kd.add_argument_group("method options")
    for option in dataclasses.fields(KDOptions):
        parse = option.metadata["parse"] or option.type
        options.add_argument(
            f"--{option.name.replace('_', '-')}",
            dest=f"option_{option.name}",
            type=parse,
            help=f"{option.metadata['doc']} (default {_shown(option.default)})",
        )
    kd.set_defaults(handler=cmd_kd)


def _shown(value: Any) -> str:
    """A default as it is typed on the command line: 256,256 for widths, 64;32,32 for peers."""
    if isinstance(value, tuple) and value and isinstance(value[0], tuple):
        return ";".join(map(_shown, value))
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return str(value)


def build_config(args: argparse.Namespace) -> KDConfig:
    """The run's settings from the flags; conflicting flags are user errors."""
    if args.data and args.dataset:
        raise UserError("give --dataset or --data, not both")
    dataset = args.dataset or DEFAULT.dataset
    given_synthetic = [name for name in SYNTHETIC_DEFAULTS if getattr(args, name) is not None]
    if given_synthetic and (dataset != "synthetic" or args.data):
        raise UserError(f"--{given_synthetic[0]} applies to --dataset synthetic only")
    given_teacher = [name for name in TEACHER_FLAGS if getattr(args, name) is not None] + (
        ["self_distill"] if args.self_distill else []
    )
    if args.teacher and given_teacher:
        raise UserError(f"--teacher loads a trained teacher; drop --{given_teacher[0].replace('_', '-')}")
    if args.self_distill and args.teacher_net is not None:
        raise UserError("--self-distill uses the student's architecture; drop --teacher-net")
    synthetic = SyntheticSpec(
        **{
            name: getattr(args, name) if getattr(args, name) is not None else default
            for name, default in SYNTHETIC_DEFAULTS.items()
        }
    )
    method_options = {field.name: getattr(args, f"option_{field.name}") for field in dataclasses.fields(KDOptions)}
    same_name = (
        "split_seed",
        "test_fraction",
        "noise_features",
        "self_distill",
        "teacher_epochs",
        "nuisance_dim",
        "nuisance_scale",
        "epochs",
        "batch_size",
        "lr",
        "seed",
        "run_dir",
    )
    return KDConfig(
        method=args.method,
        dataset=dataset,
        data_path=args.data,
        synthetic=synthetic,
        teacher_net=parse_hidden(args.teacher_net, "--teacher-net") if args.teacher_net else DEFAULT.teacher_net,
        student_net=parse_hidden(args.student_net, "--student-net"),
        teacher_ensemble=DEFAULT.teacher_ensemble if args.teacher_ensemble is None else args.teacher_ensemble,
        teacher_path=args.teacher,
        options=KDOptions(**{name: value for name, value in method_options.items() if value is not None}),
        **{name: getattr(args, name) for name in same_name},
    )


def cmd_kd(args: argparse.Namespace) -> int:
    import torch

    from dpd.kd.experiment import run_kd

    config = build_config(args)
    torch.set_num_threads(1)  # small MLPs are fastest on one thread
    report, run_dir = run_kd(config)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 0
    print("\n".join(format_report(report)))
    print(f"run dir: {run_dir} (reuse the teacher with --teacher {run_dir / 'teacher.pt'})")
    print(f"TensorBoard: tensorboard --logdir {run_dir / 'tb'}")
    return 0


def format_report(report: Any) -> List[str]:
    """The table: test accuracy of both models, agreement and KL(teacher || student) on train and test."""
    f = report.fidelity
    lines = [
        f"{report.method} on {report.dataset}; teacher {report.teacher}; student {report.student}; {report.epochs} "
        f"epochs; seed {report.seed}",
        "",
        f"{'model':<10}{'test acc':>10}{'agree train':>13}{'agree test':>12}{'KL train':>11}{'KL test':>10}",
        f"{'teacher':<10}{f.teacher_accuracy:>10.4f}{'-':>13}{'-':>12}{'-':>11}{'-':>10}",
        f"{'student':<10}{f.student_accuracy:>10.4f}{f.train.agreement:>13.4f}{f.test.agreement:>12.4f}{f.train.kl:>11.4f}{f.test.kl:>10.4f}",
        "",
        "agree: top-1 agreement with the teacher; KL: mean KL(teacher || student) of predictive distributions",
    ]
    lines += [f"{name}: {value:.4g}" for name, value in report.extras.items()]
    return lines
