"""The kill -9 campaign: kill a short 2-peer run at seeded moments, resume it, check the result.

    nice -n 10 python benchmarks/kill_campaign.py            # 20 cases, seed 0 (Linux: /proc)
    nice -n 10 python benchmarks/kill_campaign.py --algo sac --set share=on --set guide=best \
        --total-steps 8000 --checkpoint-every 2000           # off-policy peers sharing one stream

Each case starts ``dpd train`` on the tiny env (2 peers, PPO unless ``--algo`` says otherwise,
sequential or ``--parallel``, with the ``--set`` overrides),
kills a process with SIGKILL at its moment, then runs ``dpd train --resume RUN_DIR`` and
``dpd eval RUN_DIR``. A case passes when the resumed run reaches exactly its budget (the manifest
says finished, at ``--total-steps``, each learner at its share) and the final checkpoint's models
load and evaluate (every learner at its share of the steps, a finite return). For off-policy
peers the final checkpoint's replay buffers must hold what the budget put there, no transition
lost or doubled by the kill: each peer its share, or with ``share=on`` every transition of the
run, the same ones in every peer.

The moments (a seeded, reproducible list, printed before the first case) are of three kinds:

- ``time``: a fraction of an uninterrupted run of the same mode (timed first), counted from the
  moment the run's manifest exists (before it, there is no run to resume);
- ``write``: the j-th checkpoint write (the last j is the final checkpoint, whose tag repeats the
  last periodic one), at its ``start`` (its ``step_*.tmp`` directory appears) or in its
  ``middle`` (the second learner's directory appears in it);
- ``rename``: as soon as the j-th ``.tmp`` directory has been renamed, that is between the rename
  and the manifest's update or the previous checkpoint's removal.

The victim is the ``dpd`` parent, or with ``--parallel`` sometimes one peer process (the parent
then checkpoints the other peer and exits 1). After a parent's death no process it started may
outlive it (column ``orphans``). Failed cases keep their run directory for inspection.
"""

import argparse
import ctypes
import json
import math
import os
import pickle
import random
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Set, Tuple

import numpy as np
import yaml

TINY_ENV = "DpdPointReach-v0"
PEERS = 2


@dataclass(frozen=True)
class Moment:
    """When to kill, and whom: ``kind`` is time, write or rename; ``fraction`` (time) of the
    uninterrupted run; ``checkpoint`` (write, rename) the j-th checkpoint write, at its ``stage``
    (write: start or middle)."""

    kind: str
    victim: str  # parent or peer
    fraction: float = 0.0
    checkpoint: int = 0
    stage: str = ""

    def describe(self, checkpoints: int) -> str:
        if self.kind == "time":
            return f"time {self.fraction:.2f}"
        where = f"ckpt {self.checkpoint}/{checkpoints}"
        return f"{where} write {self.stage}" if self.kind == "write" else f"{where} rename"


@dataclass(frozen=True)
class Case:
    number: int
    parallel: bool
    moment: Moment

    @property
    def mode(self) -> str:
        return "parallel" if self.parallel else "sequential"


def plan(seed: int, checkpoints: int) -> List[Case]:
    """Twenty cases, half ``--parallel``; some kills land in checkpoint writes, some on a peer.
    The list depends only on ``seed`` and the number of checkpoint writes."""
    rng = random.Random(seed)

    def timed(victim: str) -> Moment:
        return Moment("time", victim, fraction=round(rng.uniform(0.02, 0.95), 2))

    def writing(victim: str) -> Moment:
        return Moment("write", victim, checkpoint=rng.randint(1, checkpoints), stage=rng.choice(["start", "middle"]))

    def renamed() -> Moment:
        return Moment("rename", "parent", checkpoint=rng.randint(1, checkpoints))

    sequential = [timed("parent") for _ in range(6)] + [writing("parent") for _ in range(2)] + [renamed() for _ in range(2)]
    parallel = (
        [timed("parent") for _ in range(3)]
        + [writing("parent") for _ in range(2)]
        + [renamed()]
        + [timed("peer") for _ in range(2)]
        + [writing("peer") for _ in range(2)]
    )
    rng.shuffle(sequential)
    rng.shuffle(parallel)
    cases = []
    for index in range(10):
        cases.append(Case(len(cases) + 1, False, sequential[index]))
        cases.append(Case(len(cases) + 1, True, parallel[index]))
    return cases


