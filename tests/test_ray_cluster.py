"""dpd on a Ray cluster of three nodes simulated on this machine (``SimulatedCluster``: a head and
two worker nodes of one CPU each, on the loopback, each node with a working directory and a temp
directory of its own): every file reaches the driver's directory, a node can die mid-grid or
mid-run, and a node with other code is refused. One cluster serves the module (its tests run in
order on one pytest worker: ``WHOLE_MODULES`` in conftest.py); each test leaves it at three nodes."""

import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

import pytest

ray = pytest.importorskip("ray", reason="Ray is an optional extra (pip install '.[ray]'); make test installs it")

from dpd.agents.ray_cluster import SimulatedCluster  # noqa: E402
from dpd.cli import main  # noqa: E402
from dpd.processes import descendants  # noqa: E402
from tests.conftest import TINY, expect_cli_error  # noqa: E402
from tests.test_ray_local import listening, loopback  # noqa: E402

GRID = [
    "bench",
    "--envs",
    TINY,
    "--methods",
    "sb3,independent",
    "--seeds",
    "0-1",
    "--total-steps",
    "4096",
    "--set",
    "turn_steps=256",  # a group checkpoints between rounds: several times in a tiny run
    "--eval-every",
    "1024",
    "--eval-episodes",
    "1",
    "--final-episodes",
    "2",
    "--backend",
    "ray",
    "--no-progress",
]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    simulated = SimulatedCluster(tmp_path_factory.mktemp("cluster"), nodes=3)
    yield simulated
    simulated.shutdown()


def rows(out: Path) -> Dict[str, Dict[str, Any]]:
    """The grid's result rows by run, each run once."""
    found = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    by_key = {f"{row['method']}/seed{row['seed']}": row for row in found}
    assert len(by_key) == len(found)
    return by_key


def when(condition: Callable[[], bool], then: Callable[[], None], seconds: float = 120.0) -> threading.Thread:
    """A thread that calls ``then()`` once ``condition()`` holds (looked at every 0.1 s)."""

    def watch() -> None:
        deadline = time.monotonic() + seconds
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.1)
        then()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def progress(manifest: Path) -> Dict[str, Any]:
    try:
        return json.loads(manifest.read_text())["progress"]
    except (OSError, ValueError):
        return {}


@pytest.fixture(scope="module")
def undisturbed(cluster, tmp_path_factory):
    """The grid on three nodes, ``--out`` relative to the driver's working directory."""
    driver = tmp_path_factory.mktemp("driver")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(driver)
        code = main([*GRID, "--address", cluster.address, "--out", "out"])
    return code, driver / "out"


def test_a_grid_over_three_nodes_writes_every_result_under_the_drivers_out(cluster, undisturbed):
    code, out = undisturbed
    assert code == 0
    found = rows(out)
    assert sorted(found) == ["independent/seed0", "independent/seed1", "sb3/seed0", "sb3/seed1"]
    assert all(row["status"] == "ok" for row in found.values())
    for key in found:
        run = out / TINY / "ppo" / key
        assert (run / "result.json").is_file()
        assert list(run.rglob("events.out.tfevents.*")), f"{key}: no TensorBoard events on the driver"
    assert (out / TINY / "ppo" / "sb3" / "seed0" / "model.zip").is_file()
    assert cluster.files_left() == []  # nothing stayed on a node, in its working or temp directory


def test_the_simulated_cluster_listens_on_the_loopback_only(cluster):
    """Its nodes are bound to 127.0.0.1 as dpd's local instance is: nothing beyond this machine
    can reach the pickles Ray passes around."""
    addresses = listening([os.getpid(), *descendants(os.getpid())])
    assert len(addresses) >= 6, f"found too few sockets of the cluster's three nodes: {addresses}"
    assert {host_port: pid for host_port, pid in addresses.items() if not loopback(host_port)} == {}


