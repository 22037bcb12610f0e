"""Every SB3 actor-critic as a peer: alone, in pairs, mixed, and through checkpoint and resume."""

import numpy as np
import pytest
import torch
from stable_baselines3 import A2C, DDPG, PPO, SAC, TD3

from dpd.agents.peer_group import PeerGroup
from dpd.cli import main
from tests.conftest import TINY, beats_random, interrupt, read_manifest, resume, scalar_tags, tiny_learners, train_to_budget

SB3_CLASSES = {"ppo": PPO, "a2c": A2C, "sac": SAC, "td3": TD3, "ddpg": DDPG}
# Per-learner budgets that learn the tiny env, and cadences that distill several times in them.
BUDGETS = {"a2c": 4000, "sac": 2000, "td3": 2000, "ddpg": 2000}
CADENCE = {"a2c": ["--set", "distill.every=25"], "sac": [], "td3": [], "ddpg": []}


@pytest.mark.parametrize("algo", ["a2c", "sac", "td3", "ddpg"])
def test_alone_beats_random(algo, random_return):
    (learner,) = tiny_learners(algo, total_steps=BUDGETS[algo], start=True)
    train_to_budget(learner)
    mean, _ = learner.evaluate(20)
    assert beats_random(mean, random_return), (algo, mean, random_return)


@pytest.mark.parametrize("algo", ["a2c", "sac", "td3", "ddpg"])
def test_pair_trains_resumes_and_beats_random(algo, tmp_path, monkeypatch, random_return, capsys):
    run_dir = tmp_path / algo
    budget = BUDGETS[algo]
    args = [
        "train",
        "--env",
        TINY,
        "--algo",
        algo,
        "--total-steps",
        str(2 * budget),
        "--no-progress",
        "--run-dir",
        str(run_dir),
    ]
    args += ["--set", f"checkpoint_every={budget // 2}", "--set", "eval.every=0", *CADENCE[algo]]
    restore = interrupt(monkeypatch, PeerGroup, "train_round", when=lambda group: group.run_steps >= budget)
    assert main(args) == 130
    restore()
    manifest = resume(run_dir)
    assert manifest["progress"]["finished"]
    checkpoint = run_dir / manifest["progress"]["checkpoint"]
    for result in manifest["progress"]["final_eval"]:
        assert result["env_steps"] >= budget
        assert beats_random(result["mean_return"], random_return), (algo, result, random_return)
    for name in ("peer0", "peer1"):
        model = SB3_CLASSES[algo].load(checkpoint / name / "model.zip")  # plain SB3 loads it
        assert model.num_timesteps >= budget
        assert (checkpoint / name / "replay_buffer.pkl").is_file() == (algo != "a2c")
        events = scalar_tags(run_dir / "tb" / name)
        assert {"distill/loss", "distill/peer_gap", "distill/weight_mean", "eval/mean_reward"} <= set(events.Tags()["scalars"])
    capsys.readouterr()


def test_mixed_ppo_sac_pair_compares_actions_in_env_units(tmp_path, random_return):
    # Actions in [-2, 2]: SAC's tanh output must be rescaled to meet PPO's Gaussian there.
    run_dir = tmp_path / "mixed"
    args = ["train", "--env", TINY, "--algo", "ppo,sac", "--total-steps", "8192", "--no-progress", "--run-dir", str(run_dir)]
    args += ["--set", "env_kwargs.action_scale=2.0", "--set", "eval.every=0"]
    assert main(args) == 0
    manifest = read_manifest(run_dir)
    assert [learner["algo"] for learner in manifest["learners"]] == ["ppo", "sac"]
    assert [peer["distill"]["batch"] for peer in manifest["resolved_peers"]] == [512, 64]  # each algorithm's defaults
    for result in manifest["progress"]["final_eval"]:
        assert beats_random(result["mean_return"], random_return), result


def test_three_peers_each_distill(tmp_path):
    run_dir = tmp_path / "three"
    args = ["train", "--env", TINY, "--peers", "3", "--total-steps", "7680", "--no-progress", "--run-dir", str(run_dir)]
    assert main(args + ["--set", "eval.every=0"]) == 0
    for name in ("peer0", "peer1", "peer2"):
        events = scalar_tags(run_dir / "tb" / name)
        assert len(events.Scalars("distill/loss")) >= 1


@pytest.mark.parametrize("algo", ["sac", "td3"])
def test_off_policy_values_in_raw_return_units(algo):
    (learner,) = tiny_learners(algo, total_steps=400, start=True)
    train_to_budget(learner)
    raw = learner.states.sample(32, np.random.default_rng(0))
    learner.env.ret_rms.var = np.array(1.0 - learner.env.epsilon)
    torch.manual_seed(0)
    unit = learner.values_on(raw)
    learner.env.ret_rms.var = np.array(400.0 - learner.env.epsilon)
    torch.manual_seed(0)
    np.testing.assert_allclose(learner.values_on(raw), 20.0 * unit, rtol=1e-5)


def test_sac_values_exclude_the_entropy_bonus():
    (learner,) = tiny_learners("sac", total_steps=300, start=True)
    train_to_budget(learner)
    obs = learner.normalize(learner.states.sample(256, np.random.default_rng(0)))
    with torch.no_grad():
        mean, _, _ = learner.model.policy.actor.get_action_dist_params(obs)
        q_soft = learner.min_q(obs, torch.tanh(mean))
        learner.model.log_ent_coef.data.fill_(np.log(0.5))
        torch.manual_seed(0)
        corrected = learner.normalized_values(obs)
        _, log_prob = learner.model.policy.actor.action_log_prob(obs)
    assert log_prob.mean() < 0  # an early, wide policy: positive entropy
    # The soft Q counts ent_coef * H at each future step; the corrected value does not.
    assert corrected.mean() < q_soft.mean()
    gamma = learner.gamma
    torch.manual_seed(0)
    with torch.no_grad():
        _, same_sample = learner.model.policy.actor.action_log_prob(obs)
    torch.testing.assert_close(corrected, q_soft + 0.5 * gamma / (1 - gamma) * same_sample.reshape(-1), rtol=1e-5, atol=1e-5)


def test_sac_expresses_a_gaussian_peer_in_its_squashed_space():
    (sac,) = tiny_learners("sac", total_steps=300, env_kwargs={"action_scale": 2.0})
    (ppo,) = tiny_learners("ppo", total_steps=300, env_kwargs={"action_scale": 2.0})
    raw = np.zeros((3, 4), dtype=np.float32)
    target = ppo.policy_on(raw)._replace(action=torch.tensor([[-2.0, 2.0], [1.0, -1.0], [0.0, 0.5]]))
    expressed = sac.express_target(target, ppo.distribution_kind)
    assert torch.all(torch.isfinite(expressed.mean)) and expressed.log_std is None
    # back through tanh and the action scale: the same env-space actions
    torch.testing.assert_close(sac.unscale_action(torch.tanh(expressed.mean)), target.env_action, atol=1e-4, rtol=0)
    own = sac.policy_on(raw)
    assert torch.all(own.env_action.abs() <= 2.0)
    torch.testing.assert_close(own.env_action, sac.unscale_action(torch.tanh(own.mean)))


def test_peer_targets_are_clipped_to_the_action_space():
    (ppo,) = tiny_learners("ppo", total_steps=300)
    with torch.no_grad():
        ppo.policy.action_net.bias.fill_(5.0)  # a mean far outside [-1, 1]
    target = ppo.policy_on(np.zeros((4, 4), dtype=np.float32))
    assert torch.all(target.env_action == 1.0) and torch.all(target.mean > 1.0)
