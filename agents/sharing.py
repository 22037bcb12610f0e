"""Shared experience between off-policy peers: every transition any peer collects reaches every
peer's replay buffer.

SB3's replay buffers hold original observations and rewards (a VecNormalize-wrapped learner
stores ``get_original_obs()`` and ``get_original_reward()`` and normalises at sample time), so
transitions travel raw and each receiver normalises them with its own statistics, exactly as it
does its own. Within a turn a learner's buffer receives only its own transitions; peers'
transitions arrive between rounds. So a learner's own transitions of a turn are the buffer rows
written since the turn began, which ``TransitionOutbox`` copies out at the end of the turn.
"""

from dataclasses import dataclass, fields
from typing import Protocol

import numpy as np
from stable_baselines3.common.buffers import ReplayBuffer

from dpd.errors import UserError


class Experience(Protocol):
    """What a peer hands to the others under ``share=on``: replay rows (off-policy peers,
    ``TransitionBatch``) or rollout steps (on-policy peers, ``dpd.agents.rollout_sharing``)."""

    @property
    def transitions(self) -> int:
        """Env transitions it holds."""
        ...


@dataclass(frozen=True)
class TransitionBatch:
    """Rows of a replay buffer, each ``n_envs`` transitions wide, in the collector's order.

    Observations and rewards are raw (env units); actions are in SB3's [-1, 1] buffer units,
    which are the same for every learner on one env.
    """

    observations: np.ndarray  # (rows, n_envs, *obs_shape)
    next_observations: np.ndarray
    actions: np.ndarray  # (rows, n_envs, action_dim)
    rewards: np.ndarray  # (rows, n_envs)
    dones: np.ndarray
    timeouts: np.ndarray

    def __len__(self) -> int:
        return len(self.rewards)

    @property
    def transitions(self) -> int:
        return int(self.rewards.size)


FIELDS = tuple(f.name for f in fields(TransitionBatch))


def check_shareable(buffer: ReplayBuffer, name: str) -> None:
    """Sharing needs a plain ``ReplayBuffer`` that stores next observations."""
    if type(buffer) is not ReplayBuffer:
        raise UserError(f"share=on needs SB3's plain ReplayBuffer, but {name} uses {type(buffer).__name__}")
    if buffer.optimize_memory_usage:
        raise UserError(f"share=on needs next observations in the buffer: set optimize_memory_usage=false for {name}")


def rows_between(buffer: ReplayBuffer, start: int, count: int) -> TransitionBatch:
    """Copies of ``count`` rows written from position ``start`` on (wrapping around)."""
    count = min(count, buffer.buffer_size)
    index = (start + np.arange(count)) % buffer.buffer_size
    return TransitionBatch(*(getattr(buffer, name)[index].copy() for name in FIELDS))


def append_rows(buffer: ReplayBuffer, batch: TransitionBatch) -> None:
    """Write a peer's rows at the buffer's position, as ``ReplayBuffer.add`` would one by one."""
    if len(batch) == 0:
        return
    if batch.rewards.shape[1:] != buffer.rewards.shape[1:] or batch.observations.shape[1:] != buffer.observations.shape[1:]:
        raise ValueError("shared transitions do not fit this replay buffer (other n_envs or spaces)")
    rows = len(batch)
    # More rows than the buffer holds: only the newest fit, as with rows added one at a time.
    skip = max(rows - buffer.buffer_size, 0)
    index = (buffer.pos + np.arange(skip, rows)) % buffer.buffer_size
    for name in FIELDS:
        getattr(buffer, name)[index] = getattr(batch, name)[skip:]
    end = buffer.pos + rows
    if end >= buffer.buffer_size:
        buffer.full = True
    buffer.pos = end % buffer.buffer_size


class TransitionOutbox:
    """Counts a learner's own buffer rows since it last handed them over. Peers' rows arrive
    only between turns, after the hand-over, so the own rows are the newest ``rows`` rows."""

    def __init__(self) -> None:
        self.rows = 0

    def record(self, rows: int) -> None:
        """``rows`` buffer rows (steps of the vectorised env) were just collected."""
        self.rows += rows

    def take(self, buffer: ReplayBuffer) -> TransitionBatch:
        """The rows collected since the last ``take``, oldest first."""
        batch = rows_between(buffer, buffer.pos - min(self.rows, buffer.buffer_size), self.rows)
        self.rows = 0
        return batch
