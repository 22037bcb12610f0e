import numpy as np
import pytest

from dpd.errors import UserError
from dpd.weighting import disadvantage_weights


def test_peer_better_states_get_the_larger_weight():
    # State 0: the peer is better (xi = +2). State 1: the learner is better (xi = -2).
    peer = np.array([12.0, 8.0])
    learner = np.array([10.0, 10.0])
    w = disadvantage_weights(peer, learner, "soft", alpha=0.5).weights
    assert w[0] > w[1]  # the released PPO code of the paper has this backwards
    assert w[0] / w[1] == pytest.approx(np.exp(0.5 * 2) / np.exp(0.5 * -2), rel=1e-5)


def test_soft_weights_are_clipped_then_normalised():
    xi = np.array([1000.0, 0.0, -1000.0])  # exp would overflow without the clip
    w = disadvantage_weights(xi, np.zeros(3), "soft", alpha=0.5)
    assert w.weights.sum() == pytest.approx(1.0)
    assert w.weights[0] / w.weights[1] == pytest.approx(100.0, rel=1e-5)
    assert w.weights[1] / w.weights[2] == pytest.approx(100.0, rel=1e-5)
    assert w.raw_max == pytest.approx(100.0)
    assert np.all(np.isfinite(w.weights))


def test_hard_mask_and_uniform():
    peer, learner = np.array([1.0, 3.0, 5.0, 7.0]), np.array([2.0, 2.0, 2.0, 9.0])
    hard = disadvantage_weights(peer, learner, "hard")
    np.testing.assert_allclose(hard.weights, [0.0, 0.5, 0.5, 0.0])
    assert hard.peer_better_frac == pytest.approx(0.5)
    assert hard.peer_gap == pytest.approx(np.mean(peer - learner))
    np.testing.assert_allclose(disadvantage_weights(peer, learner, "none").weights, [0.25] * 4)


def test_hard_mask_with_no_better_state_is_all_zero():
    w = disadvantage_weights(np.zeros(3), np.ones(3), "hard")
    assert w.weights.sum() == 0.0 and w.peer_better_frac == 0.0


def test_unknown_scheme():
    with pytest.raises(UserError, match="hard, none, soft"):
        disadvantage_weights(np.zeros(2), np.zeros(2), "sigmoid")
