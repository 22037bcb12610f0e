"""The settings of a ``dpd kd`` run, importable without torch so that building the command line
stays fast: datasets, method names, method options, and the run's whole configuration."""

from dataclasses import dataclass, fields
from typing import Any, Callable, Dict, Optional, Tuple

from dpd.config.schema import setting
from dpd.errors import UserError, unknown_choice

# The registry in dpd.kd.methods holds the implementations; tests pin that the two lists agree.
METHOD_NAMES = ("ce", "hinton", "fitnet", "rid", "rkd", "reaugkd", "disk", "cooperative")

BUNDLED = ("digits", "wine", "breast_cancer")
DATASETS = (*BUNDLED, "synthetic")
# Difficulty of the synthetic task: class separation and label noise of make_classification.
DIFFICULTIES: Dict[str, Tuple[float, float]] = {"easy": (2.0, 0.0), "medium": (1.0, 0.02), "hard": (0.6, 0.05)}


@dataclass(frozen=True)
class SyntheticSpec:
    """``make_classification`` options exposed as flags: size and difficulty."""

    samples: int = 2000
    features: int = 20
    classes: int = 4
    difficulty: str = "medium"

    def validate(self) -> None:
        if self.difficulty not in DIFFICULTIES:
            raise unknown_choice("difficulty", self.difficulty, DIFFICULTIES)
        if self.classes < 2:
            raise UserError(f"--classes must be at least 2, got {self.classes}")
        if self.features < 2:
            raise UserError(f"--features must be at least 2, got {self.features}")
        if self.samples < 10 * self.classes:
            raise UserError(f"--samples must be at least 10 per class ({10 * self.classes}), got {self.samples}")


def parse_hidden(text: str, flag: str) -> Tuple[int, ...]:
    """``"256,256"`` -> (256, 256): hidden layer widths, at least one layer."""
    try:
        widths = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise UserError(f"{flag} takes comma-separated layer widths such as 256,256; got {text!r}") from None
    if not widths or any(width <= 0 for width in widths):
        raise UserError(f"{flag} needs at least one positive layer width; got {text!r}")
    return widths


def parse_architectures(text: str) -> Tuple[Tuple[int, ...], ...]:
    """``"64;32,32"`` -> ((64,), (32, 32)): one architecture per peer, separated by semicolons."""
    return tuple(parse_hidden(part, "--coop-peers") for part in text.split(";"))


@dataclass(frozen=True)
class Schedule:
    """How long and how fast one training phase runs."""

    epochs: int
    batch_size: int = 64
    lr: float = 1e-3


# The allowed range of each numeric method option, as named in its error message.
RANGES: Dict[str, Callable[[float], bool]] = {
    "in [0, 1]": lambda v: 0 <= v <= 1,
    "in (0, 1]": lambda v: 0 < v <= 1,
    "in (0, 1)": lambda v: 0 < v < 1,
    "positive": lambda v: v > 0,
    ">= 0": lambda v: v >= 0,
}


def _option(default: Any, help: str, allowed: Optional[str] = None, parse: Optional[Callable[[str], Any]] = None) -> Any:
    """A method option, declared as every config key is (``dpd.config.setting``); the command
    line makes a flag of it (``--name-with-dashes``)."""
    return setting(default, help, allowed=allowed, parse=parse)


