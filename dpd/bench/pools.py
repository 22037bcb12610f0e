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
    """At most ``workers`` runs at once; ``active`` maps a run's handle to the run."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.active: Dict[Any, BenchRun] = {}

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
    """Each run a Ray task (one CPU) running ``task(run, directory)``, on a local instance or the
    cluster at ``address``."""

    def __init__(self, workers: int, address: str, task: Callable[[BenchRun, Path], bool]) -> None:
        from dpd.agents.ray_backend import connect, import_ray

        super().__init__(workers)
        self.ray = import_ray()
        self._local_ray = connect(address, cpus_needed=1)
        self.task = self.ray.remote(num_cpus=1, max_retries=0)(task)

    def start(self, run: BenchRun, directory: Path) -> None:
        self.active[self.task.remote(run, directory)] = run

    def wait_finished(self) -> List[Tuple[BenchRun, str]]:
        ready, _ = self.ray.wait(list(self.active), num_returns=1)
        finished = []
        for reference in ready:
            run = self.active.pop(reference)
            try:
                self.ray.get(reference)
                detail = "the run left no result"
            except Exception as exc:  # the worker died: no error.txt was written
                detail = f"Ray task failed: {type(exc).__name__}"
            finished.append((run, detail))
        return finished

    def close(self) -> None:
        for reference in self.active:
            self.ray.cancel(reference, force=True)
        if self._local_ray is not None:
            self._local_ray.stop()
