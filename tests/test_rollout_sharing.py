"""On-policy peers that learn from each other's rollouts (SEAC), on constructed values."""

import copy

import numpy as np
import pytest
import torch
from stable_baselines3.common.buffers import RolloutBuffer

from dpd.agents.peer import Peer
from dpd.agents.rollout_sharing import RolloutBatch, importance_ratios, peer_rollout_buffer, sample_weights
from dpd.config import ShareConfig
from tests.conftest import tiny_learners

SHARE = ShareConfig(enabled=True)
FIELDS = ("observations", "actions", "rewards", "episode_starts", "values", "log_probs", "advantages", "returns")


def sharing_learner(algo: str = "ppo", peers: int = 1):
    learners = tiny_learners(algo, peers=peers, total_steps=4096 * peers, start=True, distill={"enabled": False})
    for learner in learners:
        learner.start_sharing(SHARE)
    return learners


def snapshot(buffer: RolloutBuffer) -> dict:
    return {name: getattr(buffer, name).copy() for name in FIELDS}


def test_a_recorded_rollout_is_raw_and_continues_where_the_last_one_ended():
    (learner,) = sharing_learner()
    learner.train_iteration(0)
    first = learner.take_transitions()
    own = learner.model.rollout_buffer
    assert len(first) == learner.model.n_steps
    np.testing.assert_array_equal(first.actions, own.actions.reshape(first.actions.shape))  # sampled, unclipped
    np.testing.assert_allclose(first.log_probs, own.log_probs.reshape(first.log_probs.shape), rtol=1e-6)
    np.testing.assert_array_equal(first.episode_starts, own.episode_starts)
    # Raw observations: the goal (x 10) stays put within an episode and spans the env's units.
    goals = first.observations[:, 0, 2:]
    episode = np.cumsum(first.episode_starts[:, 0])
    for k in np.unique(episode):
        assert np.ptp(goals[episode == k], axis=0).max() == 0.0
    assert np.abs(first.observations).max() > 3.0
    # The tiny env truncates every 40 steps: each truncation keeps its raw terminal observation,
    # on the episode's goal, and the next step starts an episode.
    truncated = np.flatnonzero(first.truncated[:, 0])
    assert len(truncated) == learner.model.n_steps // 40
    np.testing.assert_array_equal(first.terminal_observations[truncated, 0, 2:], goals[truncated])
    assert all(first.episode_starts[t + 1, 0] == 1 for t in truncated if t + 1 < len(first))
    assert (first.rewards <= 0).all() and first.rewards.min() < -1.0  # raw: minus the distance
    assert len(learner.take_transitions()) == 0  # handed over once
    learner.train_iteration(0)
    second = learner.take_transitions()
    np.testing.assert_array_equal(second.observations[0], first.last_observations)
    np.testing.assert_array_equal(second.episode_starts[0], first.last_dones)


def test_a_peer_rollout_rebuilt_by_an_identical_learner_is_sb3s_own_buffer_and_its_ratio_is_one():
    (learner,) = sharing_learner()
    learner.train_iteration(0)  # statistics and a policy that are not the initial ones
    learner.take_transitions()
    learner.env.training = False  # frozen statistics: the rollout is normalised as it is rebuilt
    learner.train_iteration(0, update="none")
    expected = snapshot(learner.model.rollout_buffer)
    batch = learner.take_transitions()
    rebuilt = peer_rollout_buffer(learner, batch)
    for name in FIELDS:
        np.testing.assert_allclose(getattr(rebuilt, name), expected[name], rtol=1e-5, atol=1e-5, err_msg=name)
    np.testing.assert_allclose(importance_ratios(rebuilt, batch), 1.0, atol=1e-5)


