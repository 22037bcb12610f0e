"""The run directory: a manifest, TensorBoard event directories and atomic checkpoints.

Layout::

    RUN_DIR/manifest.json           resolved config, learners, versions, progress
    RUN_DIR/config.yaml             the resolved config, every default written out
                                    (``dpd train --config`` reproduces the run)
    RUN_DIR/tb/<learner>/           one TensorBoard event directory per learner
    RUN_DIR/checkpoints/<tag>/      the latest complete checkpoint, named in the manifest
    RUN_DIR/lock                    while a process writes the run: its pid (``RunDirectory.lock``)

A checkpoint is written to ``<tag>.tmp``, renamed when complete to a name no other checkpoint
holds, and only then named in the manifest (itself replaced atomically); older checkpoints are
removed last. So at every moment the manifest names a complete checkpoint, and a kill or a full
disk at any moment leaves the previous checkpoint usable.
"""

import contextlib
import errno
import fcntl
import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, NamedTuple, Optional

import yaml

from dpd.errors import UserError, unknown_choice

MANIFEST = "manifest.json"
LOCK = "lock"

# Called with each checkpoint this process completes (``watch_checkpoints``).
_CHECKPOINT_WATCHERS: List[Callable[[Path], None]] = []


@contextlib.contextmanager
def watch_checkpoints(watcher: Callable[[Path], None]) -> Iterator[None]:
    """Inside the block, ``watcher(checkpoint)`` runs in the writing thread right after every
    checkpoint of this process is complete and named in its manifest (the previous one removed),
    and after any other file a run continues from (``announce_consistent``):
    the moment a run's files are consistent, when a benchmark run on a Ray node sends them to
    the driver (``dpd.bench.remote``)."""
    _CHECKPOINT_WATCHERS.append(watcher)
    try:
        yield
    finally:
        _CHECKPOINT_WATCHERS.remove(watcher)


def announce_consistent(path: Path) -> None:
    """Tell the watchers (``watch_checkpoints``) that ``path`` is complete: a checkpoint, or
    another file a run continues from (a finished group's summary in ``dpd-distilled``)."""
    for watcher in list(_CHECKPOINT_WATCHERS):
        watcher(path)


class CheckpointError(RuntimeError):
    """A checkpoint could not be written (a full disk, a directory that became unwritable); the
    manifest still names the previous checkpoint. Not a user error: the command line reports it
    in one line and exits 1."""


