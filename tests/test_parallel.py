"""Peers in processes of their own: same results as in one process, clean stops, no orphans."""

import json
import multiprocessing
import sys

import numpy as np
import pytest

from dpd.agents import PeerGroup, build_group, new_run
from dpd.agents.peers import PeerFailure
from dpd.cli import main
from dpd.config import build_config
from tests.conftest import TINY

STATES = np.random.default_rng(7).normal(size=(32, 4)).astype(np.float32) * 10


def tiny_config(backend, total_steps=4096, **overrides):
    layer = {
        "env": TINY,
        "peers": 2,
        "total_steps": total_steps,
        "backend": backend,
        "distill": {"every": 1},
        "eval": {"every": 0, "final_episodes": 2},
    }
    return build_config(layer, overrides)


def train_to_first_distillation(group):
    for learner in group.learners:
        learner.start(None)
    while not group.last_stats:
        group.train_round()
    return group.last_stats


def outputs(group):
    answers = group.backend.call("answer", [(i, (STATES,)) for i in range(len(group.learners))])
    return [(answer.output.mean.numpy(), answer.values) for answer in answers]


def test_parallel_peers_reproduce_the_sequential_group():
    sequential, parallel = build_group(tiny_config("local")), build_group(tiny_config("process"))
    try:
        first_sequential = train_to_first_distillation(sequential)
        first_parallel = train_to_first_distillation(parallel)
        # the same distillation batches and weights at the first distillation point ...
        assert first_sequential == first_parallel and set(first_parallel) == {0, 1}
        assert all("loss" in step for steps in first_parallel.values() for step in steps)
        # ... and the same peers at the end
        sequential.train()
        parallel.train()
        for (mean_s, values_s), (mean_p, values_p) in zip(outputs(sequential), outputs(parallel)):
            np.testing.assert_array_equal(mean_s, mean_p)
            np.testing.assert_array_equal(values_s, values_p)
        assert parallel.exchanges and min(size for _, size in parallel.exchanges) > STATES.nbytes
    finally:
        sequential.close()
        parallel.close()
    assert multiprocessing.active_children() == []


def test_a_peer_that_raises_stops_the_group_and_names_itself(tmp_path, capsys):
    run_dir = tmp_path / "nan"
    args = [
        "train",
        "--env",
        TINY,
        "--total-steps",
        "4096",
        "--parallel",
        "--no-progress",
        "--run-dir",
        str(run_dir),
        "--set",
        "env_kwargs.reward_scale=.nan",
    ]
    assert main(args) == 1
    error = capsys.readouterr().err
    # NaN rewards: torch's distribution check raises in peer0's first update
    assert error.count("\n") == 1 + error.count("WARN")
    assert "dpd: error: peer0 failed: ValueError" in error and f"--resume {run_dir}" in error
    assert multiprocessing.active_children() == []


def test_a_killed_peer_stops_the_group_the_others_are_saved_and_resume_continues(tmp_path, monkeypatch):
    run_dir = tmp_path / "killed"
    trainer = new_run(run_dir, tiny_config("process", total_steps=8192, checkpoint_every=0))
    original = PeerGroup.train_round

    def kill_peer1_after_one_round(self, after_turn=None):
        original(self, after_turn)
        self.backend.processes[1].kill()

    monkeypatch.setattr(PeerGroup, "train_round", kill_peer1_after_one_round)
    try:
        with pytest.raises(PeerFailure, match="peer1 failed: process died"):
            trainer.train(progress_bar=False)
    finally:
        trainer.close()
    monkeypatch.setattr(PeerGroup, "train_round", original)
    assert multiprocessing.active_children() == []
    progress = json.loads((run_dir / "manifest.json").read_text())["progress"]
    checkpoint = run_dir / progress["checkpoint"]
    assert (checkpoint / "peer0" / "model.zip").is_file() and not (checkpoint / "peer1").exists()
    assert progress["learners"]["peer0"]["num_timesteps"] > 0 and progress["learners"]["peer1"] == {
        "num_timesteps": 0,
        "iterations": 0,
    }
    assert main(["train", "--resume", str(run_dir), "--parallel", "--no-progress"]) == 0
    progress = json.loads((run_dir / "manifest.json").read_text())["progress"]
    assert progress["finished"] and {v["num_timesteps"] for v in progress["learners"].values()} == {4096}
    assert multiprocessing.active_children() == []


def test_a_bad_hyperparameter_in_a_peer_process_is_one_line(tmp_path, capsys):
    args = [
        "train",
        "--env",
        TINY,
        "--parallel",
        "--no-progress",
        "--run-dir",
        str(tmp_path / "bad"),
        "--set",
        "algo_kwargs.batch_size=0",
    ]
    assert main(args) == 2
    assert capsys.readouterr().err.startswith("dpd: error: cannot build a ppo learner")
    assert not (tmp_path / "bad").exists() and multiprocessing.active_children() == []


def test_unknown_backend_names_the_choices(capsys):
    assert main(["train", "--env", TINY, "--backend", "mpi", "--no-progress"]) == 2
    assert "local, process, ray" in capsys.readouterr().err


def test_ray_backend_without_ray_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    run_dir = tmp_path / "no_ray"
    assert main(["train", "--env", TINY, "--backend", "ray", "--no-progress", "--run-dir", str(run_dir)]) == 2
    assert "pip install ray" in capsys.readouterr().err and not run_dir.exists()