class DirectoryEvents:
    """Names created in, or renamed into, watched directories: Linux's inotify through ctypes.
    Polling misses a checkpoint's ``.tmp`` directory that lives a few milliseconds on a busy
    machine; the kernel queues every event for us instead."""

    RENAMED_IN = 0x80  # IN_MOVED_TO
    CREATED = 0x100  # IN_CREATE
    HEADER = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len; then the name

    def __init__(self) -> None:
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        self.watches: Dict[int, Path] = {}

    def __enter__(self) -> "DirectoryEvents":
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)

    def watch(self, directory: Path) -> None:
        handle = self.libc.inotify_add_watch(self.fd, os.fsencode(directory), self.CREATED | self.RENAMED_IN)
        if handle < 0:
            raise OSError(ctypes.get_errno(), f"cannot watch {directory}")
        self.watches[handle] = directory

    def read(self, timeout: float) -> List[Tuple[Optional[Path], str, int]]:
        """The events of up to ``timeout`` seconds: (directory, name, mask)."""
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return []
        data = os.read(self.fd, 1 << 16)
        found, offset = [], 0
        while offset < len(data):
            handle, mask, _, length = self.HEADER.unpack_from(data, offset)
            start = offset + self.HEADER.size
            found.append((self.watches.get(handle), data[start : start + length].rstrip(b"\0").decode(), mask))
            offset = start + length
        return found