def test_a_node_removed_mid_grid_the_grid_completes_with_every_run_once_and_the_same_scores(
    cluster, undisturbed, tmp_path, capsys
):
    """A worker node dies while every node trains a run that has a checkpoint: its run starts
    again on another node from that checkpoint; every run, that one too, scores as in the
    undisturbed grid (a checkpoint holds the envs and generators: dpd.agents.resume_state)."""
    out = tmp_path / "out"

    def checkpointed_in_flight() -> bool:
        runs = [path.parent.parent for path in out.glob(f"{TINY}/ppo/*/seed*/run/manifest.json")]
        states = [progress(run / "run" / "manifest.json") for run in runs if not (run / "result.json").exists()]
        return sum(1 for state in states if state.get("checkpoint") and state["run_steps"] <= 2048) >= 3

    victim = cluster.workers[0]
    watcher = when(checkpointed_in_flight, lambda: cluster.remove_node(victim))
    assert main([*GRID, "--address", cluster.address, "--out", str(out)]) == 0
    watcher.join()
    cluster.add_node()  # back to three nodes for the tests below
    assert "its Ray node died; running it again from its last checkpoint" in capsys.readouterr().err
    found, reference = rows(out), rows(undisturbed[1])
    assert sorted(found) == sorted(reference) and all(row["status"] == "ok" for row in found.values())
    resumed = [key for key, row in found.items() if row["resumed_from"] > 0]
    assert len(resumed) == 1, found
    for key, row in found.items():
        assert (row["score"], row["curve"]) == (reference[key]["score"], reference[key]["curve"]), key
    assert cluster.files_left() == []


def test_a_peer_group_whose_actors_node_dies_goes_back_to_its_last_checkpoint_and_trains_on(cluster, tmp_path, capsys):
    from dpd.agents import new_run
    from dpd.config import build_config

    run_dir = tmp_path / "run"
    layer = {"env": TINY, "peers": 2, "total_steps": 3072, "backend": "ray", "ray_address": cluster.address}
    cfg = build_config(layer, {"checkpoint_every": 512, "eval": {"every": 0, "final_episodes": 2}})
    trainer = new_run(run_dir, cfg)
    nodes: List[str] = list(trainer.group.backend.nodes)
    victim = next(node for node in cluster.workers if node.node_id in nodes)  # an actor's node, not the head
    watcher = when(
        lambda: progress(run_dir / "manifest.json").get("checkpoint") is not None, lambda: cluster.remove_node(victim)
    )
    try:
        results = trainer.train(progress_bar=False)
    finally:
        trainer.close()
    watcher.join()
    cluster.add_node()
    err = capsys.readouterr().err
    assert f"its Ray node {victim.node_id} died; every peer goes back to the last checkpoint (" in err
    back_to = int(err.split("every peer goes back to the last checkpoint (")[1].split(" ")[0])
    assert 512 <= back_to < 3072
    done = progress(run_dir / "manifest.json")
    assert done["finished"] and done["run_steps"] == 3072 and [result.env_steps for result in results] == [1536, 1536]
    for peer in ("peer0", "peer1"):  # the events of the first actors and of their successors
        assert len(list((run_dir / "tb" / peer).glob("events.out.tfevents.*"))) == 2, peer
        assert (run_dir / done["checkpoint"] / peer / "model.zip").is_file()
    assert cluster.files_left() == []


def test_a_node_with_other_versions_is_refused_in_one_line(cluster, tmp_path, capsys):
    """A node whose Python finds stable-baselines3 9.9.9 first (a PYTHONPATH with its metadata)."""
    other = tmp_path / "other-packages" / "stable_baselines3-9.9.9.dist-info"
    other.mkdir(parents=True)
    (other / "METADATA").write_text("Metadata-Version: 2.1\nName: stable-baselines3\nVersion: 9.9.9\n")
    ray.shutdown()  # the driver joins afresh, and checks every node as it does
    stranger = cluster.add_node(env={"PYTHONPATH": str(other.parent)})
    try:
        capsys.readouterr()
        err = expect_cli_error([*GRID, "--address", cluster.address, "--out", str(tmp_path / "out")], capsys)
    finally:
        cluster.remove_node(stranger)
    assert f"Ray node 127.0.0.1 ({stranger.node_id[:8]}) runs other code than this driver" in err
    assert "stable-baselines3 9.9.9 there, " in err and not (tmp_path / "out").exists()
    assert not ray.is_initialized()
