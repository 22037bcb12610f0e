"""Teacher-student distillation on the tiny env, with a teacher trained by plain SB3."""

import json

import pytest
import torch
from stable_baselines3 import PPO

from dpd.agents import compare_models
from dpd.agents.teacher_student import kickstart_lambda
from dpd.cli import main
from dpd.config import TeacherConfig
from dpd.fidelity import policy_fidelity
from dpd.losses import PolicyOutput
from tests.conftest import TINY


@pytest.fixture(scope="module")
def sb3_teacher(tmp_path_factory):
    """A PPO teacher trained and saved with plain SB3, not through dpd."""
    from dpd import envs

    directory = tmp_path_factory.mktemp("teacher")
    env = envs.make_env(TINY, seed=0, gamma=0.95)
    model = PPO(
        "MlpPolicy",
        env,
        seed=0,
        n_steps=256,
        batch_size=64,
        learning_rate=1e-3,
        gamma=0.95,
        gae_lambda=0.9,
        policy_kwargs={"net_arch": [64, 64]},
    )
    model.learn(8192)
    model.save(directory / "teacher.zip")
    env.save(str(directory / "vecnormalize.pkl"))
    return directory / "teacher.zip"


def distill(teacher, run_dir, mode, *extra):
    args = ["distill", "--teacher", str(teacher), "--env", TINY, "--student-net", "8", "--mode", mode, "--total-steps", "4096"]
    return main([*args, "--run-dir", str(run_dir), "--no-progress", "--set", "eval.every=0", *extra])


@pytest.mark.parametrize("mode", ["offline", "online", "kickstart", "gated"])
def test_each_mode_teaches_a_small_student(mode, sb3_teacher, tmp_path, random_return, capsys):
    run_dir = tmp_path / mode
    assert distill(sb3_teacher, run_dir, mode) == 0
    manifest = json.loads((run_dir / "manifest.json").read_text())
    (result,) = manifest["progress"]["final_eval"]
    assert result["mean_return"] > random_return + 0.5 * abs(random_return), (mode, result)
    assert 0 <= result["metrics"]["fidelity/teacher_states/agreement"] <= 1
    student = PPO.load(run_dir / manifest["progress"]["checkpoint"] / "student" / "model.zip")  # plain SB3 loads it
    assert student.policy.mlp_extractor.policy_net[0].out_features == 8
    assert "fidelity/return_ratio" in capsys.readouterr().out


def test_identical_policies_have_perfect_fidelity(sb3_teacher):
    report = compare_models(str(sb3_teacher), str(sb3_teacher), TINY, None, None, episodes=3, n_states=200, tolerance=0.05)
    for source in ("teacher_states", "student_states"):
        assert report[f"{source}/action_mse"] == 0.0
        assert report[f"{source}/agreement"] == 1.0
        assert report[f"{source}/kl"] == pytest.approx(0.0, abs=1e-6)
    assert report["return_ratio"] == pytest.approx(1.0)


def test_fidelity_on_constructed_outputs():
    teacher = PolicyOutput(torch.tensor([[0.0, 0.0], [0.5, 0.5]]), torch.zeros(2, 2))
    student = PolicyOutput(torch.tensor([[0.05, 0.0], [0.5, 0.9]]), torch.zeros(2, 2))
    metrics = policy_fidelity(student, teacher, student.mean, teacher.mean, tolerance=0.1, comparable_distributions=True)
    assert metrics["action_mse"] == pytest.approx((0.05**2 + 0.4**2) / 4)
    assert metrics["agreement"] == pytest.approx(0.5)  # the second state differs by 0.4 > 0.1
    assert metrics["kl"] == pytest.approx((0.05**2 + 0.4**2) / 2 / 2)  # unit variances: |dmu|^2 / 2 per state
    deterministic = PolicyOutput(student.mean)
    assert policy_fidelity(deterministic, teacher, student.mean, teacher.mean, 0.1, True)["kl"] is None


def test_kickstart_schedules():
    config = TeacherConfig(kickstart_lambda=2.0, kickstart_half_life=0.25, kickstart_schedule="constant")
    assert kickstart_lambda(config, 0.5) == 2.0
    config.kickstart_schedule = "linear"
    assert kickstart_lambda(config, 0.75) == pytest.approx(0.5)
    config.kickstart_schedule = "exponential"
    assert kickstart_lambda(config, 0.5) == pytest.approx(0.5)


def test_distill_run_resumes(sb3_teacher, tmp_path, monkeypatch):
    from dpd.agents.teacher_student import TeacherStudent

    run_dir = tmp_path / "resume"
    original = TeacherStudent.train_iteration
    calls = {"n": 0}

    def interrupt(self, index=0):
        calls["n"] += 1
        if calls["n"] > 6:
            raise KeyboardInterrupt
        return original(self, index)

    monkeypatch.setattr(TeacherStudent, "train_iteration", interrupt)
    assert distill(sb3_teacher, run_dir, "online", "--set", "checkpoint_every=512") == 130
    monkeypatch.setattr(TeacherStudent, "train_iteration", original)
    assert main(["train", "--resume", str(run_dir), "--no-progress"]) == 0
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["progress"]["finished"] and manifest["progress"]["learners"]["student"]["num_timesteps"] == 4096


def expect_error(args, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dpd: error:") and len(err.splitlines()) == 1, err
    return err


def test_teacher_errors(sb3_teacher, tmp_path, capsys):
    base = ["distill", "--env", TINY, "--total-steps", "512", "--no-progress"]
    run_dir = tmp_path / "never"
    assert "teacher model not found" in expect_error(
        [*base, "--teacher", str(tmp_path / "none.zip"), "--run-dir", str(run_dir)], capsys
    )
    err = expect_error(
        [
            "distill",
            "--teacher",
            str(sb3_teacher),
            "--env",
            "HalfCheetah-v5",
            "--total-steps",
            "512",
            "--run-dir",
            str(run_dir),
        ],
        capsys,
    )
    assert "does not fit HalfCheetah-v5" in err
    assert "unknown distillation mode 'dagger'" in expect_error(
        [*base, "--teacher", str(sb3_teacher), "--mode", "dagger", "--run-dir", str(run_dir)], capsys
    )
    corrupt = tmp_path / "corrupt.zip"
    corrupt.write_bytes(b"not a zip")
    assert "not a readable SB3 model zip" in expect_error(
        [*base, "--teacher", str(corrupt), "--run-dir", str(run_dir)], capsys
    )
    err = expect_error(
        [*base, "--teacher", str(sb3_teacher), "--student-algo", "td3", "--set", "distill.loss=kl", "--run-dir", str(run_dir)],
        capsys,
    )
    assert "deterministic" in err
    err = expect_error(
        [*base, "--teacher", str(sb3_teacher), "--set", "algo_kwargs.gamma=0.9", "--run-dir", str(run_dir)], capsys
    )
    assert "teacher and student: peers must share one discount" in err  # the teacher learned with 0.95
    err = expect_error(
        [*base, "--teacher", str(sb3_teacher), "--set", "distill.gate=return", "--run-dir", str(run_dir)], capsys
    )
    assert "has no peer to gate" in err
    assert not run_dir.exists()
