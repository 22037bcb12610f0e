"""The run directory: a manifest, TensorBoard event directories and atomic checkpoints.

Layout::

    RUN_DIR/manifest.json           resolved config, learners, versions, progress
    RUN_DIR/config.yaml             the resolved config, every default written out
                                    (``dpd train --config`` reproduces the run)
    RUN_DIR/tb/<learner>/           one TensorBoard event directory per learner
    RUN_DIR/checkpoints/<tag>/      the latest complete checkpoint, named in the manifest

A checkpoint is written to ``<tag>.tmp``, renamed when complete, and only then named in the
manifest (itself replaced atomically), so a kill at any moment leaves the previous checkpoint
usable.
"""

import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional

import yaml

from dpd.errors import UserError

MANIFEST = "manifest.json"


def atomic_write_text(path: Path, text: str) -> None:
    """Write a file so that readers see the old or the new content, never a part."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


class RunDirectory:
    """One training run on disk."""

    def __init__(self, path: Path, manifest: Dict[str, Any]) -> None:
        self.path = path
        self.manifest = manifest

    @classmethod
    def create(cls, path: Path, manifest: Dict[str, Any], config: Optional[Mapping[str, Any]] = None) -> "RunDirectory":
        """A new run; refuses a directory that already holds anything. ``config``: what
        ``config.yaml`` holds, the config with its defaults resolved (``manifest["config"]``
        where not given)."""
        path = Path(path)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            if (path / MANIFEST).is_file():
                raise UserError(
                    f"run dir {path} already holds a run; continue it with --resume {path} or choose another --run-dir"
                )
            raise UserError(f"run dir {path} exists and is not empty; choose another --run-dir")
        path.mkdir(parents=True, exist_ok=True)
        run = cls(path, manifest)
        atomic_write_text(
            path / "config.yaml", yaml.safe_dump(dict(manifest["config"] if config is None else config), sort_keys=False)
        )
        run.write_manifest()
        return run

    @classmethod
    def open(cls, path: Path) -> "RunDirectory":
        """An existing run; a missing or unreadable manifest is a user error."""
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
        """Write a checkpoint with ``write(directory)``, then point the manifest at it."""
        root = self.path / "checkpoints"
        root.mkdir(exist_ok=True)
        tmp = root / f"{tag}.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        write(tmp)
        final = root / tag
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        previous = self.checkpoint_dir
        self.manifest["progress"] = dict(progress, checkpoint=str(final.relative_to(self.path)))
        self.write_manifest()
        if previous is not None and previous != final and previous.exists():
            shutil.rmtree(previous)
        return final
