"""End to end through the command line, on the tiny env."""

import json

import pytest
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from dpd.agents.peer_group import PeerGroup
from dpd.cli import main
from tests.conftest import TINY

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
    assert main(["train", *FAST, "--total-steps", "12288", "--seed", "1", "--run-dir", str(run_dir)]) == 0
    return run_dir


def test_two_peers_write_tensorboard_per_learner(finished_run):
    for name in ("peer0", "peer1"):
        events = EventAccumulator(str(finished_run / "tb" / name))
        events.Reload()
        tags = set(events.Tags()["scalars"])
        assert DISTILL_TAGS | SB3_TAGS <= tags, (DISTILL_TAGS | SB3_TAGS) - tags
        steps = [event.step for event in events.Scalars("rollout/ep_rew_mean")]
        assert max(steps) == 6144  # the x-axis is the learner's own env steps


def test_checkpoints_load_with_plain_sb3(finished_run):
    manifest = json.loads((finished_run / "manifest.json").read_text())
    assert manifest["progress"]["finished"] and manifest["versions"]["stable-baselines3"]
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
        assert result["mean_return"] > random_return + 0.5 * abs(random_return), (result, random_return)


def test_losses_lists_the_registry(capsys):
    assert main(["losses"]) == 0
    out = capsys.readouterr().out
    for name in ("mse", "nll", "kl", "kl_reverse"):
        assert f"\n{name} " in "\n" + out


def test_interrupted_run_resumes_to_its_budget(tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "resume"
    original = PeerGroup.train_round
    calls = {"n": 0}

    def interrupt_after_two_rounds(self, after_turn=None):
        calls["n"] += 1
        if calls["n"] > 2:
            raise KeyboardInterrupt
        return original(self, after_turn)

    monkeypatch.setattr(PeerGroup, "train_round", interrupt_after_two_rounds)
    assert main(["train", *FAST, "--total-steps", "8192", "--run-dir", str(run_dir)]) == 130
    manifest = json.loads((run_dir / "manifest.json").read_text())
    # a round: each peer's turn of 4 iterations of 256 steps (turn_steps 1000)
    assert manifest["progress"]["run_steps"] == 2 * 2 * 4 * 256 and not manifest["progress"]["finished"]
    monkeypatch.setattr(PeerGroup, "train_round", original)
    assert main(["train", "--resume", str(run_dir), "--no-progress"]) == 0
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["progress"]["finished"]
    assert {v["num_timesteps"] for v in manifest["progress"]["learners"].values()} == {4096}
    assert {v["iterations"] for v in manifest["progress"]["learners"].values()} == {16}
    assert main(["train", "--resume", str(run_dir)]) == 0
    assert "already complete" in capsys.readouterr().out


def test_a_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    from dpd.agents.learner import Learner

    run_dir = tmp_path / "atomic"
    assert main(["train", *FAST, "--total-steps", "4096", "--run-dir", str(run_dir)]) == 0
    before = json.loads((run_dir / "manifest.json").read_text())["progress"]["checkpoint"]

    def broken_save(self, directory):
        raise OSError("disk full")

    monkeypatch.setattr(Learner, "save", broken_save)
    from dpd.agents import open_run
    from dpd.agents.peers import PeerFailure

    trainer = open_run(run_dir)
    with pytest.raises(PeerFailure, match="peer0 failed: OSError: disk full"):
        trainer.checkpoint()
    after = json.loads((run_dir / "manifest.json").read_text())["progress"]["checkpoint"]
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