class ProcessTable:
    """The living processes, read from /proc: who is whose child, and their command lines."""

    @staticmethod
    def parents() -> Dict[int, int]:
        table = {}
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                try:
                    stat = Path(entry.path, "stat").read_text()
                except OSError:
                    continue
                table[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        return table

    @classmethod
    def descendants(cls, root: int) -> List[int]:
        parents = cls.parents()
        found, frontier = [], [root]
        while frontier:
            children = [pid for pid, parent in parents.items() if parent in frontier]
            found.extend(children)
            frontier = children
        return sorted(found)

    @staticmethod
    def command(pid: int) -> str:
        try:
            return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            return ""

    @staticmethod
    def alive(pid: int) -> bool:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return False
        return state != "Z"


@dataclass
class Outcome:
    case: Case
    killed: str = ""
    killed_exit: Optional[int] = None
    at_kill: str = ""  # the checkpoints directory just after the kill
    orphans: int = 0
    resume_exit: Optional[int] = None
    to_budget: bool = False
    loads: bool = False
    notes: List[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def faults(self) -> List[str]:
        """The notes that report something wrong (a retry is not)."""
        return [note for note in self.notes if not note.startswith("retried")]


class Campaign:
    """Runs the cases one after another in ``work_dir``; one job: start, kill, resume, check."""

    ATTEMPTS = 3  # a time moment can come after the end of a run on a machine that sped up

    def __init__(
        self,
        work_dir: Path,
        total_steps: int,
        checkpoint_every: int,
        seed: int,
        algo: str = "ppo",
        overrides: Sequence[str] = (),
    ) -> None:
        self.work_dir = work_dir
        self.total_steps = total_steps
        self.checkpoint_every = checkpoint_every
        self.seed = seed
        self.algo = algo
        self.overrides = tuple(overrides)  # "key=value" config overrides of every run
        self.durations: Dict[bool, float] = {}

    @property
    def checkpoints(self) -> int:
        """Checkpoint writes of an uninterrupted run: the periodic ones and the final one."""
        return self.total_steps // self.checkpoint_every + 1

    def dpd(self, *args: str) -> List[str]:
        return [sys.executable, "-m", "dpd", *args]

    def train_command(self, run_dir: Path, parallel: bool) -> List[str]:
        command = self.dpd(
            "train",
            "--algo",
            self.algo,
            "--env",
            TINY_ENV,
            "--peers",
            str(PEERS),
            "--total-steps",
            str(self.total_steps),
            "--seed",
            str(self.seed),
            "--no-progress",
            "--run-dir",
            str(run_dir),
            "--set",
            f"checkpoint_every={self.checkpoint_every}",
            "--set",
            "eval.every=0",
            "--set",
            "eval.final_episodes=2",
            *(argument for override in self.overrides for argument in ("--set", override)),
        )
        return command + (["--parallel"] if parallel else [])

    def start(self, run_dir: Path, parallel: bool, log: Path) -> subprocess.Popen:
        with open(log, "w") as handle:
            return subprocess.Popen(self.train_command(run_dir, parallel), stdout=handle, stderr=subprocess.STDOUT)

    @staticmethod
    def wait_for_manifest(process: subprocess.Popen, run_dir: Path, timeout: float = 300.0) -> Optional[float]:
        """The moment the run exists (its manifest is written), or None if the process ended first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (run_dir / "manifest.json").exists():
                return time.monotonic()
            if process.poll() is not None:
                return None
            time.sleep(0.01)
        return None

    def calibrate(self, parallel: bool) -> float:
        """Seconds from the manifest's appearance to the end of an uninterrupted run."""
        run_dir = self.work_dir / f"calibrate-{'parallel' if parallel else 'sequential'}"
        process = self.start(run_dir, parallel, self.work_dir / f"{run_dir.name}.log")
        born = self.wait_for_manifest(process, run_dir)
        if born is not None:
            with DirectoryEvents() as events:
                writes = sum(kind == "write" for kind, _ in checkpoint_events(process, run_dir, events))
        code = process.wait()
        if born is None or code != 0:
            raise SystemExit(f"the uninterrupted {run_dir.name} run failed (exit {code}); see {run_dir}.log")
        duration = time.monotonic() - born
        if writes != self.checkpoints:  # checkpoints come between rounds, so checkpoint_every below a round's steps is moot
            raise SystemExit(
                f"the uninterrupted {run_dir.name} run wrote {writes} checkpoints, not {self.checkpoints}: choose a "
                f"--checkpoint-every that is a multiple of a round's env steps"
            )
        self.durations[parallel] = duration
        shutil.rmtree(run_dir, ignore_errors=True)
        return duration

    @staticmethod
    def peer_pids(tree: Sequence[int]) -> List[int]:
        """The peer processes of a ``--parallel`` run's process tree (spawned workers, not the
        resource tracker)."""
        return [pid for pid in tree if "spawn_main" in ProcessTable.command(pid)]

    def trigger(self, process: subprocess.Popen, run_dir: Path, born: float, case: Case) -> bool:
        """Wait for the case's moment; False if the run ended before it came."""
        moment = case.moment
        if moment.kind == "time":
            deadline = born + moment.fraction * self.durations[case.parallel]
            while time.monotonic() < deadline:
                if process.poll() is not None:
                    return False
                time.sleep(min(0.01, max(0.0, deadline - time.monotonic())))
            return process.poll() is None
        with DirectoryEvents() as events:
            return self.checkpoint_trigger(process, run_dir, moment, events)

    @staticmethod
    def checkpoint_trigger(process: subprocess.Popen, run_dir: Path, moment: Moment, events: "DirectoryEvents") -> bool:
        """Wait for the j-th checkpoint write's start, middle or rename."""
        writes, target = 0, ""
        middle = f"peer{PEERS - 1}"  # the last learner's directory: the others are (being) written
        for kind, name in checkpoint_events(process, run_dir, events):
            if kind == "write" and not target:
                writes += 1
                if writes == moment.checkpoint:
                    target = name[: -len(".tmp")]
                    if moment.kind == "write" and moment.stage == "start":
                        break
                    if moment.kind == "write":
                        try:
                            events.watch(run_dir / "checkpoints" / name)
                        except OSError:  # renamed already: kill as soon as we can
                            break
                        if (run_dir / "checkpoints" / name / middle).exists():
                            break
            elif kind == "inside" and target and moment.kind == "write" and name == f"{target}.tmp/{middle}":
                break
            elif kind == "rename" and target and name.startswith(target):
                break  # rename: the manifest and the previous checkpoint's removal come next
        else:
            return False
        return process.poll() is None

    def run_case(self, case: Case) -> Outcome:
        outcome = Outcome(case)
        started = time.monotonic()
        case_dir = self.work_dir / f"case{case.number:02d}"
        case_dir.mkdir()
        run_dir = case_dir / "run"
        rng = random.Random(self.seed * 1000 + case.number)  # which peer, where there is a choice
        for attempt in range(1, self.ATTEMPTS + 1):
            process = self.start(run_dir, case.parallel, case_dir / "train.log")
            born = self.wait_for_manifest(process, run_dir)
            # Read /proc now (peers start before the manifest is written), not between the moment
            # and the kill: a scan of /proc takes longer than a checkpoint write on a busy machine.
            tree = ProcessTable.descendants(process.pid)
            peers = self.peer_pids(tree)
            if born is not None and self.trigger(process, run_dir, born, case):
                break
            outcome.killed_exit = process.wait()
            if born is None or attempt == self.ATTEMPTS:
                outcome.killed = "missed: the run ended first"
                break
            # The machine ran faster than when it was timed: time it again by this run, start over.
            self.durations[case.parallel] = time.monotonic() - born
            outcome.notes.append(f"retried: the run ended before the moment (in {self.durations[case.parallel]:.1f} s)")
            shutil.rmtree(run_dir)
        if not outcome.killed:
            victim = process.pid
            if case.moment.victim == "peer":
                victim = peers[rng.randrange(len(peers))] if peers else process.pid
                outcome.killed = f"peer pid {victim}" if peers else "parent (no peer found)"
            else:
                outcome.killed = "parent"
            os.kill(victim, signal.SIGKILL)
            outcome.at_kill = checkpoint_listing(run_dir / "checkpoints")
            try:
                outcome.killed_exit = process.wait(timeout=180)
            except subprocess.TimeoutExpired:
                outcome.notes.append("the killed run hung")
                process.kill()
                outcome.killed_exit = process.wait()
            if victim == process.pid:
                deadline = time.monotonic() + 10.0
                while time.monotonic() < deadline and any(ProcessTable.alive(pid) for pid in tree):
                    time.sleep(0.1)
                outcome.orphans = sum(ProcessTable.alive(pid) for pid in tree)
        self.resume_and_check(run_dir, case, outcome)
        outcome.seconds = time.monotonic() - started
        if outcome.to_budget and outcome.loads and not outcome.orphans and not outcome.faults:
            shutil.rmtree(case_dir, ignore_errors=True)
        return outcome

    def resume_and_check(self, run_dir: Path, case: Case, outcome: Outcome) -> None:
        command = self.dpd("train", "--resume", str(run_dir), "--no-progress") + (["--parallel"] if case.parallel else [])
        resumed = subprocess.run(command, capture_output=True, text=True, timeout=900)
        (run_dir.parent / "resume.log").write_text(resumed.stdout + resumed.stderr)
        outcome.resume_exit = resumed.returncode
        if resumed.returncode != 0:
            outcome.notes.append(f"resume: {last_line(resumed.stderr or resumed.stdout)}")
            return
        share = self.total_steps // PEERS
        progress = json.loads((run_dir / "manifest.json").read_text())["progress"]
        steps = [entry["num_timesteps"] for entry in progress.get("learners", {}).values()]
        outcome.to_budget = bool(progress.get("finished")) and progress.get("run_steps") == self.total_steps
        outcome.to_budget = outcome.to_budget and steps == [share] * PEERS
        left = sorted(entry.name for entry in (run_dir / "checkpoints").iterdir())
        if left != [Path(progress["checkpoint"]).name]:
            outcome.notes.append(f"checkpoints left: {', '.join(left)}")
        evaluated = subprocess.run(
            self.dpd("eval", "--json", "--episodes", "1", str(run_dir)), capture_output=True, text=True, timeout=300
        )
        if evaluated.returncode != 0:
            outcome.notes.append(f"eval: {last_line(evaluated.stderr or evaluated.stdout)}")
            return
        rows = json.loads(evaluated.stdout)
        outcome.loads = len(rows) == PEERS and all(
            row["env_steps"] == share and math.isfinite(row["mean_return"]) for row in rows
        )
        shared = bool(yaml.safe_load((run_dir / "config.yaml").read_text())["share"]["enabled"])
        expected = self.total_steps if shared else share
        outcome.notes.extend(replay_buffer_faults(run_dir / progress["checkpoint"], expected, shared))


def replay_buffer_faults(checkpoint: Path, expected: int, shared: bool) -> List[str]:
    """What is wrong with the off-policy learners' replay buffers of a final checkpoint (none for
    on-policy learners): each must hold ``expected`` distinct transitions, and with sharing the
    same ones. A transition is its observation, action and reward row; the tiny env's continuous
    states make two equal rows a doubled transition, not a coincidence."""
    faults, contents = [], []
    for path in sorted(checkpoint.glob("*/replay_buffer.pkl")):
        with open(path, "rb") as handle:
            buffer = pickle.load(handle)
        stored = buffer.buffer_size if buffer.full else buffer.pos
        rows = np.concatenate([buffer.observations[:stored, 0], buffer.actions[:stored, 0], buffer.rewards[:stored]], axis=1)
        contents.append({row.tobytes() for row in rows})
        if stored != expected or len(contents[-1]) != stored:
            faults.append(f"{path.parent.name}'s buffer: {stored} transitions, {len(contents[-1])} distinct, not {expected}")
    if shared and contents and any(content != contents[0] for content in contents):
        faults.append("the peers' buffers hold different transitions")
    return faults


def checkpoint_events(process: subprocess.Popen, run_dir: Path, events: DirectoryEvents) -> Iterator[Tuple[str, str]]:
    """A run's checkpoint writes as they happen, until it ends: ("write", "step_N.tmp") when a
    write starts, ("rename", "step_N") when it is renamed into place, and ("inside",
    "step_N.tmp/NAME") for what is made in a ``.tmp`` directory the caller watches too."""
    root = run_dir / "checkpoints"
    events.watch(run_dir)
    listed: Set[str] = set()  # .tmp directories made before we watched the checkpoints directory

    def watch_root() -> List[str]:
        events.watch(root)
        listed.update(name for name in os.listdir(root) if name.endswith(".tmp"))
        return sorted(listed)

    if root.exists():
        yield from (("write", name) for name in watch_root())
    while process.poll() is None:
        for directory, name, mask in events.read(0.05):
            if directory == run_dir and name == root.name and root not in events.watches.values():
                yield from (("write", listed_name) for listed_name in watch_root())
            elif directory == root and mask & DirectoryEvents.CREATED and name.endswith(".tmp"):
                if name in listed:
                    listed.discard(name)  # yielded from the listing already
                else:
                    yield "write", name
            elif directory == root and mask & DirectoryEvents.RENAMED_IN:
                yield "rename", name
            elif directory is not None and directory.parent == root and mask & DirectoryEvents.CREATED:
                yield "inside", f"{directory.name}/{name}"


def checkpoint_listing(root: Path) -> str:
    """The checkpoint directories, by step (``5120.tmp``: a write in progress; two steps: a new
    checkpoint renamed and its predecessor not yet removed)."""
    try:
        names = sorted(os.listdir(root))
    except FileNotFoundError:
        return "none yet"
    return " ".join(name.replace("step_", "").lstrip("0") for name in names) or "none yet"


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:160] if lines else "(no output)"


def yes(flag: bool) -> str:
    return "yes" if flag else "no"


def print_table(outcomes: Sequence[Outcome], checkpoints: int) -> None:
    print(
        "| case | mode | moment | killed | checkpoints at the kill | killed run's exit | orphans | resumed to budget | "
        "models load | s | notes |"
    )
    print("|---:|---|---|---|---|---:|---:|---|---|---:|---|")
    for outcome in outcomes:
        case = outcome.case
        print(
            f"| {case.number} | {case.mode} | {case.moment.describe(checkpoints)} | {outcome.killed} | {outcome.at_kill} | "
            f"{outcome.killed_exit} | {outcome.orphans} | {yes(outcome.to_budget)} | {yes(outcome.loads)} | "
            f"{outcome.seconds:.0f} | {'; '.join(outcome.notes)} |"
        )


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="seeds the moments and the runs (default 0)")
    parser.add_argument("--total-steps", type=int, default=8192, help="each run's budget, both peers (default 8192)")
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        default=2048,
        help="run env steps between checkpoints, a multiple of a round's (2 peers x their turn steps: PPO's 1024 here, "
        "off-policy 1000; default 2048)",
    )
    parser.add_argument("--algo", default="ppo", help="the peers' SB3 algorithm (default ppo), e.g. sac")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override of every run, as dpd train takes it, e.g. share=on (repeatable)",
    )
    parser.add_argument("--only", default="", help="run only these of the 20 planned cases, e.g. 3,5 (default: all)")
    parser.add_argument("--work-dir", type=Path, default=None, help="where the runs go (default: a new temporary directory)")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if not Path("/proc/self/stat").exists():
        raise SystemExit("the kill campaign reads /proc (Linux)")
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="dpd-kill-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    campaign = Campaign(work_dir, args.total_steps, args.checkpoint_every, args.seed, args.algo, args.overrides)
    cases = plan(args.seed, campaign.checkpoints)
    if args.only:
        chosen = {int(number) for number in args.only.split(",")}
        cases = [case for case in cases if case.number in chosen]
    started = time.monotonic()
    print(
        f"{TINY_ENV}, {PEERS} {args.algo.upper()} peers{''.join(' --set ' + o for o in args.overrides)}, "
        f"{args.total_steps} env steps, a checkpoint every {args.checkpoint_every}; seed {args.seed}"
    )
    print(
        "moments: "
        + ", ".join(f"{case.number}:{case.mode[:3]}:{case.moment.describe(campaign.checkpoints)}" for case in cases)
    )
    for parallel in (False, True):
        seconds = campaign.calibrate(parallel)
        print(f"uninterrupted {'--parallel' if parallel else 'sequential'} run: {seconds:.1f} s after its manifest appears")
    outcomes: List[Outcome] = []
    for case in cases:
        outcome = campaign.run_case(case)
        outcomes.append(outcome)
        print(
            f"case {case.number:2d} {case.mode:10s} {case.moment.describe(campaign.checkpoints):22s} killed {outcome.killed} "
            f"(checkpoints: {outcome.at_kill}): "
            f"resumed to budget {yes(outcome.to_budget)}, models load {yes(outcome.loads)} {'; '.join(outcome.notes)}",
            flush=True,
        )
    print()
    print_table(outcomes, campaign.checkpoints)
    kills = [outcome for outcome in outcomes if not outcome.killed.startswith("missed")]
    resumed = sum(outcome.to_budget for outcome in kills)  # a run the kill missed proves nothing
    print()
    print(
        f"{resumed}/{len(outcomes)} resumed to the budget; {sum(o.loads for o in kills)}/{len(outcomes)} final models "
        f"load and evaluate; {len(kills)}/{len(outcomes)} kills landed before the run ended; "
        f"{sum(o.orphans for o in outcomes)} orphaned processes; "
        f"{sum(bool(o.faults) for o in outcomes)} cases with faults noted; "
        f"{time.monotonic() - started:.0f} s in all"
    )
    if args.work_dir is None and all(outcome.to_budget and outcome.loads and not outcome.faults for outcome in outcomes):
        shutil.rmtree(work_dir, ignore_errors=True)
    else:
        print(f"runs kept in {work_dir}")
    return 0 if resumed == len(outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
