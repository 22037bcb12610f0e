"""End to end through the command line, on the tiny env."""

import contextlib
import dataclasses
import io
import json
import re
from pathlib import Path

import pytest
import stable_baselines3
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from dpd.agents.peer_group import PeerGroup
from dpd.agents.trainer import eval_postfix
from dpd.cli import main
from tests.conftest import TINY, beats_random, expect_cli_error, interrupt, read_manifest, resume, scalar_tags

FAST = [
    "--env",
    TINY,
    "--no-progress",
    "--set",
    "eval.every=2048",
    "--set",
    "eval.episodes=3",
    "--set",
    "checkpoint_every=2048",
]
DISTILL_TAGS = {"distill/loss", "distill/weight_mean", "distill/weight_max", "distill/peer_better_frac", "distill/peer_gap"}
SB3_TAGS = {"rollout/ep_rew_mean", "time/fps", "train/value_loss", "eval/mean_reward", "time/run_total_steps"}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "pair"
    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert main(["train", *FAST, "--total-steps", "12288", "--seed", "1", "--run-dir", str(run_dir)]) == 0
    (run_dir.parent / "stdout.txt").write_text(out.getvalue())
    return run_dir


def test_the_end_of_a_run_says_where_its_checkpoints_are_and_a_tensorboard_line_that_works(finished_run):
    lines = (finished_run.parent / "stdout.txt").read_text().splitlines()
    assert f"checkpoints: {finished_run / 'checkpoints'} (the latest is what dpd eval {finished_run} evaluates)" in lines
    (tensorboard_line,) = [line for line in lines if line.startswith("TensorBoard: ")]
    executable = tensorboard_line.split()[1]
    assert Path(executable).is_file() and tensorboard_line.endswith(f"--logdir {finished_run / 'tb'}")


def test_two_peers_write_tensorboard_per_learner(finished_run):
    for name in ("peer0", "peer1"):
        events = scalar_tags(finished_run / "tb" / name)
        tags = set(events.Tags()["scalars"])
        assert DISTILL_TAGS | SB3_TAGS <= tags, (DISTILL_TAGS | SB3_TAGS) - tags
        steps = [event.step for event in events.Scalars("rollout/ep_rew_mean")]
        assert max(steps) == 6144  # the x-axis is the learner's own env steps


def test_checkpoints_load_with_plain_sb3(finished_run):
    manifest = read_manifest(finished_run)
    assert manifest["progress"]["finished"] and manifest["versions"]["stable-baselines3"] == stable_baselines3.__version__
    checkpoint = finished_run / manifest["progress"]["checkpoint"]
    for name in ("peer0", "peer1"):
        model = PPO.load(checkpoint / name / "model.zip")
        assert model.num_timesteps == 6144
        stats = VecNormalize.load(
            str(checkpoint / name / "vecnormalize.pkl"), DummyVecEnv([lambda: __import__("gymnasium").make(TINY)])
        )
        assert stats.obs_rms.count > 6000
    assert len(list((finished_run / "checkpoints").iterdir())) == 1  # older checkpoints are pruned


