"""The run directory under failure: a checkpoint replaced at any moment, a full disk, and two
processes writing one run."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import dpd.rundir
from dpd.cli import main
from dpd.errors import UserError
from dpd.rundir import CheckpointError, RunDirectory
from tests.conftest import TINY, expect_cli_error, read_manifest, resume

FAST = ["--env", TINY, "--no-progress", "--set", "eval.every=0", "--set", "eval.final_episodes=2", "--set", "turn_steps=256"]


def new_run(path: Path) -> RunDirectory:
    return RunDirectory.create(path, {"config": {}, "progress": {"run_steps": 0, "checkpoint": None}})


def checkpoint(run: RunDirectory, tag: str, content: str) -> Path:
    def write(directory: Path) -> None:
        directory.mkdir(parents=True)
        (directory / "model").write_text(content)

    return run.save_checkpoint(tag, write, {"run_steps": 1})


def named_checkpoint(path: Path) -> str:
    """What the manifest on disk names: the checkpoint a resume or an eval would load."""
    name = json.loads((path / "manifest.json").read_text())["progress"]["checkpoint"]
    return (path / name / "model").read_text()


def crash_once(monkeypatch, owner, name, run_dir):
    """``owner.name`` ends the process there once, as a kill would (a KeyboardInterrupt); returns
    what the manifest on disk named at that moment, as a list filled by the crash."""
    original, seen = getattr(owner, name), []

    def crash(*args, **kwargs):
        monkeypatch.setattr(owner, name, original)
        seen.append(named_checkpoint(run_dir))
        raise KeyboardInterrupt

    monkeypatch.setattr(owner, name, crash)
    return seen


@pytest.mark.parametrize(
    "owner, name",
    [
        (dpd.rundir.os, "replace"),  # the new checkpoint complete, not yet renamed
        (RunDirectory, "write_manifest"),  # renamed, not yet named in the manifest
        (dpd.rundir.shutil, "rmtree"),  # named, the old one not yet removed
    ],
)
def test_a_repeated_tag_replaces_the_checkpoint_safely(tmp_path, monkeypatch, owner, name):
    """The final checkpoint at the step of a periodic one: a kill at any step of the switch
    leaves the manifest naming a complete checkpoint (the old or the new one)."""
    run = new_run(tmp_path / "run")
    checkpoint(run, "step_0000000008", "old")
    seen = crash_once(monkeypatch, owner, name, run.path)
    with pytest.raises(KeyboardInterrupt):
        checkpoint(run, "step_0000000008", "new")
    assert seen == ["old"] if name != "rmtree" else seen == ["new"]
    assert named_checkpoint(run.path) in ("old", "new")
    reopened = RunDirectory.open(run.path)
    checkpoint(reopened, "step_0000000008", "newer")  # a resumed run goes on
    assert named_checkpoint(run.path) == "newer"
    assert ["checkpoints/" + entry.name for entry in (run.path / "checkpoints").iterdir()] == [
        reopened.manifest["progress"]["checkpoint"]
    ]


def test_a_full_disk_keeps_the_previous_checkpoint(tmp_path):
    run = new_run(tmp_path / "run")
    checkpoint(run, "step_0000000004", "old")

    def full(directory: Path) -> None:
        directory.mkdir(parents=True)
        (directory / "part").write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(CheckpointError, match=r"cannot write checkpoint .*step_0000000008: \[Errno 28\] No space left"):
        run.save_checkpoint("step_0000000008", full, {"run_steps": 8})
    assert named_checkpoint(run.path) == "old" and run.manifest["progress"]["run_steps"] == 1
    assert [entry.name for entry in (run.path / "checkpoints").iterdir()] == ["step_0000000004"]


def test_a_writer_removes_what_a_killed_writer_left_beside_the_named_checkpoint(tmp_path, capsys):
    """A kill after the manifest named the final checkpoint, before the previous one was removed
    (found by benchmarks/kill_campaign.py), and a ``.tmp`` of a write in progress: the next writer,
    here a resume of the finished run, removes both; the named checkpoint stays and evaluates."""
    run_dir = tmp_path / "run"
    assert main(["train", *FAST, "--total-steps", "512", "--run-dir", str(run_dir)]) == 0
    named = Path(read_manifest(run_dir)["progress"]["checkpoint"]).name
    for left in ("step_0000000256", "step_0000000768.tmp"):
        (run_dir / "checkpoints" / left / "peer0").mkdir(parents=True)
    assert main(["train", "--resume", str(run_dir)]) == 0
    assert "already complete" in capsys.readouterr().out
    assert [entry.name for entry in (run_dir / "checkpoints").iterdir()] == [named]
    assert main(["eval", str(run_dir), "--episodes", "1"]) == 0


def test_the_manifest_is_read_again_once_the_lock_is_held(tmp_path):
    """A run opened while another process still wrote it: the checkpoint that process named last
    is the one the new writer sees, and keeps."""
    run = new_run(tmp_path / "run")
    checkpoint(run, "step_0000000004", "old")
    run.unlock()
    stale = RunDirectory.open(run.path)
    writer = RunDirectory.open(run.path)
    writer.lock()
    checkpoint(writer, "step_0000000008", "new")
    writer.unlock()
    stale.lock()
    try:
        assert stale.manifest["progress"]["checkpoint"] == "checkpoints/step_0000000008"
        assert named_checkpoint(run.path) == "new"
    finally:
        stale.unlock()


def test_final_checkpoint_at_the_step_of_a_periodic_one(tmp_path, capsys):
    """--total-steps a multiple of checkpoint_every: the final checkpoint's tag repeats."""
    run_dir = tmp_path / "run"
    args = ["train", *FAST, "--total-steps", "1024", "--set", "checkpoint_every=512", "--run-dir", str(run_dir)]
    assert main(args) == 0
    manifest = read_manifest(run_dir)
    assert manifest["progress"]["finished"] and manifest["progress"]["run_steps"] == 1024
    assert len(list((run_dir / "checkpoints").iterdir())) == 1
    assert main(["eval", str(run_dir), "--episodes", "1"]) == 0
    assert main(["train", "--resume", str(run_dir)]) == 0
    assert "already complete" in capsys.readouterr().out


