"""Datasets for supervised KD: bundled, synthetic, user .npz, and one clear error for bad data."""

import numpy as np
import pytest
import torch

from dpd.errors import UserError
from dpd.kd.data import load_dataset
from dpd.kd.options import SyntheticSpec
from tests.conftest import kd


def write_npz(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


def separable(n=60, features=3, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = rng.normal(size=(n, features)) + 3.0 * y[:, None]
    return x, y


@pytest.mark.parametrize(
    "name, n_classes, n_features, size", [("digits", 10, 64, 1797), ("wine", 3, 13, 178), ("breast_cancer", 2, 30, 569)]
)
def test_bundled_datasets_load_split_and_standardise(name, n_classes, n_features, size):
    data = load_dataset(name)
    assert (data.n_classes, data.n_features) == (n_classes, n_features)
    assert len(data.y_train) + len(data.y_test) == size
    assert len(data.y_test) == pytest.approx(0.25 * size, abs=1)
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    assert data.x_train.mean(dim=0).abs().max() < 1e-4  # standardised on the training data
    assert set(data.y_test.tolist()) == set(range(n_classes))  # stratified: every class is tested


def test_split_depends_on_split_seed_only_and_the_fingerprint_tells():
    same = load_dataset("wine", split_seed=3)
    assert load_dataset("wine", split_seed=3).fingerprint == same.fingerprint
    other = load_dataset("wine", split_seed=4)
    assert other.fingerprint != same.fingerprint and not torch.equal(other.y_test, same.y_test)


def test_synthetic_size_and_difficulty():
    spec = SyntheticSpec(samples=200, features=6, classes=3, difficulty="hard")
    data = load_dataset("synthetic", synthetic=spec, test_fraction=0.5)
    assert (len(data.y_train), len(data.y_test), data.n_features, data.n_classes) == (100, 100, 6, 3)
    assert data.name == "synthetic-hard"
    with pytest.raises(UserError, match="unknown difficulty 'brutal'; valid choices: easy, hard, medium"):
        load_dataset("synthetic", synthetic=SyntheticSpec(difficulty="brutal"))
    with pytest.raises(UserError, match="--classes must be at least 2"):
        load_dataset("synthetic", synthetic=SyntheticSpec(classes=1))


def test_noise_features_are_appended():
    data = load_dataset("wine", noise_features=5)
    assert data.n_features == 13 + 5 and data.noise_features == 5
    assert data.fingerprint != load_dataset("wine").fingerprint


def test_unknown_dataset_names_the_choices():
    with pytest.raises(UserError, match="unknown dataset 'mnist'; valid choices: breast_cancer, digits, synthetic, wine"):
        load_dataset("mnist")


def test_user_npz_with_and_without_a_test_set(tmp_path):
    x, y = separable()
    split = load_dataset("digits", write_npz(tmp_path / "a.npz", X=x, y=y), test_fraction=0.5)
    assert (len(split.y_train), len(split.y_test), split.n_features) == (30, 30, 3)
    x_test, y_test = separable(n=10, seed=1)
    given = load_dataset(
        "digits",
        write_npz(
            tmp_path / "b.npz",
            X=x,
            y=np.where(y == 1, "cat", "dog"),
            X_test=x_test,
            y_test=np.where(y_test == 1, "cat", "dog"),
        ),
    )
    assert (len(given.y_train), len(given.y_test), given.n_classes) == (60, 10, 2)  # string labels become 0..C-1
    assert given.name == "b.npz"


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"X": np.zeros((4, 2))}, "missing array\\(s\\) y"),
        ({"X": np.zeros((4, 2)), "y": np.array([0, 1, 0])}, "X has 4 rows but y has 3 labels"),
        ({"X": np.array([[0.0, np.nan], [1.0, 1.0], [2.0, 0.0], [3.0, 1.0]]), "y": np.array([0, 1, 0, 1])}, "X contains NaN"),
        ({"X": np.ones((6, 2)), "y": np.zeros(6)}, "single class"),
        ({"X": np.ones(6), "y": np.arange(6) % 2}, "X must be a non-empty 2-D array"),
        ({"X": np.ones((6, 2)), "y": np.arange(6) % 2, "X_test": np.ones((2, 2))}, "missing array\\(s\\) y_test"),
        (
            {"X": np.ones((6, 2)), "y": np.arange(6) % 2, "X_test": np.ones((2, 3)), "y_test": np.array([0, 1])},
            "X_test has 3 features, X has 2",
        ),
        (
            {"X": np.ones((6, 2)), "y": np.arange(6) % 2, "X_test": np.ones((2, 2)), "y_test": np.array([0, 7])},
            "y_test has label\\(s\\) absent from y: 7",
        ),
    ],
)
def test_bad_user_data_is_one_clear_error(tmp_path, arrays, message):
    with pytest.raises(UserError, match=message):
        load_dataset("digits", write_npz(tmp_path / "bad.npz", **arrays))


def test_unreadable_data_files(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_dataset("digits", str(tmp_path / "missing.npz"))
    garbage = tmp_path / "garbage.npz"
    garbage.write_text("not an archive")
    with pytest.raises(UserError, match="cannot read .* as a .npz archive"):
        load_dataset("digits", str(garbage))


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--method", "distill_harder"], "unknown kd method 'distill_harder'; valid choices: .*cooperative.*reaugkd"),
        (["--method", "ce", "--dataset", "mnist"], "unknown dataset 'mnist'"),
        (["--method", "ce", "--data", "nowhere.npz"], "data file nowhere.npz does not exist"),
        (["--method", "ce", "--dataset", "wine", "--data", "x.npz"], "give --dataset or --data, not both"),
        (["--method", "ce", "--samples", "100"], "--samples applies to --dataset synthetic only"),
        (["--method", "ce", "--student-net", "16,x"], "--student-net takes comma-separated layer widths"),
        (
            ["--method", "ce", "--teacher", "t.pt", "--teacher-net", "64"],
            "--teacher loads a trained teacher; drop --teacher-net",
        ),
        (["--method", "ce", "--teacher", "missing.pt"], "teacher file missing.pt does not exist"),
        (["--method", "ce", "--self-distill", "--teacher-ensemble", "3"], "exclude each other"),
        (["--method", "hinton", "--alpha", "1.5"], "--alpha must be in \\[0, 1\\]"),
        (["--method", "fitnet", "--hint-layer", "5"], "--hint-layer 5 is out of range"),
        (["--method", "ce", "--epochs", "0"], "--epochs must be at least 1"),
        (["--method", "ce", "--epochs", "ten"], "invalid int value"),
    ],
)
def test_bad_command_lines_fail_before_writing_anything(tmp_path, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    run_dir = tmp_path / "run"
    with pytest.raises(UserError, match=message):
        kd([*argv, "--run-dir", str(run_dir)])
    assert not run_dir.exists()


def test_a_non_empty_run_dir_is_refused_and_left_alone(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="exists and is not empty"):
        kd(["--method", "ce", "--dataset", "wine", "--run-dir", str(run_dir)])
    assert [path.name for path in run_dir.iterdir()] == ["keep.txt"]
