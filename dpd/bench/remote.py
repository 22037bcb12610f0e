"""A benchmark run as a Ray task on any node of a cluster, its files sent to the driver.

The task works in a scratch directory of its node and sends the run's files through Ray's object
store, as a stream of ``FileTree`` changes: one at each checkpoint (the run's manifest, the
checkpoint it names, the TensorBoard events so far) and one when the run ends (its result row or
error, its models and curves). The driver writes each under ``--out`` as it comes, so ``--out``
holds the run's last checkpoint, wherever the run trains, and a run lost with its node starts
again on another from there: the driver sends what ``--out`` holds with the new task. Nodes need
no shared file system, and nothing stays on a node (docs/CLUSTER.md says why this design).
"""

import queue
import tempfile
import threading
from pathlib import Path
from typing import Callable, Dict, Iterator, Union

from dpd.agents.ray_cluster import refuse_other_code
from dpd.bench.grid import BenchRun
from dpd.filetree import FileTree, Mirror
from dpd.rundir import watch_checkpoints

Task = Callable[[BenchRun, Path], bool]  # runs and records one run in a directory (``execute_and_record``)


class _Ended:
    """The run's thread has returned."""


def run_on_node(task: Task, run: BenchRun, files: FileTree, expected: Dict[str, str]) -> Iterator[FileTree]:
    """The Ray task (a generator): ``task(run, scratch)`` in a scratch directory that first holds
    ``files`` (what a killed or lost attempt left: its checkpoint, to continue from), yielding the
    directory's changes at each checkpoint and at the end. Refuses a node whose code is not the
    driver's (``expected``)."""
    import ray

    refuse_other_code(ray, expected)
    with tempfile.TemporaryDirectory(prefix="dpd-bench-") as scratch:
        directory = Path(scratch)
        files.write(directory)
        mirror = Mirror(directory)
        mirror.known()
        updates: queue.Queue[Union[FileTree, _Ended]] = queue.Queue()

        def train() -> None:
            try:
                task(run, directory)
            finally:
                updates.put(_Ended())

        # The checkpoint's files are read in the training thread, the moment they are consistent.
        with watch_checkpoints(lambda checkpoint: updates.put(mirror.changes())):
            thread = threading.Thread(target=train, name=f"dpd-bench {run.key}", daemon=True)
            thread.start()
            while not isinstance(update := updates.get(), _Ended):
                yield update
            thread.join()
        yield mirror.changes()
