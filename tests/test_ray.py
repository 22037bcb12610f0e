"""The Ray backend on a local instance: benchmark runs as tasks, and a run end to end. Peers as
actors are tested beside peer processes, on both backends, in ``tests/test_parallel.py``."""

import json
import multiprocessing

import pytest

ray = pytest.importorskip("ray", reason="Ray is an optional extra (pip install '.[ray]'); make test installs it")

from dpd.cli import main  # noqa: E402
from tests.conftest import TINY  # noqa: E402
from tests.test_parallel import local_ray  # noqa: E402,F401  (one local instance for the module)

pytestmark = pytest.mark.usefixtures("local_ray")


def test_ray_bench_end_to_end(tmp_path, capsys):
    """A grid whose runs are Ray tasks on this machine's instance (the CLI's ``train --backend
    ray`` is tried in test_parallel.py, a grid on several nodes in test_ray_cluster.py)."""
    out = tmp_path / "bench"
    grid = [
        "--envs",
        TINY,
        "--methods",
        "sb3,dpd",
        "--seeds",
        "0",
        "--total-steps",
        "1024",
        "--eval-every",
        "1024",
        "--eval-episodes",
        "1",
        "--final-episodes",
        "1",
    ]
    assert main(["bench", *grid, "--backend", "ray", "--workers", "2", "--no-progress", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [row["status"] for row in rows] == ["ok", "ok"]
    assert multiprocessing.active_children() == []
    capsys.readouterr()


def test_callbacks_reach_peers_that_are_ray_actors(tmp_path):
    """On the Ray backend each learner's callback travels to its actor; the stop it asks for
    comes back as the learner's steps."""
    from dpd import Peers
    from tests.test_api import CountSteps

    peers = Peers("ppo", TINY, peers=2, run_dir=tmp_path / "run", backend="ray", eval={"every": 0, "final_episodes": 2})
    peers.learn(total_timesteps=4096, callback=[CountSteps(stop_after=300), None])
    assert [result.env_steps for result in peers.results] == [300, 2048]
