"""Disadvantage weights: distill from a peer mostly where the peer is better.

``xi(s) = V_peer(s) - V_self(s)`` (peer minus self, in raw return units). States with ``xi > 0``
are the learner's disadvantageous states (Lai et al., IJCAI 2020). The released PPO code of
the paper computes ``exp(alpha * (V_self - V_peer))``, the opposite sign; this module follows
the paper, and ``tests/test_weighting.py`` pins the sign.
"""

import math
from dataclasses import dataclass

import numpy as np

from dpd.errors import unknown_choice

WEIGHTINGS = ("soft", "hard", "none")
SOFT_CLIP = (0.01, 100.0)


@dataclass(frozen=True)
class DisadvantageWeights:
    """Normalised per-state weights (sum to 1, or all zero) and the diagnostics that are logged."""

    weights: np.ndarray
    peer_gap: float  # mean xi
    peer_better_frac: float  # share of states with xi > 0
    raw_mean: float  # mean weight before normalisation (soft: of the clipped exp(alpha * xi))
    raw_max: float


def disadvantage_weights(
    peer_values: np.ndarray, self_values: np.ndarray, scheme: str = "soft", alpha: float = 0.5
) -> DisadvantageWeights:
    """Weights over a batch of states from the peer's and the learner's values.

    soft: ``clip(exp(alpha * xi), 0.01, 100)`` normalised over the batch (the paper's choice);
    hard: ``1[xi > 0]`` normalised (all zero when the peer is nowhere better);
    none: uniform, i.e. plain imitation of the peer.
    """
    if scheme not in WEIGHTINGS:
        raise unknown_choice("weighting", scheme, WEIGHTINGS)
    xi = np.asarray(peer_values, dtype=np.float64) - np.asarray(self_values, dtype=np.float64)
    if scheme == "soft":
        # Clipping the exponent is the same as clipping the weight, and cannot overflow.
        low, high = math.log(SOFT_CLIP[0]), math.log(SOFT_CLIP[1])
        raw = np.exp(np.clip(alpha * xi, low, high))
    elif scheme == "hard":
        raw = (xi > 0).astype(np.float64)
    else:
        raw = np.ones_like(xi)
    total = raw.sum()
    weights = raw / total if total > 0 else raw
    return DisadvantageWeights(
        weights=weights.astype(np.float32),
        peer_gap=float(xi.mean()),
        peer_better_frac=float((xi > 0).mean()),
        raw_mean=float(raw.mean()),
        raw_max=float(raw.max()),
    )
