"""Worker processes that end with the process that started them.

A worker (a ``dpd bench`` run, a ``--parallel`` peer, a local Ray instance's processes) that
outlives its parent trains on for nobody, holding a core, and writes to a terminal that is gone;
``die_with_parent`` ties a worker's life to its parent's, however the parent ends (SIGKILL
included), and a ``Reaper`` does the same for processes the parent does not start itself.
"""

import ctypes
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, Optional

PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent dies (Linux)


def die_with_parent(parent: int) -> None:
    """End this process when ``parent`` (the pid that started it) ends: on Linux the kernel sends
    it SIGTERM (``prctl(PR_SET_PDEATHSIG)``); elsewhere a thread watches for the parent's end."""
    try:
        libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
        watched = libc is not None and libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) == 0
    except (OSError, AttributeError):
        watched = False
    if os.getppid() != parent:  # it ended before we asked
        os._exit(1)
    if not watched:

        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(1.0)
            os._exit(1)

        threading.Thread(target=watch, name="dpd parent watch", daemon=True).start()


def start_time(pid: int) -> Optional[int]:
    """When ``pid`` started (clock ticks since boot, /proc), to tell it from a later process that
    reuses its number; None if it is gone or a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else int(fields[19])


def descendants(root: int) -> Dict[int, int]:
    """Every living descendant of ``root``, with its start time (Linux, /proc)."""
    parents: Dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found: Dict[int, int] = {}
    frontier = {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier and pid not in found}
        for pid in frontier:
            started = start_time(pid)
            if started is not None:
                found[pid] = started
    return found


class Reaper:
    """A watchdog process that kills what its owner started once the owner is killed.

    ``die_with_parent`` covers a process's own children, but not what they start in turn: a
    local Ray instance's agents are children of its raylet, and when the owner is killed they
    outlive it (by a minute or more, retrying to reach a GCS that died with the owner). The reaper
    notes the owner's descendants born after it every ``interval`` seconds; when the owner's end
    of its pipe closes without a ``stop`` (SIGKILL included), it kills every one of them that
    still runs (the same pid with the same start time). Linux only (it reads /proc)."""

    STOP = b"stop\n"

    def __init__(self, process: subprocess.Popen) -> None:
        self.process = process

    @classmethod
    def start(cls, interval: float = 0.5) -> Optional["Reaper"]:
        """A reaper for this process; None where /proc is missing (other systems)."""
        if not Path("/proc/self/stat").exists():
            return None
        command = [sys.executable, "-m", "dpd.processes", str(os.getpid()), str(interval)]
        return cls(subprocess.Popen(command, stdin=subprocess.PIPE, close_fds=True))

    def stop(self) -> None:
        """The owner ended what it started itself: the reaper leaves without killing anything."""
        try:
            if self.process.stdin is not None:
                self.process.stdin.write(self.STOP)
                self.process.stdin.close()
        except OSError:  # it is gone already
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def reap(owner: int, interval: float) -> None:
    """The reaper's loop (``Reaper``): watch ``owner`` through stdin, then kill what it left."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C reaches the owner, which stops us itself
    me = os.getpid()
    born = start_time(me) or 0  # the owner's older processes are not ours to end; its later ones are
    known: Dict[int, int] = {}
    while True:
        known.update((pid, started) for pid, started in descendants(owner).items() if started >= born and pid != me)
        ready, _, _ = select.select([sys.stdin.buffer], [], [], interval)
        if ready:
            line = sys.stdin.buffer.readline()
            if line == Reaper.STOP:
                return
            if not line:  # the owner's end closed without a stop: it is dead
                break
    for pid, started in known.items():
        if start_time(pid) == started:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


if __name__ == "__main__":
    reap(int(sys.argv[1]), float(sys.argv[2]))
