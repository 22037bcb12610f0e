"""SB3's own settings as config keys: ``device`` (to the SB3 constructors and ``load``; CUDA where
torch sees none refused before anything is written) and ``verbose``. CUDA itself is not tested
here: the machines that run this suite have no GPU."""

import functools

import numpy as np
import pytest
import torch
from stable_baselines3 import PPO

from dpd.agents import evaluate_run
from dpd.cli import main
from tests.conftest import TINY, expect_cli_error, tiny_learners

FAST = ["--env", TINY, "--no-progress", "--total-steps", "512", "--set", "eval.every=512", "--set", "eval.episodes=1"]


@pytest.fixture
def sb3_calls(monkeypatch):
    """Record the ``device`` and ``verbose`` that PPO's constructor and ``PPO.load`` are given."""
    calls = []
    original_init, original_load = PPO.__init__, PPO.load.__func__

    @functools.wraps(original_init)  # keeps the signature that dpd checks hyperparameters against
    def init(self, *args, **kwargs):
        if kwargs.get("_init_setup_model", True):  # not the bare model PPO.load builds
            calls.append(("init", kwargs.get("device"), kwargs.get("verbose")))
        original_init(self, *args, **kwargs)

    def load(cls, *args, **kwargs):
        calls.append(("load", kwargs.get("device"), kwargs.get("verbose")))
        return original_load(cls, *args, **kwargs)

    monkeypatch.setattr(PPO, "__init__", init)
    monkeypatch.setattr(PPO, "load", classmethod(load))
    return calls


@pytest.mark.filterwarnings("error::UserWarning")  # e.g. SB3 writing an empty log table
def test_device_and_verbose_reach_sb3_when_built_and_when_loaded(tmp_path, sb3_calls, capsys):
    run_dir = tmp_path / "run"
    assert main(["train", *FAST, "--set", "device=auto", "--set", "verbose=1", "--run-dir", str(run_dir)]) == 0
    assert sb3_calls == [("init", "auto", 1), ("init", "auto", 1)]
    out = capsys.readouterr().out
    assert "| rollout/" in out and "ep_rew_mean" in out  # verbose=1: SB3's log tables on stdout
    evaluate_run(run_dir, episodes=1)  # rebuilds the learners from their checkpoint
    assert sb3_calls[2:] == [("load", "auto", 1), ("load", "auto", 1)]


def test_the_default_device_is_the_cpu_and_sb3_stays_quiet(sb3_calls, capsys):
    (learner,) = tiny_learners(total_steps=256, start=True)
    learner.train_iteration(0)
    assert sb3_calls == [("init", "cpu", 0)] and learner.device == torch.device("cpu")
    assert capsys.readouterr().out == ""
    states = np.zeros((3, 4), dtype=np.float32)
    assert learner.normalize(states).device == learner.device
    assert all(tensor.device.type == "cpu" for tensor in learner.policy_on(states) if tensor is not None)
    learner.close()


def test_cuda_where_torch_sees_no_gpu_is_refused_before_anything_is_written(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for device in ("cuda", "cuda:0"):
        err = expect_cli_error(["train", *FAST, "--set", f"device={device}", "--run-dir", str(tmp_path / "run")], capsys)
        assert f"device {device!r}: torch sees no CUDA GPU here" in err and "valid choices: cpu, auto" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "setting, message",
    [
        ("device=tpu", "unknown device 'tpu'; valid choices: auto, cpu, cuda, cuda:<index>"),
        ("verbose=3", "verbose must be 0, 1 or 2 (as in SB3), got 3"),
    ],
)
def test_bad_device_and_verbose_are_user_errors(tmp_path, capsys, setting, message):
    assert message in expect_cli_error(["train", *FAST, "--set", setting, "--run-dir", str(tmp_path / "run")], capsys)
    assert not (tmp_path / "run").exists()
