import numpy as np
import pytest
import torch

from tests.conftest import beats_random, tiny_learners, train_to_budget


def test_state_buffer_holds_raw_observations():
    (learner,) = tiny_learners(start=True, total_steps=512)
    learner.train_iteration(0)
    assert len(learner.states) == 256
    # The tiny env scales observations by 10, so raw states reach well beyond normalised ones.
    assert np.abs(learner.states.states[:256]).max() > 5.0
    last_raw = learner.env.get_original_obs()
    np.testing.assert_array_equal(learner.states.states[255], last_raw[0])


def test_learner_sees_peer_states_through_its_own_statistics():
    a, b = tiny_learners(peers=2, start=True)
    a.train_iteration(0)
    b.train_iteration(0)
    assert not np.allclose(a.env.obs_rms.mean, b.env.obs_rms.mean)  # different seeds, different stats
    raw = b.states.sample(64, np.random.default_rng(0))
    before = a.env.obs_rms.mean.copy(), a.env.obs_rms.count
    view = a.normalize(raw).numpy()
    expected = np.clip((raw - a.env.obs_rms.mean) / np.sqrt(a.env.obs_rms.var + a.env.epsilon), -10, 10)
    np.testing.assert_allclose(view, expected, rtol=1e-5, atol=1e-5)
    # The learner's actions on the peer's states come from its own normalisation ...
    with torch.no_grad():
        direct = a.action_distribution(torch.as_tensor(expected, dtype=torch.float32)).mean
    torch.testing.assert_close(a.policy_on(raw).mean, direct)
    # ... and looking does not update its statistics.
    np.testing.assert_array_equal(a.env.obs_rms.mean, before[0])
    assert a.env.obs_rms.count == before[1]


@pytest.mark.parametrize("normalize_reward, scale, rtol", [(True, 20.0, 1e-5), (False, 1.0, 1e-6)])
def test_values_come_back_in_raw_return_units(normalize_reward, scale, rtol):
    (learner,) = tiny_learners(start=True, total_steps=512, normalize_reward=normalize_reward)
    learner.train_iteration(0)
    raw = learner.states.sample(16, np.random.default_rng(0))
    with torch.no_grad():
        normalized = learner.policy.predict_values(learner.normalize(raw)).numpy().reshape(-1)
    learner.env.ret_rms.var = np.array(400.0 - learner.env.epsilon)  # reward scale: std 20, where rewards are scaled
    np.testing.assert_allclose(learner.values_on(raw), scale * normalized, rtol=rtol)


def test_distillation_moves_the_student_towards_the_target():
    (learner,) = tiny_learners(start=True, total_steps=512, distill={"lr": 1e-2})
    learner.train_iteration(0)
    raw = learner.states.sample(128, np.random.default_rng(0))
    target = learner.policy_on(raw)
    target = type(target)(target.mean + 0.5, target.log_std)
    weights = np.full(128, 1 / 128, dtype=np.float32)
    losses = [learner.distill_update(raw, target, weights) for _ in range(30)]
    assert losses[-1] < 0.5 * losses[0]
    assert learner.model.num_timesteps == 256  # distillation takes no env steps


def test_a_step_scale_shrinks_the_distillation_step_where_a_weight_on_the_loss_would_not():
    """Kickstarting's lambda scales the step: Adam divides most of a factor on the loss out of its
    steps (all but where gradients are as small as its eps), so lambda = 0.01 as a loss weight
    would move the student far more than a hundredth as far as lambda = 1."""

    def moved(step_scale: float, weight: float) -> float:
        (learner,) = tiny_learners(start=True, total_steps=512, seed=3)
        raw = np.random.default_rng(0).normal(size=(64, learner.env.observation_space.shape[0])).astype(np.float32)
        target = learner.policy_on(raw)
        target = type(target)(target.mean + 0.5, target.log_std)
        before = [p.detach().clone() for p in learner.actor_parameters()]
        learner.distill_update(raw, target, np.full(64, weight / 64, dtype=np.float32), step_scale)
        return float(sum((p.detach() - b).abs().sum() for p, b in zip(learner.actor_parameters(), before)))

    full = moved(1.0, 1.0)
    assert moved(1.0, 0.01) > 0.2 * full  # a weight on the loss: most of the step
    assert moved(0.01, 1.0) == pytest.approx(0.01 * full, rel=0.05)  # a step scale: a hundredth of it


def test_learner_alone_beats_a_random_policy(random_return):
    (learner,) = tiny_learners(start=True, total_steps=6144)
    train_to_budget(learner)
    mean, _ = learner.evaluate(20)
    assert beats_random(mean, random_return), (mean, random_return)


def test_schedules_run_once_over_the_budget():
    (learner,) = tiny_learners(start=True, total_steps=1024)
    learner.train_iteration(0)
    assert learner.model._current_progress_remaining == pytest.approx(1 - 256 / 1024)
    learner.train_iteration(0)
    assert learner.model._current_progress_remaining == pytest.approx(1 - 512 / 1024)


def test_rl_zoo_linear_schedules():
    (learner,) = tiny_learners(start=True, total_steps=1024, algo_kwargs={"learning_rate": "lin_1e-3"})
    learner.train_iteration(0)
    learner.train_iteration(0)
    assert learner.model.policy.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * (1 - 512 / 1024))


def test_reward_scaling_uses_the_learners_discount():
    (learner,) = tiny_learners(start=True, total_steps=512)
    assert learner.env.gamma == learner.model.gamma == 0.95  # the tiny env's PPO default


def test_critic_update_leaves_the_actor_alone():
    (learner,) = tiny_learners(start=True, total_steps=1024)
    actor_before = [p.detach().clone() for p in learner.actor_parameters()]
    critic_before = [p.detach().clone() for p in learner.policy.value_net.parameters()]
    learner.train_iteration(0, update="critic")
    assert all(torch.equal(a, b) for a, b in zip(actor_before, learner.actor_parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(critic_before, learner.policy.value_net.parameters()))
    assert all(p.requires_grad for p in learner.actor_parameters())
