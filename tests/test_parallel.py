"""Peers in processes of their own or Ray actors: same results as in one process, clean stops,
no orphans; and the registries that name backends and learners."""

import json
import multiprocessing
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from stable_baselines3 import PPO

from dpd.agents import PeerGroup, build_group, new_run
from dpd.agents.algorithms import ALGORITHMS, available_algorithms, register_learner
from dpd.agents.backend import BACKENDS, PeerBackend, available_backends, make_backend, register_backend
from dpd.agents.local_backend import LocalPeers
from dpd.agents.on_policy import PPOLearner
from dpd.agents.peer import Peer, PeerFailure
from dpd.agents.process_backend import ProcessPeers
from dpd.agents.ray_backend import RayPeers
from dpd.agents.resume_state import RESUME_FILE, SavedEnv, read_state, write_state
from dpd.cli import main
from dpd.config import build_config
from dpd.errors import UserError
from tests.conftest import TINY

STATES = np.random.default_rng(7).normal(size=(32, 4)).astype(np.float32) * 10


@pytest.fixture(scope="module")
def local_ray():
    """One local instance with this machine's 2 CPUs for the module: starting Ray takes seconds."""
    ray = pytest.importorskip("ray", reason="Ray is an optional extra (pip install '.[ray]'); make test installs it")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture(params=["process", "ray"])
def parallel_backend(request):
    """A backend whose peers live apart from the group; ``ray`` (skipped where Ray is missing)
    on the module's local instance, which dpd must leave running."""
    if request.param == "ray":
        request.getfixturevalue("local_ray")
    return request.param


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
    answers = group.backend.ask(Peer.answer, {i: (STATES,) for i in range(len(group.learners))})
    return [(answers[i].output.mean.numpy(), answers[i].values) for i in range(len(group.learners))]


def test_parallel_peers_reproduce_the_sequential_group(parallel_backend):
    sequential, parallel = build_group(tiny_config("local")), build_group(tiny_config(parallel_backend))
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
    if parallel_backend == "ray":
        import ray

        assert ray.is_initialized()  # dpd leaves an instance it did not start running


def test_a_peer_that_raises_stops_the_group_and_names_itself(parallel_backend, tmp_path, capsys):
    run_dir = tmp_path / "nan"
    args = [
        "train",
        "--env",
        TINY,
        "--total-steps",
        "4096",
        *(["--parallel"] if parallel_backend == "process" else ["--backend", parallel_backend]),
        "--no-progress",
        "--run-dir",
        str(run_dir),
        "--set",
        "env_kwargs.reward_scale=1e308",  # the config refuses NaN; this overflows to infinity in the env
    ]
    assert main(args) == 1
    error = capsys.readouterr().err
    # infinite rewards, NaN returns: torch's distribution check raises in peer0's first update
    assert error.count("\n") == 1 + error.count("WARN")
    assert "dpd: error: peer0 failed: ValueError" in error and f"--resume {run_dir}" in error
    assert multiprocessing.active_children() == []


def train_until_peer1_is_killed(trainer, rounds, monkeypatch):
    """Train until peer1's process is killed at the end of round ``rounds`` (after the round's
    exchange, before its checkpoint), which must end the run in a ``PeerFailure``."""
    original, done = PeerGroup.train_round, []

    def kill_peer1_after_rounds(self, after_turn=None):
        original(self, after_turn)
        done.append(1)
        if len(done) == rounds:
            self.backend.processes[1].kill()

    monkeypatch.setattr(PeerGroup, "train_round", kill_peer1_after_rounds)
    try:
        with pytest.raises(PeerFailure, match="peer1 failed: process died"):
            trainer.train(progress_bar=False)
    finally:
        trainer.close()
    monkeypatch.setattr(PeerGroup, "train_round", original)


def test_a_killed_peer_stops_the_group_the_others_are_saved_and_resume_continues(tmp_path, monkeypatch):
    run_dir = tmp_path / "killed"
    train_until_peer1_is_killed(new_run(run_dir, tiny_config("process", total_steps=4096, checkpoint_every=0)), 1, monkeypatch)
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
    assert progress["finished"] and {v["num_timesteps"] for v in progress["learners"].values()} == {2048}
    assert multiprocessing.active_children() == []


def test_a_killed_peer_sends_peers_that_share_experience_back_to_their_last_checkpoint(tmp_path, monkeypatch):
    """A survivor saved after the kill would keep its transitions of the unfinished round, which the
    killed peer never received and would not get on resume: the group goes back together, and the
    resumed peers' replay buffers hold every transition of the run, the same ones."""
    run_dir = tmp_path / "shared"
    cfg = tiny_config(
        "process",
        total_steps=1000,
        algo="sac",
        turn_steps=125,
        checkpoint_every=250,
        share={"enabled": True},
        distill={"every": 25},
    )
    train_until_peer1_is_killed(new_run(run_dir, cfg), 2, monkeypatch)
    progress = json.loads((run_dir / "manifest.json").read_text())["progress"]
    assert progress["run_steps"] == 250 and {v["num_timesteps"] for v in progress["learners"].values()} == {125}
    assert main(["train", "--resume", str(run_dir), "--parallel", "--no-progress"]) == 0
    checkpoint = run_dir / json.loads((run_dir / "manifest.json").read_text())["progress"]["checkpoint"]
    contents = []
    for peer in ("peer0", "peer1"):
        with open(checkpoint / peer / "replay_buffer.pkl", "rb") as handle:
            buffer = pickle.load(handle)
        assert buffer.pos == 1000
        contents.append({row.tobytes() for row in np.concatenate([buffer.observations[:1000, 0], buffer.rewards[:1000]], 1)})
    assert len(contents[0]) == 1000 and contents[0] == contents[1]
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


