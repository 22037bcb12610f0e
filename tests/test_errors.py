"""Bad input ends in one clear line, exit code 2, and nothing written."""

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


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--env", "NoSuchEnv-v9"], "unknown env id 'NoSuchEnv-v9'; valid choices: Ant-v5"),
        (["--algo", "dqn"], "unknown algorithm 'dqn'; valid choices: a2c, ddpg, ppo, sac, td3"),
        (["--set", "distill.loss=huber"], "unknown policy loss 'huber'; valid choices: kl, kl_reverse, mse, nll"),
        (["--set", "distill.weighting=sigmoid"], "unknown weighting"),
        (["--set", "distill.gate=eval"], "unknown distillation gate 'eval'; valid choices: none, return"),
        (["--set", "distill.gate_episodes=0"], "distill.gate_episodes must be positive"),
        (["--total-steps", "0"], "total_steps must be positive"),
        (["--total-steps", "-5"], "total_steps must be positive"),
        (["--peers", "0"], "peers must be positive"),
        (["--set", "distill.every=0"], "distill.every must be positive"),
        (["--set", "distill.start=-1"], "distill.start must not be negative"),
        (["--set", "nonsense.key=1"], "unknown config key 'nonsense'"),
        (["--set", "algo_kwargs.n_stepz=64"], "unknown ppo hyperparameter"),
        (["--set", "algo_kwargs.batch_size=zero"], "cannot build a ppo learner"),
        (["--set", "distill.alpha"], "--set expects key=value"),
        (["--total-steps", "many"], "invalid int value"),
        (["--algo", "ppo,dqn"], "unknown algorithm 'dqn'"),
        (["--algo", "td3", "--set", "distill.loss=nll"], "needs a stochastic policy but peer0 (td3) is deterministic"),
        (["--algo", "ppo,sac", "--set", "distill.loss=kl"], "peers mix gaussian, squashed_gaussian; use mse or nll"),
        (["--algo", "ppo,sac", "--set", "peer_configs=[{}, {algo_kwargs: {gamma: 0.9}}]"], "peers must share one discount"),
        (["--set", "peer_configs=[{algo: ppo, lr: 1}]"], "unknown key in peer_configs[0] 'lr'"),
        (["--set", "peer_configs=[{distill: {alhpa: 1}}]"], "unknown config key 'peer_configs[0].distill.alhpa'"),
        (["--set", "peer_configs=[{}, {}, {}]"], "peer_configs has 3 entries for 2 peers"),
        (["--set", "env_kwargs.gravity=3"], "rejected env_kwargs"),
        (["--algo", "sac", "--set", "algo_kwargs.n_epochs=3"], "unknown sac hyperparameter"),
        (["--set", "distill.temperature=2"], "distill.temperature applies to the kl and kl_reverse losses"),
        (["--set", "distill.loss=kl", "--set", "distill.temperature=0"], "distill.temperature must be positive"),
        (["--set", "distill.combine=mean"], "unknown combine rule 'mean'; valid choices: best, round_robin"),
        (["--set", "eval.episodes=0"], "eval.episodes must be positive, got 0"),
        (["--set", "turn_steps=-1"], "turn_steps must not be negative, got -1"),
        (["--set", "backend=cloud"], "unknown backend 'cloud'"),
    ],
)
def test_bad_train_input(tmp_path, capsys, extra, message):
    run_dir = tmp_path / "run"
    err = expect_cli_error([*BASE, *extra, "--run-dir", str(run_dir)], capsys)
    assert message in err
    assert not run_dir.exists()


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
