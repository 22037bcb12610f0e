"""A ring buffer of the raw (unnormalised) observations a learner visited.

Peers exchange raw states: each learner normalises them with its own statistics, so
learners with different VecNormalize statistics see the same state (the released DPD code fed
a peer the other's normalised states; README, "How the distillation works").

A student that sees less than its teacher (``student.obs``, ``dpd.envs.observation_view``) keeps
each state twice: as it saw it, and the full observation of the same step, which its teacher
labels. Both live in one buffer, row by row, so that they stay paired through the ring, and are
saved together: a run resumed from an older dpd's checkpoint (without the labels) has its teacher
label the reloaded states again from the full ones.
"""

from pathlib import Path
from typing import Optional

import numpy as np


class RawStateBuffer:
    """The most recent ``capacity`` raw observations, float32; with ``full_dim``, each beside the
    full observation of the same step (a student's view and what its teacher sees)."""

    def __init__(self, capacity: int, obs_dim: int, full_dim: int = 0) -> None:
        self.capacity = capacity
        self.states = np.zeros((capacity, obs_dim), dtype=np.float32)
        self.full_states = np.zeros((capacity, full_dim), dtype=np.float32) if full_dim else None
        self.position = 0
        self.full = False

    def __len__(self) -> int:
        return self.capacity if self.full else self.position

    def add(self, observations: np.ndarray, full: Optional[np.ndarray] = None) -> None:
        """Append a batch of observations (one per vectorised env), and ``full``, their full
        observations, where the buffer keeps them (it needs them then)."""
        rows = np.asarray(observations, dtype=np.float32).reshape(-1, self.states.shape[1])
        companion = self.full_states
        if companion is not None:
            assert full is not None, "a buffer of views keeps the full observation of each"
            full_rows = np.asarray(full, dtype=np.float32).reshape(len(rows), companion.shape[1])
        for k, observation in enumerate(rows):
            self.states[self.position] = observation
            if companion is not None:
                companion[self.position] = full_rows[k]
            self.position += 1
            if self.position == self.capacity:
                self.position = 0
                self.full = True

    def newest(self, count: int) -> np.ndarray:
        """The indices of the ``count`` states added last, oldest first."""
        end = self.position  # the next free slot: the newest state sits just before it, ring-wise
        return (np.arange(end - count, end) % self.capacity).astype(np.int64)

    def sample(self, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        """``batch_size`` states drawn uniformly with replacement."""
        if len(self) == 0:
            raise ValueError("cannot sample from an empty state buffer")
        return self.at(rng.integers(0, len(self), size=batch_size))

    def at(self, indices: np.ndarray) -> np.ndarray:
        """The states at ``indices`` in ``[0, len(self))``: a peer group draws the indices."""
        return self.states[indices]

    def full_at(self, indices: np.ndarray) -> np.ndarray:
        """The full observations of the states at ``indices``: what a teacher labels (the states
        themselves where the buffer keeps no view)."""
        return self.states[indices] if self.full_states is None else self.full_states[indices]

    def save(self, path: Path) -> None:
        """Save the filled part in chronological order (``np.save``), the full observations
        beside it (``full_path``)."""
        _save_ordered(self._ordered(self.states), path)
        if self.full_states is not None:
            _save_ordered(self._ordered(self.full_states), full_path(path))

    def _ordered(self, rows: np.ndarray) -> np.ndarray:
        if self.full:
            return np.concatenate([rows[self.position :], rows[: self.position]])
        return rows[: self.position]

    def load(self, path: Path, position: int = 0) -> None:
        """Refill from files written by ``save`` (keeping the newest ``capacity`` states).
        ``position``: the ring's position when saved (a resume state keeps it), so that a full
        buffer's states come back at the indices they had (peers sample indices)."""
        self.position, self.full = 0, False
        full = np.load(full_path(path))[-self.capacity :] if self.full_states is not None else None
        self.add(np.load(path)[-self.capacity :], full)
        if self.full and position:  # oldest first from 0: roll the oldest to the position
            self.states = np.roll(self.states, position, axis=0)
            if self.full_states is not None:
                self.full_states = np.roll(self.full_states, position, axis=0)
            self.position = position


def full_path(path: Path) -> Path:
    """Where a buffer of views saves the full observations of the states it saves at ``path``."""
    return path.with_name(f"{path.stem}.full{path.suffix}")


def _save_ordered(rows: np.ndarray, path: Path) -> None:
    with open(path, "wb") as handle:
        np.save(handle, rows)
