"""Bad input about an existing run (a run dir that holds another run, a missing or corrupt
manifest or checkpoint) ends in one clear line, exit code 2, and nothing written. The table of
every other bad input is tests/test_bad_input.py's; the core's own checks, without the command
line, are tests/test_config.py's."""

import shutil

import pytest

from dpd.cli import main
from tests.conftest import TINY, expect_cli_error

BASE = ["train", "--env", TINY, "--no-progress", "--total-steps", "1024"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """One short finished run; tests that change it work on a copy."""
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    assert main([*BASE, "--run-dir", str(run_dir)]) == 0
    return run_dir


def copy_of(run_dir, tmp_path):
    return shutil.copytree(run_dir, tmp_path / "run")


def test_malformed_config_file(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("distill: {alpha: [\n")
    assert "not valid YAML" in expect_cli_error([*BASE, "--config", str(config), "--run-dir", str(tmp_path / "r")], capsys)
    assert "config file not found" in expect_cli_error([*BASE, "--config", str(tmp_path / "none.yaml")], capsys)


def test_run_dir_holding_another_run(finished_run, tmp_path, capsys):
    run_dir = copy_of(finished_run, tmp_path)
    manifest = (run_dir / "manifest.json").read_text()
    err = expect_cli_error([*BASE, "--seed", "7", "--run-dir", str(run_dir)], capsys)
    assert "already holds a run" in err and "--resume" in err
    assert (run_dir / "manifest.json").read_text() == manifest
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    assert "not empty" in expect_cli_error([*BASE, "--run-dir", str(tmp_path / "other")], capsys)


@pytest.mark.parametrize("command", [["train", "--resume"], ["eval"]])
def test_missing_manifest(tmp_path, capsys, command):
    assert "missing manifest.json" in expect_cli_error([*command, str(tmp_path / "nothing")], capsys)


def test_corrupt_manifest(finished_run, tmp_path, capsys):
    run_dir = copy_of(finished_run, tmp_path)
    (run_dir / "manifest.json").write_text("{not json")
    assert "corrupt" in expect_cli_error(["eval", str(run_dir)], capsys)


def test_corrupt_checkpoint(finished_run, tmp_path, capsys):
    run_dir = copy_of(finished_run, tmp_path)
    model = next((run_dir / "checkpoints").iterdir()) / "peer0" / "model.zip"
    model.write_bytes(b"not a zip")
    assert "missing or corrupt" in expect_cli_error(["eval", str(run_dir)], capsys)
    assert "missing or corrupt" in expect_cli_error(["train", "--resume", str(run_dir)], capsys)
    assert model.read_bytes() == b"not a zip"  # nothing was overwritten


def test_resume_refuses_other_flags(tmp_path, capsys):
    assert "drop --env" in expect_cli_error(["train", "--resume", str(tmp_path), "--env", TINY], capsys)


def test_eval_needs_positive_episodes(tmp_path, capsys):
    assert "--episodes must be positive" in expect_cli_error(["eval", str(tmp_path), "--episodes", "0"], capsys)


def test_unknown_command(capsys):
    assert "invalid choice" in expect_cli_error(["fly"], capsys)