def test_the_backend_registry_refuses_an_unknown_name_with_the_choices():
    assert set(BACKENDS) == {"local", "process", "ray"} and available_backends() == ["local", "process", "ray"]
    with pytest.raises(UserError) as refused:
        make_backend("mpi", [], [])
    assert str(refused.value) == "unknown backend 'mpi'; valid choices: local, process, ray"


def test_a_name_is_registered_once():
    class AnotherPPO(PPOLearner):
        pass

    with pytest.raises(ValueError, match="algorithm 'ppo' is already registered"):
        register_learner("ppo")(AnotherPPO)
    with pytest.raises(ValueError, match="backend 'local' is already registered"):
        register_backend("local")(LocalPeers)
    assert ALGORITHMS["ppo"] is PPOLearner and available_algorithms() == ["a2c", "ddpg", "ppo", "sac", "td3"]


def test_every_backend_serves_the_interface_and_every_request_is_one_peer_method():
    interface = [name for name, value in vars(PeerBackend).items() if callable(value) and not name.startswith("_")]
    assert sorted(interface) == ["alive", "ask", "ask_one", "close"]
    for backend in (LocalPeers, ProcessPeers, RayPeers):
        assert all(callable(getattr(backend, name, None)) for name in interface), backend
        assert not getattr(backend, "__abstractmethods__", None), backend
    # What the group and the loop ask of a peer is named as a method of Peer, declared nowhere else.
    agents = Path(__file__).resolve().parents[1] / "agents"
    named = set()
    for module in ("peer_group.py", "peer_proxy.py"):
        named |= set(re.findall(r"\bPeer\.(\w+)", (agents / module).read_text()))
    assert {"train_turn", "states_at", "answer", "distill", "status", "start", "take_transitions"} <= named
    assert all(callable(getattr(Peer, name, None)) for name in named), named
    for module in ("backend.py", "local_backend.py", "process_backend.py", "ray_backend.py"):  # transports only
        declared = set(re.findall(r"def (\w+)\(", (agents / module).read_text()))
        assert not declared & named, (module, declared & named)


def test_a_peer_that_turned_nan_is_not_saved_as_a_survivor(tmp_path):
    """peer0 fails; peer1 has NaN parameters without having failed yet: both go back to the last
    checkpoint, peer2 alone is saved as it is."""
    run_dir = tmp_path / "nan"
    cfg = tiny_config("local", total_steps=3072, peers=3, checkpoint_every=0, turn_steps=256)
    trainer = new_run(run_dir, cfg)
    group = trainer.group
    try:
        for learner in group.learners:
            learner.start(None)
        group.train_round()
        before = trainer.checkpoint()
        group.train_round()
        with torch.no_grad():
            for parameter in group.backend.peers[1].learner.model.policy.parameters():
                parameter.fill_(float("nan"))
        assert [learner.sound() for learner in group.learners] == [True, False, True]
        after = trainer.checkpoint_survivors(0)
    finally:
        trainer.close()
    progress = json.loads((run_dir / "manifest.json").read_text())["progress"]
    assert progress["learners"] == {
        "peer0": {"num_timesteps": 256, "iterations": 1},
        "peer1": {"num_timesteps": 256, "iterations": 1},
        "peer2": {"num_timesteps": 512, "iterations": 2},
    }
    assert after != before and not before.exists() and run_dir / progress["checkpoint"] == after
    for name, steps in (("peer0", 256), ("peer1", 256), ("peer2", 512)):
        model = PPO.load(after / name / "model.zip")
        assert model.num_timesteps == steps
        assert all(torch.isfinite(parameter).all() for parameter in model.policy.parameters())
    assert main(["train", "--resume", str(run_dir), "--no-progress"]) == 0


@pytest.fixture(scope="module")
def checkpointed_run(tmp_path_factory):
    """A sequential run with a checkpoint after its first round (512 env steps), unfinished."""
    run_dir = tmp_path_factory.mktemp("checkpointed") / "run"
    trainer = new_run(run_dir, tiny_config("local", total_steps=2048, checkpoint_every=0, turn_steps=256))
    try:
        for learner in trainer.group.learners:
            learner.start(None)
        trainer.group.train_round()
        trainer.checkpoint()
    finally:
        trainer.close()
    return run_dir