def test_peers_beat_a_random_policy(finished_run, random_return, capsys):
    assert main(["eval", str(finished_run), "--episodes", "20", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["learner"] for r in results] == ["peer0", "peer1"]
    for result in results:
        assert beats_random(result["mean_return"], random_return), (result, random_return)


def test_losses_lists_the_registry(capsys):
    assert main(["losses"]) == 0
    out = capsys.readouterr().out
    for name in ("mse", "nll", "kl", "kl_reverse"):
        assert f"\n{name} " in "\n" + out


def test_config_yaml_of_a_run_resolves_to_its_peers(finished_run):
    """``RUN_DIR/config.yaml`` holds resolved values, and ``dpd train --config`` on it gives the
    run's peers again."""
    from dpd.agents import peer_setups
    from dpd.config import build_config, load_yaml

    text = (finished_run / "config.yaml").read_text()
    assert "null" not in text
    setups = peer_setups(build_config(load_yaml(finished_run / "config.yaml")))
    resolved = [
        {"name": setup.spec.name, "algo_kwargs": setup.algo_kwargs, "distill": dataclasses.asdict(setup.distill)}
        for setup in setups
    ]
    assert resolved == read_manifest(finished_run)["resolved_peers"]


def test_config_lists_every_key(capsys):
    from dpd.config import config_keys, config_markdown

    assert main(["config"]) == 0
    out = capsys.readouterr().out
    for key in config_keys():
        assert f"\n{key} " in "\n" + out, key
    assert main(["config", "--markdown"]) == 0
    assert capsys.readouterr().out == config_markdown()
    assert main(["config", "--json"]) == 0
    assert [row["key"] for row in json.loads(capsys.readouterr().out)] == config_keys()


@pytest.mark.parametrize("command", ["train", "distill"])
def test_run_help_lists_the_config_keys(command, capsys):
    with pytest.raises(SystemExit) as exit:
        main([command, "--help"])
    assert exit.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "distill.alpha" in out and "teacher.kickstart_schedule" in out and "'dpd config'" in out


def test_interrupted_run_resumes_to_its_budget(tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "resume"
    restore = interrupt(monkeypatch, PeerGroup, "train_round", after_calls=2)
    assert main(["train", *FAST, "--total-steps", "8192", "--run-dir", str(run_dir)]) == 130
    manifest = read_manifest(run_dir)
    # a round: each peer's turn of 4 iterations of 256 steps (turn_steps 1000)
    assert manifest["progress"]["run_steps"] == 2 * 2 * 4 * 256 and not manifest["progress"]["finished"]
    restore()
    manifest = resume(run_dir)
    assert manifest["progress"]["finished"]
    assert {v["num_timesteps"] for v in manifest["progress"]["learners"].values()} == {4096}
    assert {v["iterations"] for v in manifest["progress"]["learners"].values()} == {16}
    assert main(["train", "--resume", str(run_dir)]) == 0
    assert "already complete" in capsys.readouterr().out


def test_a_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    from dpd.agents.learner import Learner

    run_dir = tmp_path / "atomic"
    assert main(["train", *FAST, "--total-steps", "4096", "--run-dir", str(run_dir)]) == 0
    before = read_manifest(run_dir)["progress"]["checkpoint"]

    def broken_save(self, directory):
        raise OSError("disk full")

    monkeypatch.setattr(Learner, "save", broken_save)
    from dpd.agents import open_run
    from dpd.rundir import CheckpointError

    trainer = open_run(run_dir)
    try:
        with pytest.raises(CheckpointError, match="cannot write checkpoint .*: peer0: OSError: disk full"):
            trainer.checkpoint()
    finally:
        trainer.close()
    after = read_manifest(run_dir)["progress"]["checkpoint"]
    assert after == before and (run_dir / before / "peer0" / "model.zip").is_file()


def test_kd_is_a_dpd_command(tmp_path, capsys):
    run_dir = tmp_path / "kd"
    assert (
        main(
            [
                "kd",
                "--method",
                "hinton",
                "--dataset",
                "wine",
                "--teacher-net",
                "16",
                "--student-net",
                "4",
                "--epochs",
                "3",
                "--run-dir",
                str(run_dir),
            ]
        )
        == 0
    )
    assert "student" in capsys.readouterr().out and (run_dir / "teacher.pt").is_file()
    assert main(["kd", "--method", "telepathy", "--run-dir", str(tmp_path / "never")]) == 2
    assert "telepathy" in capsys.readouterr().err and not (tmp_path / "never").exists()


def test_version(capsys):
    from importlib import metadata

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"dpd {metadata.version('dpd')}"


def test_sb3_logger_formats_beside_tensorboard(tmp_path, capsys):
    run_dir = tmp_path / "csv"
    args = ["train", *FAST, "--total-steps", "2048", "--set", "log_formats=tensorboard,csv", "--run-dir", str(run_dir)]
    assert main(args) == 0
    header = (run_dir / "tb" / "peer0" / "progress.csv").read_text().splitlines()[0].split(",")
    assert {"eval/mean_reward", "time/run_total_steps"} <= set(header)
    assert scalar_tags(run_dir / "tb" / "peer0").Tags()["scalars"]  # TensorBoard still written
    bad = ["train", *FAST, "--set", "log_formats=csv,html", "--run-dir", str(tmp_path / "bad")]
    assert "unknown log format 'html'" in expect_cli_error(bad, capsys)
    assert not (tmp_path / "bad").exists()


def test_the_progress_bar_shows_each_peers_latest_evaluation_return(tmp_path, capsys):
    assert eval_postfix({"peer0": -12.34, "peer1": -9.8, "peer2": float("nan")}) == "peer0=-12.3 peer1=-9.8"
    fast = [arg for arg in FAST if arg != "--no-progress"]
    args = ["train", *fast, "--total-steps", "2048", "--set", "eval.every=256", "--run-dir", str(tmp_path / "bar")]
    assert main(args) == 0
    shown = re.findall(r"peer0=(-?\d+\.\d) peer1=(-?\d+\.\d)", capsys.readouterr().err)
    assert shown, "no evaluation returns beside the progress bar"
    # The last shown are each peer's last evaluation during training: the one before the final
    # evaluation, which comes after the bar has closed.
    logged = [scalar_tags(tmp_path / "bar" / "tb" / name).Scalars("eval/mean_reward") for name in ("peer0", "peer1")]
    assert list(shown[-1]) == [f"{events[-2].value:.1f}" for events in logged]


def documented_commands(path: Path):
    """Each ``dpd ...`` line of the bash blocks in ``path``, continuation lines joined, comments cut."""
    for block in re.findall(r"```bash\n(.*?)```", path.read_text(), re.S):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            line = line.split(" #")[0].strip()
            if line.startswith("dpd "):
                yield line


@pytest.mark.parametrize("doc", ["README.md", "docs/CLI.md"])
def test_every_documented_command_parses(doc):
    """The commands the docs show are ones dpd's parser takes (a renamed flag fails here, not for a reader)."""
    import shlex

    from dpd.cli import build_parser

    commands = list(documented_commands(Path(__file__).resolve().parents[1] / doc))
    assert len(commands) >= 10, f"{doc} lost its commands"
    for command in commands:
        build_parser().parse_args(shlex.split(command.replace("$T", "teacher.zip"))[1:])  # a bad one raises UserError
