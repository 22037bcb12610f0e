"""A ring buffer of the raw (unnormalised) observations a learner visited.

Peers exchange raw states: each learner normalises them with its own statistics, so
learners with different VecNormalize statistics see the same state (the released DPD code fed
a peer the other's normalised states; README, "How the distillation works").
"""

from pathlib import Path

import numpy as np


class RawStateBuffer:
    """The most recent ``capacity`` raw observations, float32."""

    def __init__(self, capacity: int, obs_dim: int) -> None:
        self.capacity = capacity
        self.states = np.zeros((capacity, obs_dim), dtype=np.float32)
        self.position = 0
        self.full = False

    def __len__(self) -> int:
        return self.capacity if self.full else self.position

    def add(self, observations: np.ndarray) -> None:
        """Append a batch of observations (one per vectorised env)."""
        for observation in np.asarray(observations, dtype=np.float32).reshape(-1, self.states.shape[1]):
            self.states[self.position] = observation
            self.position += 1
            if self.position == self.capacity:
                self.position = 0
                self.full = True

    def sample(self, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        """``batch_size`` states drawn uniformly with replacement."""
        if len(self) == 0:
            raise ValueError("cannot sample from an empty state buffer")
        return self.at(rng.integers(0, len(self), size=batch_size))

    def at(self, indices: np.ndarray) -> np.ndarray:
        """The states at ``indices`` in ``[0, len(self))``: a peer group draws the indices."""
        return self.states[indices]

    def save(self, path: Path) -> None:
        """Save the filled part in chronological order (``np.save``)."""
        if self.full:
            ordered = np.concatenate([self.states[self.position :], self.states[: self.position]])
        else:
            ordered = self.states[: self.position]
        with open(path, "wb") as handle:
            np.save(handle, ordered)

    def load(self, path: Path) -> None:
        """Refill from a file written by ``save`` (keeping the newest ``capacity`` states)."""
        self.position, self.full = 0, False
        self.add(np.load(path)[-self.capacity :])
