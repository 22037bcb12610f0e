"""A random state of one's own for code that draws from the global generators.

SB3 draws from the global Python, NumPy and torch generators. Peers sharing one process would
otherwise draw from one stream, each peer's numbers depending on which peers ran before it. A
``PrivateRandomState`` is swapped in for the duration of each request and swapped out after, so
a peer draws exactly the numbers it would draw in a process of its own: a parallel run
reproduces the sequential run with the same seed.
"""

import random
from contextlib import contextmanager
from typing import Any, Iterator, Tuple

import numpy as np
import torch

RandomState = Tuple[Any, Any, torch.Tensor]  # Python's, NumPy's and torch's global states


def global_random_state() -> RandomState:
    """The global Python, NumPy and torch random states."""
    return random.getstate(), np.random.get_state(), torch.get_rng_state()


def set_global_random_state(state: RandomState) -> None:
    """Put back states from ``global_random_state``."""
    random.setstate(state[0])
    np.random.set_state(state[1])
    torch.set_rng_state(state[2])


def seeded_random_state(seed: int) -> RandomState:
    """The global states after seeding all three generators with ``seed``; the process's own
    states are left as they were."""
    saved = global_random_state()
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    state = global_random_state()
    set_global_random_state(saved)
    return state


class PrivateRandomState:
    """Global random states that only the code run under ``active()`` draws from."""

    def __init__(self, seed: int) -> None:
        self.state = seeded_random_state(seed)

    @contextmanager
    def active(self) -> Iterator[None]:
        """Swap this state in for the process's, and back out (kept advanced) afterwards."""
        saved = global_random_state()
        set_global_random_state(self.state)
        try:
            yield
        finally:
            self.state = global_random_state()
            set_global_random_state(saved)
