"""The Ray backend on a local instance: peers as actors, benchmark runs as tasks."""

import json
import multiprocessing

import pytest

ray = pytest.importorskip("ray", reason="Ray is an optional extra (pip install '.[ray]'); make test installs it")

from dpd.agents import build_group  # noqa: E402
from dpd.cli import main  # noqa: E402
from tests.conftest import TINY  # noqa: E402
from tests.test_parallel import outputs, tiny_config, train_to_first_distillation  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    """One local instance with this machine's 2 CPUs for the module: starting Ray takes seconds."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def test_ray_peers_reproduce_the_sequential_group():
    sequential, on_ray = build_group(tiny_config("local")), build_group(tiny_config("ray"))
    try:
        assert train_to_first_distillation(sequential) == train_to_first_distillation(on_ray)
        sequential.train()
        on_ray.train()
        for (mean_s, values_s), (mean_r, values_r) in zip(outputs(sequential), outputs(on_ray)):
            assert (mean_s == mean_r).all() and (values_s == values_r).all()
        assert on_ray.exchanges and min(size for _, size in on_ray.exchanges) > 0
    finally:
        sequential.close()
        on_ray.close()
    assert ray.is_initialized()  # dpd leaves an instance it did not start running


def test_ray_train_and_bench_end_to_end(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--env",
                TINY,
                "--total-steps",
                "2048",
                "--backend",
                "ray",
                "--no-progress",
                "--run-dir",
                str(run_dir),
                "--set",
                "eval.every=0",
            ]
        )
        == 0
    )
    assert json.loads((run_dir / "manifest.json").read_text())["progress"]["finished"]
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
