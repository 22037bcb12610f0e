"""A directory's files as data: how a run's files reach the machine that asked for the run.

On a Ray cluster a benchmark run or a peer works on some node, but its files (checkpoints,
TensorBoard events, the result row) belong under the directory the driver named, on the
driver's machine. Rather than ask for a file system that every node shares at the same path, a
node works in a scratch directory of its own and sends what it wrote, as a ``FileTree``, through
Ray's object store; the driver writes it out. A ``Mirror`` sends only what changed since its last
snapshot, and what was removed, so that the driver's copy follows the scratch directory at each
checkpoint without sending a whole run each time.
"""

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Tuple, Union

PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class FileTree:
    """Files under a root, by path relative to it (``/``-separated), with their bytes; and the
    paths removed since the tree its sender sent before (a ``Mirror``'s changes)."""

    files: Dict[str, bytes] = field(default_factory=dict)
    removed: Tuple[str, ...] = ()

    @classmethod
    def read(cls, root: PathLike) -> "FileTree":
        """Every file under ``root`` (none if it does not exist)."""
        return cls({relative: path.read_bytes() for relative, path in _files(Path(root)).items()})

    @property
    def size(self) -> int:
        return sum(len(data) for data in self.files.values())

    def write(self, root: PathLike) -> None:
        """Write the files under ``root``, then remove the removed ones. Deeper files come first:
        a file that names others sits above them (a run's ``manifest.json`` above the checkpoint
        it names, a benchmark run's ``result.json`` above both), so a reader never finds a name
        before what it names. Each file is replaced atomically; removing comes last, as in
        ``RunDirectory.save_checkpoint``, so the previous checkpoint goes only once the new one
        is named."""
        root = Path(root)
        for relative in sorted(self.files, key=lambda name: (-name.count("/"), name)):
            target = root / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(target.name + ".part")
            partial.write_bytes(self.files[relative])
            os.replace(partial, target)
        for relative in self.removed:
            (root / relative).unlink(missing_ok=True)
        for relative in self.removed:  # folders the removals emptied
            for folder in (root / relative).parents:
                if folder == root or not folder.is_relative_to(root) or not folder.is_dir() or any(folder.iterdir()):
                    break
                folder.rmdir()


class Mirror:
    """The sending side: snapshots of ``root`` that hold only what changed since the last one."""

    def __init__(self, root: PathLike) -> None:
        self.root = Path(root)
        self.sent: Dict[str, Tuple[int, int, int]] = {}  # relative path -> its stamp (``_stamp``) when sent

    def known(self) -> None:
        """Take what ``root`` holds now as sent (it came from the receiver)."""
        self.sent = {relative: _stamp(path) for relative, path in _files(self.root).items()}

    def changes(self) -> FileTree:
        """The files new or changed since the last snapshot, and those removed since."""
        now = _files(self.root)
        stamps = {relative: _stamp(path) for relative, path in now.items()}
        changed = {name: now[name].read_bytes() for name, stamp in stamps.items() if self.sent.get(name) != stamp}
        removed = tuple(sorted(set(self.sent) - set(now)))
        self.sent = stamps
        return FileTree(changed, removed)


def _files(root: Path) -> Dict[str, Path]:
    if not root.is_dir():
        return {}
    return {path.relative_to(root).as_posix(): path for path in sorted(root.rglob("*")) if path.is_file()}


def _stamp(path: Path) -> Tuple[int, int, int]:
    """What tells a changed file: its size and modification time, and its inode, as a file
    replaced atomically (a manifest) may keep its size within the clock's granularity."""
    status = path.stat()
    return status.st_size, status.st_mtime_ns, status.st_ino
