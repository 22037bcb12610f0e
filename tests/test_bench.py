"""``dpd bench``: a tiny grid on the tiny env end to end, resume-skip, and crash isolation."""

import dataclasses
import json
from pathlib import Path

import pytest

from dpd.bench.grid import PRESETS, BenchRun, Grid, expand, parse_seeds
from dpd.bench.runner import group_curve, run_grid, run_in_process
from dpd.cli import main
from dpd.errors import UserError
from tests.conftest import TINY

TINY_GRID = [
    "--envs",
    TINY,
    "--algos",
    "ppo",
    "--methods",
    "sb3,dpd,independent",
    "--seeds",
    "0",
    "--total-steps",
    "2048",
    "--eval-every",
    "1024",
    "--eval-episodes",
    "2",
    "--final-episodes",
    "3",
    "--workers",
    "2",
    "--no-progress",
    "--set",
    "distill.every=1",
    "--set",
    "turn_steps=256",
]


@pytest.fixture(scope="module")
def tiny_bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    assert main(["bench", *TINY_GRID, "--out", str(out)]) == 0
    return out


class TestOneTinyGrid:
    """Tests of one tiny grid (``tiny_bench``), kept on one xdist worker (conftest.py) so the grid runs once."""

    def test_tiny_grid_writes_rows_table_and_plot(self, tiny_bench):
        rows = [json.loads(line) for line in (tiny_bench / "results.jsonl").read_text().splitlines()]
        assert sorted((row["method"], row["seed"]) for row in rows) == sorted(
            (m, s) for m in ("sb3", "dpd", "independent") for s in (0,)
        )
        for row in rows:
            assert row["status"] == "ok"
            learners = 1 if row["method"] == "sb3" else 2
            assert len(row["peer_scores"]) == learners
            assert row["score"] == pytest.approx(sum(row["peer_scores"]) / learners)
            assert row["curve"][-1] == [2048, pytest.approx(row["score"])]
            assert len(row["curve"]) >= 2  # evaluations during training, then the final one
        score = {(row["method"], row["seed"]): row["score"] for row in rows}
        assert score[("dpd", 0)] != score[("independent", 0)]  # same seeds: only distillation differs
        table = (tiny_bench / "results.md").read_text()
        assert table.startswith(f"Made by `dpd bench {' '.join(TINY_GRID)}")
        assert f"### {TINY}" in table and "| independent |" in table
        assert (tiny_bench / "results.csv").read_text().startswith("env,")
        assert (tiny_bench / f"curves_{TINY}_ppo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        # TensorBoard logs of every run
        assert list((tiny_bench / TINY / "ppo" / "sb3" / "seed0" / "tb").rglob("events.out.tfevents.*"))
        assert list((tiny_bench / TINY / "ppo" / "dpd" / "seed0" / "run" / "tb" / "peer1").rglob("events.out.tfevents.*"))

    def test_rerun_skips_complete_runs(self, tiny_bench, capsys):
        before = (tiny_bench / TINY / "ppo" / "dpd" / "seed0" / "result.json").stat().st_mtime_ns
        assert main(["bench", *TINY_GRID, "--out", str(tiny_bench)]) == 0
        assert "3 of 3 runs complete, 0 failed" in capsys.readouterr().out
        assert (tiny_bench / TINY / "ppo" / "dpd" / "seed0" / "result.json").stat().st_mtime_ns == before

    def test_rerun_with_other_settings_is_refused(self, tiny_bench, capsys):
        assert main(["bench", *TINY_GRID, "--total-steps", "4096", "--out", str(tiny_bench)]) == 2
        assert "other settings" in capsys.readouterr().err


def crash_on_seeds_one_and_two(run: BenchRun, directory: Path) -> None:
    """Seed 1: the worker dies, the way a segfault or an OOM kill would; seed 2: the run raises."""
    if run.seed == 1:
        raise SystemExit(3)
    run_in_process(dataclasses.replace(run, env="NoSuchEnv-v0") if run.seed == 2 else run, directory)


def test_a_crashed_run_does_not_stop_the_sweep(tmp_path):
    grid = Grid(
        envs=(TINY,),
        algos=("ppo",),
        methods=("sb3",),
        seeds=(0, 1, 2),
        total_steps=512,
        eval_every=512,
        eval_episodes=1,
        final_episodes=1,
    )
    events = []
    rows = run_grid(
        expand(grid),
        tmp_path,
        workers=2,
        on_event=lambda kind, run, row: events.append((kind, run.seed)),
        target=crash_on_seeds_one_and_two,
    )
    assert [row["status"] for row in rows] == ["ok", "failed", "failed"]
    assert "exited with code 3" in rows[1]["error"]
    assert "NoSuchEnv-v0" in rows[2]["error"]
    assert sorted(events) == [("done", 0), ("failed", 1), ("failed", 2)]
    # failed runs are retried on the next sweep; complete ones are skipped
    events.clear()
    rows = run_grid(expand(grid), tmp_path, workers=2, on_event=lambda kind, run, row: events.append((kind, run.seed)))
    assert [row["status"] for row in rows] == ["ok", "ok", "ok"]
    assert sorted(events) == [("done", 1), ("done", 2), ("skipped", 0)]


def killed_after_the_first_checkpoint(run: BenchRun, directory: Path) -> None:
    """The worker dies right after the run's first checkpoint, as at a session's end (no cleanup)."""
    import os

    from dpd.rundir import RunDirectory

    save_checkpoint = RunDirectory.save_checkpoint

    def save_then_die(self, *args, **kwargs):
        save_checkpoint(self, *args, **kwargs)
        os._exit(9)

    RunDirectory.save_checkpoint = save_then_die
    run_in_process(run, directory)


@pytest.mark.parametrize("method", ["independent", "sb3"])
def test_a_killed_run_continues_from_its_checkpoint_with_its_whole_curve(tmp_path, method):
    grid = Grid(
        envs=(TINY,),
        algos=("ppo",),
        methods=(method,),
        seeds=(0,),
        total_steps=4096,
        eval_every=512,
        eval_episodes=1,
        final_episodes=2,
        overrides=("turn_steps=256", "algo_kwargs.n_steps=256"),
    )
    (run,) = expand(grid)
    assert run.config()["checkpoint_every"] == 410  # CHECKPOINTS_PER_RUN of them over the budget
    (killed,) = run_grid([run], tmp_path / "killed", 1, target=killed_after_the_first_checkpoint)
    assert killed["status"] == "failed" and "code 9" in killed["error"]
    (resumed,) = run_grid([run], tmp_path / "killed", 1)
    (whole,) = run_grid([run], tmp_path / "whole", 1)
    assert whole["resumed_from"] == 0 and 410 <= resumed["resumed_from"] < 4096
    # Continued from its checkpoint, the run is the run made in one go (dpd.agents.resume_state):
    # the same curve (its evaluations before the kill come from the checkpoint), scores and updates.
    for key in ("curve", "score", "peer_scores", "training_returns", "gradient_updates"):
        assert resumed[key] == whole[key], key
    assert resumed["curve"][0][0] == 512 and resumed["curve"][-1][0] >= 4096
    if method == "sb3":  # its model is saved apart: the checkpoints (a replay buffer) are removed once complete
        assert not (tmp_path / "whole" / run.key / "run").exists() and (tmp_path / "whole" / run.key / "model.zip").exists()


def test_a_rerun_keeps_only_what_a_killed_run_continues_from(tmp_path):
    from dpd.bench.results import ERROR_FILE, RUN_DIR, clear_incomplete

    for failed in (False, True):
        directory = tmp_path / str(failed)
        (directory / RUN_DIR).mkdir(parents=True)
        (directory / "tb").mkdir()
        (directory / "model.zip").write_text("partial")
        if failed:
            (directory / ERROR_FILE).write_text("Traceback ... ValueError: nan")
        clear_incomplete(directory)
        assert sorted(entry.name for entry in directory.iterdir()) == ([] if failed else [RUN_DIR, "tb"])


def test_a_bad_override_is_refused_before_anything_runs():
    grid = Grid(
        envs=(TINY,), algos=("ppo",), methods=("sb3",), seeds=(0,), total_steps=512, overrides=("distill.weighting=magic",)
    )
    with pytest.raises(UserError, match="unknown weighting 'magic'"):  # caught before anything runs
        expand(grid)


def test_group_curve_averages_peers_at_equal_own_steps():
    class Eval:
        def __init__(self, steps, value):
            self.env_steps, self.mean_return = steps, value

    history = [Eval(100, 1.0), Eval(100, 3.0), Eval(200, 5.0), Eval(200, 7.0), Eval(300, 9.0)]
    assert group_curve(history, peers=2) == [[200, 2.0], [400, 6.0]]  # 300: only one peer so far


def test_grid_errors_name_the_choices(capsys):
    assert main(["bench", "--methods", "sb3,magic", "--out", "/nonexistent/x"]) == 2
    assert "magic" in capsys.readouterr().err
    assert main(["bench", "--preset", "huge"]) == 2
    assert "quick" in capsys.readouterr().err
    with pytest.raises(UserError, match="--seeds expects a list such as 0-4"):
        parse_seeds("0-x")
    assert parse_seeds("0-2,7") == (0, 1, 2, 7)
    assert not Path("/nonexistent/x").exists()


def test_presets_are_valid_grids():
    assert len(expand(PRESETS["quick"])) == 18
    assert len(expand(PRESETS["full"])) == 75


SMALL = ["--envs", TINY, "--algos", "ppo", "--methods", "sb3", "--seeds", "0-1", "--total-steps", "512", "--no-progress"]


def small_runs():
    from dpd.bench.cli import grid_from
    from dpd.cli import build_parser

    return expand(grid_from(build_parser().parse_args(["bench", *SMALL])))


def write_result(run: BenchRun, directory: Path) -> None:
    """A worker that records a result without training (what the grid does with it is tested)."""
    from dpd.bench.results import RESULT_FILE, run_fields

    directory.mkdir(parents=True, exist_ok=True)
    row = {**run_fields(run), "status": "ok", "score": 1.0, "peer_scores": [1.0], "curve": [[run.total_steps, 1.0]]}
    (directory / RESULT_FILE).write_text(json.dumps(row))


@pytest.mark.parametrize("content", ["{", "[]", "{}", '{"status": "ok"'])
def test_a_malformed_result_is_an_incomplete_run(tmp_path, capsys, content):
    from dpd.bench.results import run_dir

    complete, broken = small_runs()
    write_result(complete, run_dir(tmp_path, complete))
    run_dir(tmp_path, broken).mkdir(parents=True)
    (run_dir(tmp_path, broken) / "result.json").write_text(content)
    assert main(["bench", *SMALL, "--out", str(tmp_path), "--report-only"]) == 0
    captured = capsys.readouterr()
    assert "1 of 2 runs complete" in captured.out
    (line,) = captured.err.strip().splitlines()
    assert "seed1/result.json is truncated or malformed" in line and "counts as incomplete" in line, line
    events = []
    rows = run_grid([complete, broken], tmp_path, 1, lambda kind, run, row: events.append((kind, run.seed)), write_result)
    assert events == [("skipped", 0), ("done", 1)] and [row["status"] for row in rows] == ["ok", "ok"]
    assert "truncated or malformed" in capsys.readouterr().err


SWEEP = """
import os, sys, time
from pathlib import Path
from dpd.bench.grid import BenchRun
from dpd.bench.pools import ProcessPool

def train_forever(run, directory):
    (directory / "pid").write_text(str(os.getpid()))
    time.sleep(300)

if __name__ == "__main__":
    directory = Path(sys.argv[1])
    pool = ProcessPool(1, train_forever)
    pool.start(BenchRun("env", "ppo", "sb3", 0, 1, 1, 1, 1, 1), directory)
    while not (directory / "pid").exists():
        time.sleep(0.1)
    print("started", flush=True)
    time.sleep(300)
"""


def test_bench_workers_die_with_the_sweep(tmp_path):
    """The sweep is killed (SIGKILL: no cleanup runs): its worker ends too, not hours later."""
    import os
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "sweep.py"
    script.write_text(SWEEP)
    sweep = subprocess.Popen([sys.executable, str(script), str(tmp_path)], stdout=subprocess.PIPE, text=True)
    worker = None
    try:
        assert sweep.stdout.readline().strip() == "started"
        worker = int((tmp_path / "pid").read_text())
        sweep.kill()
        sweep.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(worker, 0)
                stat = Path(f"/proc/{worker}/stat")
                zombie = stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"  # dead, not yet reaped
            except (ProcessLookupError, FileNotFoundError):
                zombie = True
            if zombie:
                worker = None
                break
            time.sleep(0.1)
        assert worker is None, "the bench worker outlived the sweep"
    finally:
        sweep.kill()
        if worker is not None:
            os.kill(worker, signal.SIGKILL)


def killed_in_the_students_part(run: BenchRun, directory: Path) -> None:
    """The worker dies at the student's first checkpoint, after its group has finished."""
    import os

    from dpd.bench.results import GROUP_FILE
    from dpd.rundir import RunDirectory

    save_checkpoint = RunDirectory.save_checkpoint

    def save_then_die(self, *args, **kwargs):
        save_checkpoint(self, *args, **kwargs)
        if (directory / GROUP_FILE).exists():
            os._exit(9)

    RunDirectory.save_checkpoint = save_then_die
    run_in_process(run, directory)


def test_dpd_distilled_is_a_group_then_its_student_in_one_budget(tmp_path):
    """The group trains on the budget less the student's steps, its student on the rest; a kill
    in the student's part goes on from the finished group."""
    grid = Grid(
        envs=(TINY,),
        algos=("ppo",),
        methods=("dpd-distilled",),
        seeds=(0,),
        total_steps=2048,
        eval_every=1024,
        eval_episodes=1,
        final_episodes=2,
        overrides=("turn_steps=256", "algo_kwargs.n_steps=256"),
    )
    (run,) = expand(grid)
    assert run.config()["total_steps"] == 1536 and run.student_config("g")["total_steps"] == 512  # a quarter
    assert run.student_config("g")["teacher"] == {"path": "g", "learners": "all"}
    (killed,) = run_grid([run], tmp_path / "killed", 1, target=killed_in_the_students_part)
    assert killed["status"] == "failed" and "code 9" in killed["error"]
    (resumed,) = run_grid([run], tmp_path / "killed", 1)
    (whole,) = run_grid([run], tmp_path / "whole", 1)
    assert len(whole["peer_scores"]) == 1 and len(whole["teacher_scores"]) == 2
    assert whole["best_peer"] == max(whole["teacher_scores"]) and whole["score"] == whole["peer_scores"][0]
    assert resumed["teacher_scores"] == whole["teacher_scores"]  # the group was not trained again
    group_steps = max(step for step, _ in whole["curve"] if step <= 1536 + 1)
    assert resumed["resumed_from"] > group_steps and whole["resumed_from"] == 0
    assert [step for step, _ in resumed["curve"]] == [step for step, _ in whole["curve"]]
    assert whole["curve"][-1][0] >= 2048 and whole["curve"][-1][1] == pytest.approx(whole["score"])


def test_a_finished_group_is_announced_before_its_student_trains(tmp_path, monkeypatch):
    """A ``dpd-distilled`` run on a Ray node sends its files to the driver at each announcement:
    the group's summary must go before the student's part starts, or a node lost before the
    student's first checkpoint would train the group again."""
    from dpd.bench import runner
    from dpd.rundir import watch_checkpoints

    announced, parts = [], []

    def fake_train_group(run, directory, cfg):
        parts.append((directory, list(announced)))
        return runner.Trained([1.0, 2.0], [0.0, 0.0], 10, [[100, 1.5]])

    monkeypatch.setattr(runner, "_train_group", fake_train_group)
    (run,) = expand(Grid(envs=(TINY,), algos=("ppo",), methods=("dpd-distilled",), seeds=(0,), total_steps=2048))
    with watch_checkpoints(announced.append):
        trained = runner._train_distilled(run, tmp_path, None)
    assert parts == [(tmp_path, []), (tmp_path / runner.STUDENT_DIR, [tmp_path / runner.GROUP_FILE])]
    assert trained.teacher_scores == [1.0, 2.0]