def atomic_write_text(path: Path, text: str) -> None:
    """Write a file so that readers see the old or the new content, never a part; a failed write
    leaves no temporary file behind."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _lock_holder(fd: int) -> str:
    """The pid the lock file holds, as written by its holder ('unknown' while it writes it)."""
    try:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    except OSError:
        text = ""
    return text if text.isdigit() else "unknown"


def acquire_lock(directory: Path) -> int:
    """Lock ``directory`` for this process: ``directory/lock``, holding our pid, under an
    exclusive ``flock``. Returns the lock's file descriptor (``release_lock`` gives it back).

    The kernel drops a ``flock`` when its holder dies, so a lock file left by a killed process
    is simply taken over; a lock held by a living process is a ``UserError`` naming its pid.
    The holder unlinks the file on release, so after locking we check that the file we locked is
    still the one at the path (else another process has since made a new one: try again)."""
    path = directory / LOCK
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise UserError(f"cannot lock run dir {directory}: {exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _lock_holder(fd)
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise UserError(f"cannot lock run dir {directory}: {exc}") from None
            raise UserError(
                f"run dir {directory} is in use by another dpd process (pid {holder}); wait for it to end or stop it"
            ) from None
        try:
            current = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            current = False
        if current:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def release_lock(directory: Path, fd: int) -> None:
    """Give back a lock taken by ``acquire_lock``: unlink the file while still holding it."""
    try:
        (directory / LOCK).unlink(missing_ok=True)
    except OSError:  # an unwritable directory: the kernel still drops the lock below
        pass
    os.close(fd)


class RunDirectory:
    """One training run on disk."""

    def __init__(self, path: Path, manifest: Dict[str, Any]) -> None:
        self.path = path
        self.manifest = manifest
        self._lock_fd: Optional[int] = None

    @classmethod
    def create(cls, path: Path, manifest: Dict[str, Any], config: Optional[Mapping[str, Any]] = None) -> "RunDirectory":
        """A new run; refuses a directory that already holds anything. ``config``: what
        ``config.yaml`` holds, the config with its defaults resolved (``manifest["config"]``
        where not given). The new run is locked (``lock``). A directory that cannot be made (under
        a file, on a read-only filesystem) is a user error, and what was made is removed."""
        path = Path(path)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            if (path / MANIFEST).is_file():
                raise UserError(
                    f"run dir {path} already holds a run; continue it with --resume {path} or choose another --run-dir"
                )
            raise UserError(f"run dir {path} exists and is not empty; choose another --run-dir")
        made = make_directory(path, "run dir")
        run = cls(path, manifest)
        try:
            run.lock()
            atomic_write_text(
                path / "config.yaml", yaml.safe_dump(dict(manifest["config"] if config is None else config), sort_keys=False)
            )
            run.write_manifest()
        except OSError as exc:
            run.unlock()
            if made is not None:
                shutil.rmtree(made, ignore_errors=True)
            raise UserError(f"cannot write run dir {path}: {exc}") from None
        except BaseException:
            run.unlock()
            raise
        return run

    def lock(self) -> None:
        """Make this process the run's one writer until ``unlock`` (or its exit): a second
        ``dpd train --resume`` of a run in progress is refused, naming the holder's pid.

        The manifest is read again once the lock is held (the previous writer may have replaced
        it since ``open``), and what a killed writer left in ``checkpoints/`` beside the checkpoint
        it names is removed: a ``.tmp`` directory, or the previous checkpoint when the kill came
        after the manifest named the new one (``save_checkpoint`` removes it last, and a finished
        run saves no other checkpoint that would)."""
        if self._lock_fd is not None:
            return
        self._lock_fd = acquire_lock(self.path)
        try:
            if (self.path / MANIFEST).is_file():
                self.manifest = self.open(self.path).manifest
                self._remove_unnamed_checkpoints()
        except BaseException:
            self.unlock()
            raise

    def _remove_unnamed_checkpoints(self) -> None:
        root, named = self.path / "checkpoints", self.checkpoint_dir
        if not root.is_dir() or named is None or not named.is_dir():  # never leave a run with no checkpoint
            return
        for entry in root.iterdir():
            if entry != named:
                shutil.rmtree(entry, ignore_errors=True)

    def unlock(self) -> None:
        if self._lock_fd is not None:
            fd, self._lock_fd = self._lock_fd, None
            release_lock(self.path, fd)

    @classmethod
    def open(cls, path: Path) -> "RunDirectory":
        """An existing run, unlocked (``lock`` it to write); a missing or unreadable manifest is
        a user error."""
        path = Path(path)
        manifest_path = path / MANIFEST
        if not manifest_path.is_file():
            raise UserError(f"no dpd run in {path} (missing {MANIFEST})")
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, ValueError) as exc:
            raise UserError(f"run manifest {manifest_path} is corrupt: {exc}") from None
        if not isinstance(manifest, dict) or "config" not in manifest or "progress" not in manifest:
            raise UserError(f"run manifest {manifest_path} is corrupt: missing config or progress")
        return cls(path, manifest)

    def write_manifest(self) -> None:
        atomic_write_text(self.path / MANIFEST, json.dumps(self.manifest, indent=2, sort_keys=False))

    def tensorboard_dir(self, learner_name: str) -> Path:
        return self.path / "tb" / learner_name

    @property
    def checkpoint_dir(self) -> Optional[Path]:
        """The latest complete checkpoint, or None before the first one."""
        name = self.manifest["progress"].get("checkpoint")
        return self.path / name if name else None

    def save_checkpoint(self, tag: str, write: Callable[[Path], None], progress: Dict[str, Any]) -> Path:
        """Write a checkpoint with ``write(directory)``, then point the manifest at it.

        A tag may repeat (the final checkpoint at a step a periodic one used, the survivors of a
        failed peer): the new checkpoint then takes a fresh name (``<tag>.1``), so the one the
        manifest names is never touched before the manifest names another. A write that fails
        with an ``OSError`` (a full disk) leaves the previous checkpoint named and no partial one,
        and raises ``CheckpointError``."""
        root = self.path / "checkpoints"
        tmp = root / f"{tag}.tmp"
        final = root / tag
        copy = 0
        while final.exists():
            copy += 1
            final = root / f"{tag}.{copy}"
        before = self.manifest["progress"]
        try:
            root.mkdir(exist_ok=True)
            if tmp.exists():
                shutil.rmtree(tmp)
            write(tmp)
            os.replace(tmp, final)
            self.manifest["progress"] = dict(progress, checkpoint=str(final.relative_to(self.path)))
            self.write_manifest()
        except BaseException as exc:
            self.manifest["progress"] = before
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.rmtree(final, ignore_errors=True)
            if isinstance(exc, OSError):
                raise CheckpointError(f"cannot write checkpoint {final}: {exc}") from exc
            raise
        for entry in root.iterdir():  # the previous checkpoint, and any a kill left behind
            if entry != final:
                shutil.rmtree(entry, ignore_errors=True)
        announce_consistent(final)
        return final


def make_directory(path: Path, what: str) -> Optional[Path]:
    """``mkdir -p path``; the topmost directory it made (None if it existed), to remove on a later
    failure. Failing (under a file, on a read-only filesystem, no space) is a user error."""
    missing = [parent for parent in (path, *path.parents) if not parent.exists()]
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if missing:
            shutil.rmtree(missing[-1], ignore_errors=True)
        raise UserError(f"cannot create {what} {path}: {exc}") from None
    return missing[-1] if missing else None


def pick_learner(manifest: Mapping[str, Any], name: Optional[str]) -> Dict[str, Any]:
    """The learner ``name``, else the one with the best final evaluation, else the first."""
    learners: List[Dict[str, Any]] = list(manifest["learners"])
    by_name = {learner["name"]: learner for learner in learners}
    if name is not None:
        if name not in by_name:
            raise unknown_choice("learner", name, by_name)
        return by_name[name]
    final = [result for result in manifest["progress"].get("final_eval") or [] if result.get("learner") in by_name]
    if final:
        return by_name[max(final, key=lambda result: result["mean_return"])["learner"]]
    return learners[0]


class LearnerFiles(NamedTuple):
    """One learner of a dpd run, as its latest checkpoint holds it."""

    manifest: Dict[str, Any]  # the run's manifest
    spec: Dict[str, Any]  # the learner's entry in ``manifest["learners"]``
    folder: Path  # its files in the latest checkpoint (model.zip, vecnormalize.pkl, ...)


def learner_files(run_path: Path, learner: Optional[str] = None) -> LearnerFiles:
    """The learner ``learner`` of the run at ``run_path`` (``pick_learner``: by default the best
    final evaluation, else the first) in the run's latest checkpoint; a run without one is a user error."""
    run = RunDirectory.open(run_path)
    checkpoint = run.checkpoint_dir
    if checkpoint is None:
        raise UserError(f"run {run_path} has no checkpoint yet")
    spec = pick_learner(run.manifest, learner)
    return LearnerFiles(run.manifest, spec, checkpoint / spec["name"])