def test_disk_full_during_a_checkpoint_ends_in_one_line(tmp_path, monkeypatch, capsys):
    from dpd.agents.learner import Learner

    run_dir = tmp_path / "run"
    original, calls = Learner.save, [0]

    def save(self, directory):
        calls[0] += 1
        if calls[0] > 2:  # the first checkpoint (two peers) is written, the next is not
            raise OSError(28, "No space left on device")
        original(self, directory)

    monkeypatch.setattr(Learner, "save", save)
    args = ["train", *FAST, "--total-steps", "1024", "--set", "checkpoint_every=512", "--run-dir", str(run_dir)]
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("dpd: error: cannot write checkpoint") and "[Errno 28] No space left on device" in err, err
    progress = read_manifest(run_dir)["progress"]
    assert progress["run_steps"] == 512 and (run_dir / progress["checkpoint"] / "peer0" / "model.zip").is_file()
    assert [entry.name for entry in (run_dir / "checkpoints").iterdir()] == ["step_0000000512"]  # no step_*.tmp
    assert not (run_dir / "lock").exists()
    monkeypatch.setattr(Learner, "save", original)
    assert resume(run_dir)["progress"]["finished"]


HOLD_LOCK = """
import sys, time
from pathlib import Path
from dpd.rundir import acquire_lock
acquire_lock(Path(sys.argv[1]))
print("locked", flush=True)
time.sleep(120)
"""


def test_a_run_has_one_writer(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["train", *FAST, "--total-steps", "512", "--set", "checkpoint_every=256", "--run-dir", str(run_dir)]) == 0
    assert not (run_dir / "lock").exists()  # given back at the end
    manifest_path = run_dir / "manifest.json"
    manifest_path.write_text(manifest_path.read_text().replace('"finished": true', '"finished": false'))
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        err = expect_cli_error(["train", "--resume", str(run_dir)], capsys)
        assert f"is in use by another dpd process (pid {holder.pid})" in err
        assert main(["eval", str(run_dir), "--episodes", "1"]) == 0  # a reader needs no lock
    finally:
        holder.kill()
        holder.wait()
    assert (run_dir / "lock").read_text().strip() == str(holder.pid)  # left by the killed process
    assert main(["train", "--resume", str(run_dir)]) == 0  # a stale lock is taken over
    assert read_manifest(run_dir)["progress"]["finished"] and not (run_dir / "lock").exists()


def test_a_lock_in_this_process_is_refused_too(tmp_path):
    run = new_run(tmp_path / "run")
    with pytest.raises(UserError, match=f"in use by another dpd process \\(pid {os.getpid()}\\)"):
        RunDirectory.open(run.path).lock()
    run.unlock()
    other = RunDirectory.open(run.path)
    other.lock()
    other.unlock()
