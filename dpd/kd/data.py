"""Classification data for supervised distillation: bundled scikit-learn sets, a synthetic task, or a
user's ``.npz``; validated, split and standardised.

Nothing here downloads: ``digits``, ``wine`` and ``breast_cancer`` ship inside scikit-learn, and
``synthetic`` is generated. The train/test split depends on ``split_seed`` only, not on the
training seed, so runs with different seeds share one test set and a saved teacher can be reused
with the data it was trained on (``fingerprint`` identifies that data).
"""

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

import numpy as np
import torch

from dpd.errors import UserError, unknown_choice
from dpd.kd.options import BUNDLED, DATASETS, DIFFICULTIES, SyntheticSpec


@dataclass(frozen=True)
class Dataset:
    """A standardised train/test split with labels 0..n_classes-1 (float32 / int64 tensors)."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int
    fingerprint: str  # identifies the training data, for reloading a saved teacher
    noise_features: int = 0  # the last columns are label-independent noise (nuisance experiments)

    @property
    def n_features(self) -> int:
        return self.x_train.shape[1]

    def describe(self) -> str:
        return (
            f"{self.name} ({len(self.y_train)} train / {len(self.y_test)} test, {self.n_features} features, "
            f"{self.n_classes} classes)"
        )


class Standardizer:
    """Zero mean, unit variance per feature, fitted on training data only (constant features stay 0)."""

    def __init__(self, x_train: np.ndarray) -> None:
        self.mean = x_train.mean(axis=0)
        std = x_train.std(axis=0)
        self.std = np.where(std > 0, std, 1.0)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.std).astype(np.float32)


def load_dataset(
    name: str,
    data_path: Optional[str] = None,
    synthetic: SyntheticSpec = SyntheticSpec(),  # noqa: B008  (frozen dataclass)
    split_seed: int = 0,
    test_fraction: float = 0.25,
    noise_features: int = 0,
) -> Dataset:
    """The dataset ``name`` (or the ``.npz`` at ``data_path``), validated and standardised, with
    ``noise_features`` Gaussian columns appended that carry nothing about the label."""
    if not 0 < test_fraction < 1:
        raise UserError(f"--test-fraction must be in (0, 1), got {test_fraction}")
    if noise_features < 0:
        raise UserError(f"--noise-features must be >= 0, got {noise_features}")
    if data_path is not None:
        arrays = _read_npz(Path(data_path))
        label = Path(data_path).name
    elif name in BUNDLED or name == "synthetic":
        x_all, y_all = _generate(name, synthetic, split_seed)
        arrays = {"X": x_all, "y": y_all}
        label = name if name in BUNDLED else f"synthetic-{synthetic.difficulty}"
    else:
        raise unknown_choice("dataset", name, DATASETS)
    x, y = _checked_pair(arrays, "X", "y")
    if "X_test" in arrays or "y_test" in arrays:
        x_test, y_test = _checked_pair(arrays, "X_test", "y_test")
        if x_test.shape[1] != x.shape[1]:
            raise UserError(f"X_test has {x_test.shape[1]} features, X has {x.shape[1]}")
    else:
        x, x_test, y, y_test = stratified_split(x, y, test_fraction, split_seed)
    if noise_features:
        noise = np.random.default_rng(split_seed).standard_normal((len(x) + len(x_test), noise_features))
        x, x_test = np.hstack([x, noise[: len(x)]]), np.hstack([x_test, noise[len(x) :]])
        label += f"+{noise_features}noise"
    return _standardised(label, x, y, x_test, y_test, noise_features)


def _generate(name: str, synthetic: SyntheticSpec, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    from sklearn import datasets

    if name == "synthetic":
        synthetic.validate()
        separation, label_noise = DIFFICULTIES[synthetic.difficulty]
        informative = max(2, synthetic.features // 2)
        return datasets.make_classification(
            n_samples=synthetic.samples,
            n_features=synthetic.features,
            n_informative=informative,
            n_redundant=min(synthetic.features - informative, informative // 2),
            n_classes=synthetic.classes,
            n_clusters_per_class=2,
            class_sep=separation,
            flip_y=label_noise,
            random_state=seed,
        )
    loaders: Dict[str, Callable[..., Tuple[np.ndarray, np.ndarray]]] = {
        "digits": datasets.load_digits,
        "wine": datasets.load_wine,
        "breast_cancer": datasets.load_breast_cancer,
    }
    return loaders[name](return_X_y=True)


def _read_npz(path: Path) -> Dict[str, np.ndarray]:
    if not path.is_file():
        raise UserError(f"data file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {path} as a .npz archive of arrays: {exc}") from None


def _checked_pair(arrays: Dict[str, np.ndarray], x_key: str, y_key: str) -> Tuple[np.ndarray, np.ndarray]:
    """Features and labels that a classifier can learn from, or one line saying what is wrong."""
    missing = [key for key in (x_key, y_key) if key not in arrays]
    if missing:
        raise UserError(f"data is missing array(s) {', '.join(missing)} (found: {', '.join(sorted(arrays)) or 'none'})")
    x, y = arrays[x_key], arrays[y_key]
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise UserError(f"{x_key} must be a non-empty 2-D array (samples x features), got shape {x.shape}")
    if y.ndim != 1:
        raise UserError(f"{y_key} must be a 1-D array of labels, got shape {y.shape}")
    if len(x) != len(y):
        raise UserError(f"{x_key} has {len(x)} rows but {y_key} has {len(y)} labels")
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise UserError(f"{x_key} must be real numbers, got dtype {x.dtype}")
    if not np.all(np.isfinite(x)):
        raise UserError(f"{x_key} contains NaN or infinite values ({int((~np.isfinite(x)).sum())} entries)")
    if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
        raise UserError(f"{y_key} contains NaN or infinite labels")
    return x.astype(np.float64), y


def stratified_split(x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int) -> Tuple[np.ndarray, ...]:
    """``(x_train, x_test, y_train, y_test)``, stratified by label where the classes allow it."""
    from sklearn.model_selection import train_test_split

    _, counts = np.unique(y, return_counts=True)
    if len(counts) < 2:
        raise UserError(f"y has a single class ({y[0]!r}); distillation needs at least two")
    # Stratify where every class can appear on both sides, so that small classes stay in the test set.
    stratify = y if counts.min() >= 2 else None
    try:
        return tuple(train_test_split(x, y, test_size=test_fraction, random_state=seed, stratify=stratify))
    except ValueError as exc:
        raise UserError(f"cannot split {len(y)} samples with --test-fraction {test_fraction}: {exc}") from None


def _standardised(
    name: str, x: np.ndarray, y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, noise_features: int
) -> Dataset:
    classes = np.unique(y)
    if len(classes) < 2:
        raise UserError(f"the training labels have a single class ({classes[0]!r}); distillation needs at least two")
    unseen = np.setdiff1d(np.unique(y_test), classes)
    if len(unseen):
        raise UserError(f"y_test has label(s) absent from y: {', '.join(map(repr, unseen[:5].tolist()))}")
    scale = Standardizer(x)
    x_train, x_eval = scale(x), scale(x_test)
    y_train, y_eval = np.searchsorted(classes, y), np.searchsorted(classes, y_test)
    digest = hashlib.sha256(x_train.tobytes() + y_train.astype(np.int64).tobytes()).hexdigest()[:16]
    return Dataset(
        name=name,
        x_train=torch.from_numpy(x_train),
        y_train=torch.from_numpy(y_train.astype(np.int64)),
        x_test=torch.from_numpy(x_eval),
        y_test=torch.from_numpy(y_eval.astype(np.int64)),
        n_classes=len(classes),
        fingerprint=digest,
        noise_features=noise_features,
    )
