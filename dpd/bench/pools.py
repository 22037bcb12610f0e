"""Where a grid's runs execute: at most ``workers`` at once, each in a fresh process (``ProcessPool``)
or a Ray task (``RayPool``); a pool starts runs and says which have finished."""

import multiprocessing
import os
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

from dpd.bench.grid import BenchRun
from dpd.processes import die_with_parent


class RunPool:
    """At most ``workers`` runs at once; ``active`` maps a run's handle to the run; ``retried``
    lists the runs started again since the caller last emptied it (a run lost with its node)."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.active: Dict[Any, BenchRun] = {}
        self.retried: List[BenchRun] = []

    @property
    def busy(self) -> bool:
        return bool(self.active)

    @property
    def has_room(self) -> bool:
        return len(self.active) < self.workers


def _worker(target: Callable[[BenchRun, Path], None], run: BenchRun, directory: Path, parent: int) -> None:
    """A pool worker: tied to the sweep's life, then ``target(run, directory)``."""
    die_with_parent(parent)
    target(run, directory)


class ProcessPool(RunPool):
    """Each run in a fresh process (a crash takes one run only)."""

    def __init__(self, workers: int, target: Callable[[BenchRun, Path], None]) -> None:
        super().__init__(workers)
        self.target = target
        self.context = multiprocessing.get_context("spawn")

    def start(self, run: BenchRun, directory: Path) -> None:
        process = self.context.Process(
            target=_worker, args=(self.target, run, directory, os.getpid()), name=f"dpd-bench {run.key}"
        )
        process.start()
        self.active[process] = run

    def wait_finished(self) -> List[Tuple[BenchRun, str]]:
        finished = []
        for sentinel in wait([process.sentinel for process in self.active]):
            process = next(p for p in self.active if p.sentinel == sentinel)
            process.join()
            finished.append((self.active.pop(process), f"worker exited with code {process.exitcode}"))
        return finished

    def close(self) -> None:
        for process in self.active:
            process.terminate()
        for process in self.active:
            process.join()


class RayPool(RunPool):
    """Each run a Ray task (one CPU) running ``task(run, directory)`` on some node of a local
    instance or of the cluster at ``address``, in a scratch directory there; the run's files come
    back through Ray's object store at each checkpoint and at its end, and are written under the
    driver's ``directory`` (``dpd.bench.remote``). A run lost with its node starts again on
    another node from its last checkpoint, at most ``NODE_LOSSES`` times; a run that failed is
    not retried."""

    NODE_LOSSES = 3

    def __init__(self, workers: int, address: str, task: Callable[[BenchRun, Path], bool]) -> None:
        from dpd.agents.ray_backend import connect, import_ray
        from dpd.agents.ray_cluster import code_versions
        from dpd.bench.remote import run_on_node

        super().__init__(workers)
        self.ray = import_ray()
        self._local_ray = connect(address, cpus_needed=1)
        self.versions = code_versions()
        self.task = task
        self.remote = self.ray.remote(num_cpus=1, max_retries=0)(run_on_node)
        self.directories: Dict[str, Path] = {}
        self.losses: Dict[str, int] = {}  # run key -> times it was lost with its node

    def start(self, run: BenchRun, directory: Path) -> None:
        """The run as a task that starts from what ``directory`` holds (a checkpoint, or nothing)."""
        from dpd.filetree import FileTree

        self.directories[run.key] = directory
        self.active[self.remote.remote(self.task, run, FileTree.read(directory), self.versions)] = run

    def wait_finished(self) -> List[Tuple[BenchRun, str]]:
        """Write what the first ready runs sent; those that ended, each with what to say of it
        if it left no result."""
        ready, _ = self.ray.wait(list(self.active), num_returns=1)
        finished = []
        for stream in ready:
            run = self.active[stream]
            try:
                files = self.ray.get(next(stream))
            except StopIteration:
                del self.active[stream]
                finished.append((run, "the run left no result"))
                continue
            except (self.ray.exceptions.NodeDiedError, self.ray.exceptions.ObjectLostError) as exc:
                del self.active[stream]
                self.losses[run.key] = self.losses.get(run.key, 0) + 1
                if self.losses[run.key] > self.NODE_LOSSES:
                    finished.append((run, f"lost with its node {self.losses[run.key]} times ({type(exc).__name__})"))
                else:
                    self.retried.append(run)
                    self.start(run, self.directories[run.key])  # from the last checkpoint it sent
                continue
            except Exception as exc:  # the worker died, or the node refused the run: no error.txt
                from dpd.agents.peer import first_line

                del self.active[stream]
                cause = getattr(exc, "cause", None) or exc
                finished.append((run, f"Ray task failed: {type(cause).__name__}: {first_line(cause)}"))
                continue
            files.write(self.directories[run.key])
        return finished

    def close(self) -> None:
        for stream in self.active:
            self.ray.cancel(stream, force=True)
        if self._local_ray is not None:
            self._local_ray.stop()
