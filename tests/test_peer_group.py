"""The peer group's choices on constructed peers with known values and actions."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from dpd.agents.distillation import answer_on, best_targets, distill_step, mean_targets
from dpd.agents.local_backend import LocalPeers
from dpd.agents.peer_group import PeerGroup
from dpd.agents.state_buffer import RawStateBuffer
from dpd.config import DistillConfig
from dpd.losses import PolicyOutput


class _Records:
    def __init__(self):
        self.means = {}

    def record_mean(self, key, value):
        self.means.setdefault(key, []).append(value)


class StubPeer:
    """A peer whose value and mean action are fixed functions of the raw state."""

    distribution_kind = "gaussian"

    def __init__(self, value_fn, action: float, states: np.ndarray, name: str = "stub", **distill) -> None:
        self.spec = SimpleNamespace(name=name, seed=0)
        self.num_timesteps = self.iterations = self.planned_steps = 0
        self.done = False
        self.logger = _Records()
        self.value_fn = value_fn
        self.action = action
        self.states = RawStateBuffer(len(states), states.shape[1])
        self.states.add(states)
        self.distill_config = DistillConfig(
            **{"loss": "mse", "alpha": 0.5, "every": 5, "steps": 1, "batch": 64, "lr": 1e-3, "buffer_size": 10, **distill}
        )
        self.updates = []
        self.training_return = float("nan")

    def recent_return(self, episodes):
        return self.training_return

    def episode_returns(self):
        return () if np.isnan(self.training_return) else (self.training_return,)

    gradient_updates = 0

    def express_target(self, target, kind):
        return target

    def values_on(self, raw):
        return self.value_fn(raw)

    def policy_on(self, raw):
        mean = torch.full((len(raw), 1), self.action)
        return PolicyOutput(mean, torch.zeros_like(mean))

    def distill_update(self, raw, target, weights, step_scale=1.0):
        self.updates.append((raw, target, weights))
        return 0.0


def test_best_rule_picks_the_highest_value_peer_per_state():
    states = np.array([[0.0], [1.0]], dtype=np.float32)
    # peer A is better on state 0, peer B on state 1
    peer_a = StubPeer(lambda s: np.where(s[:, 0] == 0.0, 5.0, 1.0), action=-1.0, states=states)
    peer_b = StubPeer(lambda s: np.where(s[:, 0] == 0.0, 2.0, 7.0), action=+1.0, states=states)
    target, values = best_targets(peer_a, [answer_on(peer_a, states), answer_on(peer_b, states)], len(states))
    np.testing.assert_array_equal(target.mean.numpy().reshape(-1), [-1.0, 1.0])
    np.testing.assert_array_equal(values, [5.0, 7.0])


def test_mean_rule_is_the_mixtures_moments_and_the_mean_value():
    states = np.array([[0.0], [1.0]], dtype=np.float32)
    peer_a = StubPeer(lambda s: np.where(s[:, 0] == 0.0, 5.0, 1.0), action=-1.0, states=states)
    peer_b = StubPeer(lambda s: np.where(s[:, 0] == 0.0, 2.0, 7.0), action=+1.0, states=states)
    target, values = mean_targets(peer_a, [answer_on(peer_a, states), answer_on(peer_b, states)], len(states))
    np.testing.assert_array_equal(target.mean.numpy().reshape(-1), [0.0, 0.0])
    # two unit Gaussians at -1 and +1: the mixture's variance is 1 + 1 = 2
    np.testing.assert_allclose(target.log_std.numpy().reshape(-1), [0.5 * np.log(2.0)] * 2, rtol=1e-6)
    np.testing.assert_array_equal(values, [3.5, 4.0])


def test_distill_step_weights_states_where_the_peer_is_better():
    states = np.array([[0.0], [1.0]], dtype=np.float32)
    learner = StubPeer(lambda s: np.array([0.0] * len(s)), action=0.0, states=states, weighting="hard")
    # the peer is better than the learner on state 1 only
    peer = StubPeer(lambda s: np.where(s[:, 0] == 1.0, 3.0, -3.0), action=1.0, states=states)
    raw = states[np.random.default_rng(0).integers(0, 2, size=64)]
    stats = distill_step(learner, [answer_on(peer, raw)], raw, "hard", alpha=0.5)
    _, _, weights = learner.updates[-1]
    assert np.all(weights[raw[:, 0] == 0.0] == 0.0) and np.all(weights[raw[:, 0] == 1.0] > 0.0)
    assert weights.sum() == pytest.approx(1.0)
    assert stats["peer_better_frac"] == pytest.approx(np.mean(raw[:, 0] == 1.0))


def local_group(learners):
    return PeerGroup(
        LocalPeers(learners), [learner.spec for learner in learners], [learner.distill_config for learner in learners], seed=0
    )


def test_states_are_drawn_from_every_peer_but_the_learner():
    learners = [
        StubPeer(lambda s: np.zeros(len(s)), 0.0, np.full((10, 1), v, dtype=np.float32), name=f"p{v}", batch=9)
        for v in range(3)
    ]
    learners[0].iterations = 5
    local_group(learners).distill({0: 1})
    ((raw, _, _),) = learners[0].updates
    assert len(raw) == 9 and sorted(set(raw[:, 0])) == [1.0, 2.0]


def test_two_peers_fetch_and_answer_in_one_trip_with_the_same_batches(monkeypatch):
    def pair():
        states = [np.arange(20, dtype=np.float32).reshape(10, 2) + 100 * v for v in range(2)]
        learners = [
            StubPeer(lambda s, v=v: s[:, 0] + v, float(v), states[v], name=f"p{v}", batch=6, steps=3) for v in range(2)
        ]
        for learner in learners:
            learner.iterations = 5
        return learners

    fused, asked = pair(), []
    group = local_group(fused)
    deliver = group.backend._exchange

    def recording(request, messages):
        asked.append((request, [index for index, _ in messages]))
        return deliver(request, messages)

    monkeypatch.setattr(group.backend, "_exchange", recording)
    group.distill({0: 1, 1: 1})
    assert asked == [("answer_own", [0, 1]), ("distill", [0, 1])]  # one trip to each peer before the updates
    two_trips = pair()
    monkeypatch.setattr("dpd.agents.peer_group.own_states", lambda step: False)
    local_group(two_trips).distill({0: 1, 1: 1})
    for one, other in zip(fused, two_trips):
        assert len(one.updates) == 3
        for (raw_a, target_a, weights_a), (raw_b, target_b, weights_b) in zip(one.updates, other.updates):
            np.testing.assert_array_equal(raw_a, raw_b)
            np.testing.assert_array_equal(target_a.mean.numpy(), target_b.mean.numpy())
            np.testing.assert_array_equal(weights_a, weights_b)


def test_round_robin_uses_one_peer_per_step_in_turn():
    states = np.zeros((4, 1), dtype=np.float32)
    config = {"combine": "round_robin", "steps": 4, "every": 5, "weighting": "none", "batch": 8}
    learners = [StubPeer(lambda s, v=v: np.full(len(s), v), float(v), states, name=f"p{v}", **config) for v in (0.0, 1.0, 2.0)]
    learner = learners[0]
    learner.iterations = 5
    local_group(learners).distill({0: 1})
    targets = [float(target.mean[0, 0]) for _, target, _ in learner.updates]
    assert targets == [1.0, 2.0, 1.0, 2.0]
    assert len(learner.logger.means["distill/loss"]) == 4


def test_the_return_gate_admits_only_peers_with_a_higher_recent_return():
    # p0 (return 100) may learn from p1 (200) only; p1, the best, from nobody; p2's return is not known yet
    learners = [
        StubPeer(lambda s: np.zeros(len(s)), 0.0, np.full((10, 1), v, dtype=np.float32), name=f"p{v}", batch=8, gate="return")
        for v in range(3)
    ]
    for learner, training_return in zip(learners, (100.0, 200.0, float("nan"))):
        learner.training_return = training_return
    group = local_group(learners)
    group.distill({0: 1, 1: 1, 2: 1})
    ((raw, _, _),) = learners[0].updates
    assert set(raw[:, 0]) == {1.0}
    assert learners[1].updates == [] and learners[2].updates == []
    # without the gate every learner distills from both of its peers
    for learner in learners:
        learner.distill_config = DistillConfig(**{**vars(learner.distill_config), "gate": "none"})
    ungated = local_group(learners)
    ungated.distill({0: 1, 1: 1, 2: 1})
    assert [len(learner.updates) for learner in learners] == [2, 1, 1]
    assert set(learners[1].updates[0][0][:, 0]) == {0.0, 2.0}


def test_recent_return_is_the_mean_of_the_last_training_episodes():
    from collections import deque

    from dpd.agents.learner import Learner

    finished = SimpleNamespace(model=SimpleNamespace(ep_info_buffer=deque([{"r": 1.0}, {"r": 3.0}, {"r": 5.0}])))
    assert Learner.recent_return(finished, 2) == pytest.approx(4.0)
    assert Learner.recent_return(finished, 10) == pytest.approx(3.0)
    assert np.isnan(Learner.recent_return(SimpleNamespace(model=SimpleNamespace(ep_info_buffer=deque())), 10))


def test_distillation_falls_due_every_few_iterations_once_started():
    keys = {"loss": "mse", "alpha": 0.5, "steps": 1, "batch": 64, "lr": 1e-3, "buffer_size": 10}
    config = DistillConfig(**keys, every=2, start=300)
    # iteration i ends at i * 100 env steps: iteration 2 is before the start, 4, 6 and 8 are due
    assert [config.due(i, i * 100) for i in range(1, 9)] == [False, False, False, True, False, True, False, True]
    assert not DistillConfig(**keys, every=2, enabled=False).due(2, 10**6)


class IterationStub(StubPeer):
    """A stub learner whose iterations take 100 env steps each."""

    def __init__(self, **distill) -> None:
        super().__init__(lambda s: np.zeros(len(s)), 0.0, np.zeros((4, 1), dtype=np.float32), **distill)
        self.model = torch.nn.Linear(1, 1)
        self.model.policy = self.model

    def train_iteration(self, run_steps_before: int) -> int:
        self.iterations += 1
        self.num_timesteps += 100
        return 100

    def parameters_finite(self) -> bool:
        return True


def test_a_turn_counts_the_rounds_due_after_the_start():
    from dpd.agents.peer import Peer

    peer = Peer(IterationStub(every=2, start=300))
    assert peer.train_turn(0, 800).due == 3  # iterations 4, 6 and 8
    assert Peer(IterationStub(every=2)).train_turn(0, 800).due == 4