def overflow_rewards(checkpoint: Path) -> None:
    """From ``checkpoint`` on, every learner's training envs (as its resume state holds them)
    scale rewards to infinity: infinite returns, NaN advantages."""
    for path in checkpoint.rglob(RESUME_FILE):
        state = read_state(path)
        env = state.train_env.restore()
        for sub_env in env.venv.envs:
            sub_env.unwrapped.reward_scale = 1e308
        state.train_env = SavedEnv.of(env)
        write_state(state, path, "a test")


@pytest.mark.parametrize("backend", ["local", "process", "ray"])
def test_nan_after_a_checkpoint_is_one_line_on_every_backend_and_the_checkpoint_stays_good(
    backend, checkpointed_run, tmp_path, request, capsys
):
    """The run resumes where its rewards overflow (a fault after the checkpoint): one line naming
    the peer, exit 1, and the checkpoint the manifest names still loads, agrees with the manifest
    on every learner's steps, has finite parameters and evaluates."""
    if backend == "ray":
        request.getfixturevalue("local_ray")
        capsys.readouterr()  # what Ray printed as it started
    run_dir = tmp_path / "run"
    shutil.copytree(checkpointed_run, run_dir)
    checkpoint = run_dir / json.loads((run_dir / "manifest.json").read_text())["progress"]["checkpoint"]
    overflow_rewards(checkpoint)
    assert main(["train", "--resume", str(run_dir), "--backend", backend, "--no-progress"]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 + error.count("WARN"), error
    assert "failed: ValueError" in error and f"--resume {run_dir}" in error and "Traceback" not in error
    progress = json.loads((run_dir / "manifest.json").read_text())["progress"]
    assert progress["run_steps"] >= 512 and not progress["finished"]
    for name, entry in progress["learners"].items():
        model = PPO.load(run_dir / progress["checkpoint"] / name / "model.zip")
        assert model.num_timesteps == entry["num_timesteps"] >= 256, name
        assert all(torch.isfinite(parameter).all() for parameter in model.policy.parameters()), name
    assert [entry.name for entry in (run_dir / "checkpoints").iterdir()] == [Path(progress["checkpoint"]).name]
    assert main(["eval", str(run_dir), "--episodes", "1"]) == 0
    assert multiprocessing.active_children() == []


def test_peers_failing_at_once_in_processes_leave_a_consistent_checkpoint(tmp_path):
    """Both peers fail in the same parallel round: neither is saved as a survivor, so every
    checkpointed model agrees with the manifest on its steps; and each peer process, still
    answering after its request raised, is told to close and exits by itself (exit code 0), not
    terminated after a wait."""
    run_dir = tmp_path / "both"
    cfg = tiny_config("process", total_steps=2048, checkpoint_every=0)
    cfg.env_kwargs["reward_scale"] = float("nan")  # the config refuses it; the env does not
    trainer = new_run(run_dir, cfg)
    try:
        with pytest.raises(PeerFailure, match="peer0 failed: ValueError"):
            trainer.train(progress_bar=False)
    finally:
        trainer.close()
    progress = json.loads((run_dir / "manifest.json").read_text())["progress"]
    if progress["checkpoint"] is not None:
        for name, entry in progress["learners"].items():
            path = run_dir / progress["checkpoint"] / name / "model.zip"
            assert not path.exists() or PPO.load(path).num_timesteps == entry["num_timesteps"], name
    assert [process.exitcode for process in trainer.group.backend.processes] == [0, 0]
    assert multiprocessing.active_children() == []


ORPHANS = """
import sys
from dpd.agents import build_group
from dpd.agents.peer import Peer
from dpd.config import build_config

if __name__ == "__main__":
    group = build_group(build_config({"env": sys.argv[1], "peers": 2, "total_steps": 400000, "backend": "process"}))
    for learner in group.learners:
        learner.start(None)
    print(" ".join(str(process.pid) for process in group.backend.processes), flush=True)
    group.backend.ask(Peer.train_turn, {0: (0, 200000), 1: (0, 200000)})  # minutes: the group is killed first
"""


def running(pid):
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    stat = Path(f"/proc/{pid}/stat")
    try:
        os.kill(pid, 0)
        return not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (ProcessLookupError, FileNotFoundError):
        return False


def test_peers_of_a_killed_group_end_at_once_and_quietly(tmp_path):
    """The group is killed mid-turn (SIGKILL: nothing of it runs after): its peer processes end
    too, not minutes later, and print no BrokenPipeError traceback on its terminal."""
    script = tmp_path / "group.py"
    script.write_text(ORPHANS)
    group = subprocess.Popen([sys.executable, str(script), TINY], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peers = []
    try:
        peers = [int(pid) for pid in group.stdout.readline().split()]
        assert len(peers) == 2, group.stderr.read()
        time.sleep(1.0)  # the turn is under way
        group.kill()
        group.wait()
        deadline = time.monotonic() + 10
        while any(running(pid) for pid in peers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(running(pid) for pid in peers), "peer processes outlived their group"
        assert "Traceback" not in group.stderr.read()
    finally:
        group.kill()
        for pid in peers:
            if running(pid):
                os.kill(pid, signal.SIGKILL)