def test_gae_on_a_hand_made_three_step_trajectory_uses_the_learners_own_critic():
    """Step 1 ends its episode by the time limit (bootstrapped with the learner's value of the
    terminal state); step 2 begins a new episode and is bootstrapped from the last observation."""
    (learner,) = sharing_learner()
    learner.train_iteration(0)
    rng = np.random.default_rng(0)
    obs = rng.uniform(-10, 10, size=(3, 1, 4)).astype(np.float32)
    terminal, last = rng.uniform(-10, 10, size=(2, 4)).astype(np.float32)
    rewards = np.array([[-1.0], [-2.0], [-3.0]], dtype=np.float32)
    batch = RolloutBatch(
        observations=obs,
        actions=rng.normal(size=(3, 1, 2)).astype(np.float32),
        log_probs=np.zeros((3, 1), dtype=np.float32),
        rewards=rewards,
        episode_starts=np.array([[1.0], [0.0], [1.0]], dtype=np.float32),
        truncated=np.array([[False], [True], [False]]),
        terminal_observations=np.stack([np.zeros((1, 4)), terminal[None], np.zeros((1, 4))]).astype(np.float32),
        last_observations=last[None],
        last_dones=np.array([0.0], dtype=np.float32),
    )
    buffer = peer_rollout_buffer(learner, batch)
    model = learner.model
    gamma, lam = model.gamma, model.gae_lambda

    def value(raw: np.ndarray) -> float:
        with torch.no_grad():
            return float(model.policy.predict_values(learner.normalize(raw[None]))[0, 0])

    v = [value(obs[t, 0]) for t in range(3)]
    r = learner.env.normalize_reward(rewards[:, 0])
    a2 = r[2] + gamma * value(last) - v[2]
    a1 = r[1] + gamma * value(terminal) - v[1]  # the episode ends: no step 2 in its return
    a0 = r[0] + gamma * v[1] - v[0] + gamma * lam * a1
    np.testing.assert_allclose(buffer.advantages[:, 0], [a0, a1, a2], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(buffer.returns[:, 0], np.array([a0, a1, a2]) + v, rtol=1e-4, atol=1e-5)


def test_truncation_bounds_the_weight_and_lambda_scales_it():
    ratios = np.array([0.0, 0.5, 1.0, 7.0, np.exp(50.0)], dtype=np.float32)
    np.testing.assert_allclose(sample_weights(ratios, 1.0, 1.0), [0.0, 0.5, 1.0, 1.0, 1.0])
    np.testing.assert_allclose(sample_weights(ratios, 0.5, 2.0), [0.0, 0.25, 0.5, 1.0, 1.0])


@pytest.mark.parametrize("algo", ["ppo", "a2c"])
def test_with_an_identical_peer_the_shared_update_is_sb3s_update_on_the_concatenated_data(algo):
    """A peer rollout from the learner's own (unchanged) policy has ratio 1, so the shared update
    takes exactly the steps SB3's ``train`` takes on the two rollouts in one buffer."""
    (learner,) = sharing_learner(algo)
    model = learner.model
    learner.train_iteration(0)
    learner.take_transitions()
    learner.env.training = False
    learner.train_iteration(0, update="none")
    peer_part = snapshot(model.rollout_buffer)
    peer = learner.take_transitions()
    learner.train_iteration(0, update="none")
    own_part = snapshot(model.rollout_buffer)
    params = {k: v.clone() for k, v in model.policy.state_dict().items()}
    optimizer = copy.deepcopy(model.policy.optimizer.state_dict())  # its moments change in place

    np.random.seed(7)
    torch.manual_seed(7)
    learner._train_shared([peer])
    shared = {k: v.clone() for k, v in model.policy.state_dict().items()}

    model.policy.load_state_dict(params)
    model.policy.optimizer.load_state_dict(optimizer)
    size = sum(part["rewards"].size for part in (own_part, peer_part))
    reference = RolloutBuffer(size, model.observation_space, model.action_space, "cpu", model.gae_lambda, model.gamma, 1)
    for name in FIELDS:
        flat = [RolloutBuffer.swap_and_flatten(part[name]) for part in (own_part, peer_part)]
        getattr(reference, name)[:] = np.concatenate(flat).reshape(getattr(reference, name).shape)
    reference.full = True
    model.rollout_buffer = reference
    np.random.seed(7)
    torch.manual_seed(7)
    model.train()
    for key, value in model.policy.state_dict().items():
        torch.testing.assert_close(shared[key], value, rtol=1e-4, atol=1e-5, msg=key)
    assert not torch.equal(shared["value_net.weight"], params["value_net.weight"])  # it did train


def test_each_peer_rollout_is_learned_from_once_and_never_the_own_one_twice():
    from dpd.agents.peer_group import PeerGroup

    learners = sharing_learner(peers=2)
    group = PeerGroup.local(learners, seed=0, share=SHARE)
    n_steps = learners[0].model.n_steps
    minibatches = n_steps // learners[0].model.batch_size
    epochs = learners[0].model.n_epochs
    group.train_round()
    # Round 1: own rollouts only; then each holds its peer's rollout of the round, not its own.
    for me, learner in enumerate(learners):
        (received,) = learner.inbox
        peer_actions = learners[1 - me].model.rollout_buffer.actions  # flattened by its update (n_envs 1)
        np.testing.assert_array_equal(received.actions, peer_actions.reshape(received.actions.shape))
        assert learner.gradient_updates == epochs * minibatches
    group.train_round()
    # Round 2: each update saw its own new rollout and the peer's round-1 rollout, once.
    for me, learner in enumerate(learners):
        (received,) = learner.inbox
        peer_actions = learners[1 - me].model.rollout_buffer.actions  # flattened by its update (n_envs 1)
        np.testing.assert_array_equal(received.actions, peer_actions.reshape(received.actions.shape))
        assert learner.gradient_updates == epochs * minibatches + epochs * 2 * minibatches
    group.close()


def test_peer_rollouts_not_yet_learned_from_survive_save_and_load(tmp_path):
    from dpd.agents.on_policy import PPOLearner

    learners = sharing_learner(peers=2)
    learners[0].train_iteration(0)
    learners[1].add_transitions([learners[0].take_transitions()])
    learners[1].save(tmp_path)
    loaded = PPOLearner.load(learners[1].spec, tmp_path, learners[1].distill_config, iterations=0)
    (saved,), (restored,) = learners[1].inbox, loaded.inbox
    for name, value in saved.arrays().items():
        np.testing.assert_array_equal(value, getattr(restored, name))
    assert not any(path.suffix == ".pkl" for path in tmp_path.iterdir() if "rollout" in path.name)


def test_shared_guided_ppo_pair_trains_resumes_logs_and_beats_random(tmp_path, monkeypatch, random_return, capsys):
    from dpd.agents.peer_group import PeerGroup
    from dpd.cli import main
    from tests.conftest import TINY, beats_random, interrupt, resume, scalar_tags

    run_dir = tmp_path / "shared"
    args = ["train", "--env", TINY, "--algo", "ppo", "--total-steps", "8192", "--no-progress", "--run-dir", str(run_dir)]
    args += ["--set", "share=on", "--set", "checkpoint_every=2048", "--set", "eval.every=0", "--set", "distill.enabled=false"]
    args += ["--set", "guide=best", "--set", "guide.every=1024", "--set", "guide.episodes=2", "--set", "guide.batch=32"]
    restore = interrupt(monkeypatch, PeerGroup, "train_round", when=lambda group: group.run_steps >= 4096)
    assert main(args) == 130
    restore()
    manifest = resume(run_dir)
    assert manifest["progress"]["finished"]
    for result in manifest["progress"]["final_eval"]:
        assert beats_random(result["mean_return"], random_return), (result, random_return)
    for name in ("peer0", "peer1"):
        tags = set(scalar_tags(run_dir / "tb" / name).Tags()["scalars"])
        wanted = {"share/peer_samples", "share/ratio_mean", "share/ratio_clipped_frac", "share/transitions_in"}
        wanted |= {"share/policy_loss_own", "share/policy_loss_peer", "share/value_loss_own", "share/value_loss_peer"}
        wanted |= {"guide/leader", "guide/beta", "guide/distance"}
        assert wanted <= tags, wanted - tags
    checkpoint = sorted((run_dir / "checkpoints").iterdir())[-1]
    assert any((checkpoint / name / "guidance.pt").is_file() for name in ("peer0", "peer1"))  # a follower's beta and guide
    capsys.readouterr()


def test_a_parallel_sharing_and_guided_on_policy_group_reproduces_the_sequential_one():
    import multiprocessing

    from dpd.agents import build_group
    from dpd.config import build_config
    from tests.conftest import TINY

    states = np.random.default_rng(3).normal(size=(16, 4)).astype(np.float32)
    results = []
    for backend in ("local", "process"):
        layer = {"env": TINY, "algo": "ppo,a2c", "peers": 2, "total_steps": 2048, "turn_steps": 256, "backend": backend}
        guide = {"mode": "best", "every": 512, "episodes": 2, "batch": 32}
        group = build_group(build_config(layer, {"share": True, "distill": False, "guide": guide}))
        try:
            for learner in group.learners:
                learner.start(None)
            group.train()
            answers = group.backend.ask(Peer.answer, {i: (states,) for i in range(2)})
            results.append(([answers[i].output.mean.numpy() for i in range(2)], group.shared_bytes))
        finally:
            group.close()
    (means_local, bytes_local), (means_process, bytes_process) = results
    for mean_local, mean_process in zip(means_local, means_process):
        np.testing.assert_array_equal(mean_local, mean_process)
    assert bytes_local == 0 and bytes_process > 1024 * 4 * 4  # at least the observations crossed processes
    assert multiprocessing.active_children() == []


def test_a_model_trained_by_sb3s_own_learn_counts_its_optimizer_steps():
    """``sb3`` in ``dpd bench`` trains with ``learn()``: its gradient updates are SB3's epochs
    times the minibatches of a rollout, as for a learner dpd drives."""
    (learner,) = tiny_learners("ppo", total_steps=512)
    learner.model.learn(512)
    model = learner.model
    assert learner.gradient_updates == 2 * model.n_epochs * (model.n_steps // model.batch_size)


def test_a_peer_action_far_outside_the_learners_policy_does_not_turn_the_update_nan():
    """A peer's action many standard deviations from the learner's mean has a log-probability so
    low that one optimizer step moves it by hundreds: exp() of that overflows, and the clipped
    branch's zero gradient times infinity is NaN, unless the log-ratio is capped."""
    (learner,) = sharing_learner()
    learner.train_iteration(0)
    learner.train_iteration(0, update="none")
    batch = learner.take_transitions()
    far = RolloutBatch(**{**batch.arrays(), "actions": batch.actions + 300.0, "log_probs": batch.log_probs})
    learner._train_shared([far])
    assert learner.parameters_finite()


def test_per_peer_updates_shorten_each_rollout_so_every_peer_updates_as_often_as_one_learner():
    """``share.updates=per_peer``: 3 PPO peers of a 3072-step rollout collect 1024 steps each, and
    each update then sees 3072 samples (own and peers'), as one learner alone would."""
    from dpd.agents import peer_setups
    from dpd.agents.peer_setup import resolved_config
    from dpd.config import build_config
    from tests.conftest import TINY

    layer = {"env": TINY, "algo": "ppo", "peers": 3, "algo_kwargs": {"n_steps": 3072}, "distill": False}
    shared = build_config(layer, {"share": {"enabled": True, "updates": "per_peer"}})
    assert [setup.algo_kwargs["n_steps"] for setup in peer_setups(shared)] == [1024] * 3
    assert resolved_config(shared)["algo_kwargs"]["n_steps"] == 3072  # the config says what the user set
    equal = build_config(layer, {"share": {"enabled": True}})
    assert [setup.algo_kwargs["n_steps"] for setup in peer_setups(equal)] == [3072] * 3