@dataclass(frozen=True)
class KDOptions:
    """Every method's hyperparameters, with the defaults the benchmark uses."""

    alpha: float = _option(0.5, "weight of the label CE in Hinton-style losses (hinton, reaugkd, disk)", "in [0, 1]")
    temperature: float = _option(4.0, "softening temperature tau of the KL term (hinton, reaugkd, disk)", "positive")
    hint_weight: float = _option(1.0, "fitnet: weight of the hint MSE beside the label CE", ">= 0")
    hint_layer: int = _option(-1, "fitnet: teacher hidden layer that gives the hint (Python index; -1 the last)")
    rkd_distance: float = _option(1.0, "rkd: weight of the distance-wise loss", ">= 0")
    rkd_angle: float = _option(2.0, "rkd: weight of the angle-wise loss", ">= 0")
    reaugkd_k: int = _option(5, "reaugkd: neighbours retrieved at inference", "positive")
    reaugkd_mix: float = _option(0.3, "reaugkd: weight of the retrieved soft labels in the prediction", "in [0, 1]")
    reaugkd_weight: float = _option(1.0, "reaugkd: weight of the relational alignment loss", ">= 0")
    reaugkd_temperature: float = _option(
        0.1, "reaugkd: temperature of cosine similarities (loss, projection, retrieval)", "positive"
    )
    projection_epochs: int = _option(20, "reaugkd: epochs of the supervised-contrastive projection", ">= 0")
    disk_budget: float = _option(0.1, "disk: largest mean gate (share of censoring) allowed", "in [0, 1]")
    disk_top_k: int = _option(2, "disk: teacher classes the scaffold puts mass on, with the true class", "positive")
    disk_dual_lr: float = _option(0.5, "disk: step of the Lagrange multiplier's dual ascent", ">= 0")
    rid_weight: float = _option(1.0, "rid: weight of the filtered-feature MSE", ">= 0")
    rid_filter_dim: int = _option(16, "rid: output width of each filter", "positive")
    filter_epochs: int = _option(20, "rid: epochs of training the filters on the frozen teacher", ">= 0")
    coop_peers: Tuple[Tuple[int, ...], ...] = _option(
        ((64,),), "cooperative: extra peer architectures, e.g. 64;32,32", parse=parse_architectures
    )
    coop_rounds: int = _option(3, "cooperative: rounds of train / find weak classes / exchange", "positive")
    coop_feature_fraction: float = _option(1.0, "cooperative: share of the features each extra peer sees", "in (0, 1]")
    coop_virtual: int = _option(32, "cooperative: virtual instances per weak class and round", "positive")
    coop_margin: float = _option(0.05, "cooperative: recall lead a peer needs to teach a class", ">= 0")
    coop_val_fraction: float = _option(0.2, "cooperative: share of the training data held out to find strengths", "in (0, 1)")

    def validate(self, teacher_layers: int) -> None:
        """Every bad value as one line, before anything trains or is written."""
        for option in fields(self):
            allowed, value = option.metadata["allowed"], getattr(self, option.name)
            if allowed and not RANGES[allowed](value):
                raise UserError(f"--{option.name.replace('_', '-')} must be {allowed}, got {value}")
        if not -teacher_layers <= self.hint_layer < teacher_layers:
            raise UserError(
                f"--hint-layer {self.hint_layer} is out of range for a teacher with {teacher_layers} hidden layers"
            )


@dataclass(frozen=True)
class KDConfig:
    """Everything one run needs; the command line fills it from flags."""

    method: str
    dataset: str = "digits"
    data_path: Optional[str] = None
    synthetic: SyntheticSpec = SyntheticSpec()
    split_seed: int = 0
    test_fraction: float = 0.25
    noise_features: int = 0
    teacher_net: Tuple[int, ...] = (256, 256)
    student_net: Tuple[int, ...] = (16,)
    teacher_ensemble: int = 1
    self_distill: bool = False
    teacher_path: Optional[str] = None
    teacher_epochs: Optional[int] = None  # None: the same as epochs
    nuisance_dim: int = 0
    nuisance_scale: float = 3.0
    epochs: int = 50
    batch_size: int = 64
    lr: float = 1e-3
    seed: int = 0
    options: KDOptions = KDOptions()
    run_dir: Optional[str] = None

    @property
    def teacher_kind(self) -> str:
        return "self" if self.self_distill else "ensemble" if self.teacher_ensemble > 1 else "single"

    @property
    def teacher_hidden(self) -> Tuple[int, ...]:
        return self.student_net if self.self_distill else self.teacher_net

    def schedule(self, epochs: Optional[int] = None) -> Schedule:
        return Schedule(self.epochs if epochs is None else epochs, self.batch_size, self.lr)

    def validate(self) -> None:
        if self.method not in METHOD_NAMES:
            raise unknown_choice("kd method", self.method, METHOD_NAMES)
        for flag, value in (
            ("--epochs", self.epochs),
            ("--batch-size", self.batch_size),
            ("--teacher-ensemble", self.teacher_ensemble),
        ):
            if value < 1:
                raise UserError(f"{flag} must be at least 1, got {value}")
        if self.teacher_epochs is not None and self.teacher_epochs < 1:
            raise UserError(f"--teacher-epochs must be at least 1, got {self.teacher_epochs}")
        if not 0 < self.lr < float("inf"):  # NaN fails too
            raise UserError(f"--lr must be a positive number, got {self.lr}")
        if not (self.nuisance_dim >= 0 and 0 <= self.nuisance_scale < float("inf")):
            raise UserError("--nuisance-dim and --nuisance-scale must be >= 0")
        if self.self_distill and self.teacher_ensemble > 1:
            raise UserError(
                "--self-distill and --teacher-ensemble exclude each other; an ensemble of the student's architecture "
                "is --teacher-net equal to --student-net"
            )
