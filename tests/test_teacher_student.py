"""Teacher-student distillation on the tiny env, with a teacher trained by plain SB3."""

import json

import numpy as np
import pytest
import torch
from stable_baselines3 import PPO

from dpd.agents import compare_models
from dpd.agents.comparison import fidelity
from dpd.agents.learner import Learner
from dpd.agents.teacher_student import TeacherStudent, kickstart_lambda
from dpd.cli import main
from dpd.config import TeacherConfig
from dpd.fidelity import policy_fidelity
from dpd.losses import PolicyOutput
from tests.conftest import (
    TINY,
    beats_random,
    expect_cli_error,
    interrupt,
    read_manifest,
    resume,
    scalar_tags,
    tiny_learners,
)


@pytest.fixture(scope="module")
def sb3_teacher(tmp_path_factory):
    """A PPO teacher trained and saved with plain SB3, not through dpd."""
    from dpd import envs

    directory = tmp_path_factory.mktemp("teacher")
    env = envs.make_env(TINY, seed=0, gamma=0.95)
    model = PPO(
        "MlpPolicy",
        env,
        seed=0,
        n_steps=256,
        batch_size=64,
        learning_rate=1e-3,
        gamma=0.95,
        gae_lambda=0.9,
        policy_kwargs={"net_arch": [64, 64]},
    )
    model.learn(8192)
    model.save(directory / "teacher.zip")
    env.save(str(directory / "vecnormalize.pkl"))
    return directory / "teacher.zip"


@pytest.fixture(scope="module")
def raw_teacher(tmp_path_factory):
    """A PPO teacher saved by plain SB3 without VecNormalize: it acts on raw observations, and no
    ``vecnormalize.pkl`` lies beside it."""
    from dpd import envs

    directory = tmp_path_factory.mktemp("raw_teacher")
    model = PPO("MlpPolicy", envs.make_env(TINY, seed=0, normalize=False), seed=0, n_steps=256, batch_size=64, gamma=0.95)
    model.learn(1024)
    model.save(directory / "teacher.zip")
    return directory / "teacher.zip"


def distill(teacher, run_dir, mode, *extra):
    """``dpd distill`` of a width-8 student on the tiny env, without evaluations during training."""
    args = ["distill", "--teacher", str(teacher), "--env", TINY, "--student-net", "8", "--mode", mode, "--total-steps", "4096"]
    return main([*args, "--run-dir", str(run_dir), "--no-progress", "--set", "eval.every=0", *extra])


@pytest.mark.parametrize("mode", ["bc", "dagger", "offline", "online", "kickstart", "gated", "ppd"])
def test_each_mode_teaches_a_small_student(mode, sb3_teacher, tmp_path, random_return, capsys):
    run_dir = tmp_path / mode
    assert distill(sb3_teacher, run_dir, mode) == 0
    manifest = read_manifest(run_dir)
    (result,) = manifest["progress"]["final_eval"]
    assert beats_random(result["mean_return"], random_return), (mode, result)
    fidelity_keys = {
        f"fidelity/{source}/{key}" for source in ("teacher_states", "student_states") for key in ("action_mse", "agreement")
    }
    timings = {"fidelity/teacher_us_per_action", "fidelity/student_us_per_action"}
    assert fidelity_keys | timings | {"fidelity/return_ratio"} <= set(result["metrics"]), result["metrics"]
    assert all(result["metrics"][key] > 0 for key in timings)
    student = PPO.load(run_dir / manifest["progress"]["checkpoint"] / "student" / "model.zip")  # plain SB3 loads it
    assert student.policy.mlp_extractor.policy_net[0].out_features == 8
    assert "fidelity/return_ratio" in capsys.readouterr().out


def test_identical_policies_have_perfect_fidelity(sb3_teacher):
    report = compare_models(str(sb3_teacher), str(sb3_teacher), TINY, None, None, episodes=3, n_states=200, tolerance=0.05)
    for source in ("teacher_states", "student_states"):
        assert report[f"{source}/action_mse"] == 0.0
        assert report[f"{source}/agreement"] == 1.0
        assert report[f"{source}/kl"] == pytest.approx(0.0, abs=1e-6)
    assert report["return_ratio"] == pytest.approx(1.0)


def test_fidelity_on_constructed_outputs():
    teacher = PolicyOutput(torch.tensor([[0.0, 0.0], [0.5, 0.5]]), torch.zeros(2, 2))
    student = PolicyOutput(torch.tensor([[0.05, 0.0], [0.5, 0.9]]), torch.zeros(2, 2))
    metrics = policy_fidelity(student, teacher, student.mean, teacher.mean, tolerance=0.1, comparable_distributions=True)
    assert metrics["action_mse"] == pytest.approx((0.05**2 + 0.4**2) / 4)
    assert metrics["agreement"] == pytest.approx(0.5)  # the second state differs by 0.4 > 0.1
    assert metrics["kl"] == pytest.approx((0.05**2 + 0.4**2) / 2 / 2)  # unit variances: |dmu|^2 / 2 per state
    deterministic = PolicyOutput(student.mean)
    assert policy_fidelity(deterministic, teacher, student.mean, teacher.mean, 0.1, True)["kl"] is None


def constant_policy(learner: Learner, action: float) -> Learner:
    """``learner`` made to act ``action`` in every dimension on every state."""
    with torch.no_grad():
        learner.policy.action_net.weight.zero_()
        learner.policy.action_net.bias.fill_(action)
    return learner


def test_fidelity_of_a_learner_to_itself_and_to_its_opposite():
    teacher, opposite = tiny_learners(peers=2)
    constant_policy(teacher, 0.5)
    constant_policy(opposite, -0.5)
    states = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32) * 10
    same = fidelity(teacher, teacher, states, tolerance=0.05)
    assert same["action_mse"] == 0.0 and same["agreement"] == 1.0
    assert same["kl"] == pytest.approx(0.0, abs=1e-7)
    other = fidelity(teacher, opposite, states, tolerance=0.05)
    assert other["action_mse"] == pytest.approx(1.0)  # 0.5 - (-0.5), squared
    assert other["agreement"] == 0.0
    assert other["kl"] == pytest.approx(teacher.action_space_shape[0] / 2)  # unit variances: |dmu|^2 / 2 per dimension


@pytest.mark.parametrize(
    "schedule, progress, expected", [("constant", 0.5, 2.0), ("linear", 0.75, 0.5), ("exponential", 0.5, 0.5)]
)
def test_kickstart_schedules(schedule, progress, expected):
    config = TeacherConfig(kickstart_lambda=2.0, kickstart_half_life=0.25, kickstart_schedule=schedule)
    assert kickstart_lambda(config, progress) == expected  # exact in binary floating point


@pytest.mark.parametrize("mode", ["online", "dagger", "ppd"])
def test_distill_run_resumes_and_logs_distillation_and_fidelity(mode, sb3_teacher, tmp_path, monkeypatch):
    run_dir = tmp_path / "resume"
    restore = interrupt(monkeypatch, TeacherStudent, "train_iteration", after_calls=3)
    extra = ["--set", "checkpoint_every=512", "--set", "teacher.round_steps=512", "--set", "algo_kwargs.n_steps=512"]
    assert distill(sb3_teacher, run_dir, mode, *extra, "--set", "eval.every=2048") == 130
    restore()
    manifest = resume(run_dir)
    assert manifest["progress"]["finished"] and manifest["progress"]["learners"]["student"]["num_timesteps"] == 4096
    if mode == "dagger":  # the aggregated data set came back with the checkpoint and grew on
        states = np.load(run_dir / manifest["progress"]["checkpoint"] / "student" / "states.npy")
        assert len(states) == 4096
    tags = set(scalar_tags(run_dir / "tb" / "student").Tags()["scalars"])
    assert {"distill/loss", "fidelity/teacher_states/agreement", "eval/mean_reward"} <= tags, tags


@pytest.mark.parametrize(
    "teacher, extra, message",
    [
        ("missing", [], "teacher model not found"),
        ("trained", ["--env", "HalfCheetah-v5"], "does not fit HalfCheetah-v5"),
        ("trained", ["--mode", "dagge"], "unknown distillation mode 'dagge'"),
        ("corrupt", [], "not a readable SB3 model zip"),
        ("trained", ["--student-algo", "td3", "--set", "distill.loss=kl"], "deterministic"),
        # the teacher learned with 0.95; only the gated mode compares values
        ("trained", ["--mode", "gated", "--set", "algo_kwargs.gamma=0.9"], "teacher and student: peers must share one"),
        ("trained", ["--set", "distill.gate=return"], "has no peer to gate"),
        ("trained", ["--mode", "dagger", "--set", "teacher.round_steps=0"], "round_steps must be positive"),
        ("trained", ["--mode", "dagger", "--set", "teacher.beta=1.5"], "teacher.beta must lie in [0, 1]"),
        ("trained", ["--mode", "bc", "--set", "teacher.epochs=0"], "epochs and teacher.round_steps must be positive"),
        ("trained", ["--mode", "bc", "--set", "distill.buffer_size=100"], "does not fit distill.buffer_size=100"),
        ("trained", ["--mode", "bc", "--set", "teacher.dataset_steps=1024"], "is more than the run's 512 env steps"),
        ("trained", ["--student-net", "0"], "--student-net expects positive layer sizes"),
    ],
)
def test_teacher_errors(teacher, extra, message, sb3_teacher, tmp_path, capsys):
    paths = {"trained": sb3_teacher, "missing": tmp_path / "none.zip", "corrupt": tmp_path / "corrupt.zip"}
    paths["corrupt"].write_bytes(b"not a zip")
    run_dir = tmp_path / "never"
    args = ["distill", "--env", TINY, "--total-steps", "512", "--no-progress", "--teacher", str(paths[teacher]), *extra]
    assert message in expect_cli_error([*args, "--run-dir", str(run_dir)], capsys)
    assert not run_dir.exists()


@pytest.mark.parametrize("mode", ["offline", "online"])
def test_a_teacher_without_normalisation_teaches(raw_teacher, tmp_path, mode):
    run_dir = tmp_path / mode
    assert distill(raw_teacher, run_dir, mode, "--total-steps", "1024") == 0
    (result,) = read_manifest(run_dir)["progress"]["final_eval"]
    assert {"fidelity/teacher_states/action_mse", "fidelity/return_ratio"} <= set(result["metrics"])


def test_fidelity_of_a_teacher_without_normalisation(raw_teacher, sb3_teacher, capsys):
    args = ["fidelity", str(raw_teacher), str(sb3_teacher), "--env", TINY, "--episodes", "2", "--states", "50", "--json"]
    assert main(args) == 0
    assert "teacher_states/action_mse" in capsys.readouterr().out
    report = compare_models(str(raw_teacher), str(raw_teacher), TINY, None, None, episodes=2, n_states=50, tolerance=0.05)
    assert report["teacher_states/action_mse"] == 0.0 and report["return_ratio"] == pytest.approx(1.0)


@pytest.mark.parametrize("mode", ["offline", "online", "kickstart"])
def test_a_teacher_with_another_discount_teaches_where_values_are_not_compared(sb3_teacher, tmp_path, mode):
    """The teacher learned with 0.95; only the gated mode compares its values with the student's."""
    assert distill(sb3_teacher, tmp_path / mode, mode, "--total-steps", "512", "--set", "algo_kwargs.gamma=0.9") == 0


def test_nan_in_distillation_ends_in_one_line_and_keeps_the_last_checkpoint(sb3_teacher, tmp_path, capsys):
    """A learning rate of 1e6 turns the student NaN at its first distillation round (at 512 env
    steps), after a checkpoint at 256."""
    run_dir = tmp_path / "nan"
    extra = ["--set", "checkpoint_every=256", "--set", "distill.start=512", "--set", "distill.lr=1e6"]
    assert distill(sb3_teacher, run_dir, "online", *extra) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("dpd: error: student failed: FloatingPointError"), err
    assert "other peers" not in err and f"--resume {run_dir}" in err
    progress = read_manifest(run_dir)["progress"]
    assert progress["run_steps"] == 256 and not progress["finished"]
    student = PPO.load(run_dir / progress["checkpoint"] / "student" / "model.zip")
    assert student.num_timesteps == 256
    assert all(torch.isfinite(parameter).all() for parameter in student.policy.parameters())
    assert main(["eval", str(run_dir), "--episodes", "1"]) == 0


def student_of(teacher, mode: str, total_steps: int, distill=None, **teacher_keys) -> TeacherStudent:
    """A started teacher-student pair on the tiny env, with a width-8 student."""
    from dpd.agents.assembly import assemble, fresh_learners
    from dpd.agents.checks import check_config
    from dpd.config import build_config

    cfg = build_config(
        {
            "env": TINY,
            "peers": 1,
            "total_steps": total_steps,
            "teacher": {"path": str(teacher), "mode": mode, **teacher_keys},
            "algo_kwargs": {"policy_kwargs": {"net_arch": [8]}},
            "distill": distill or {},
        }
    )
    setups = check_config(cfg)
    agent = assemble(cfg, setups, fresh_learners(setups))
    assert isinstance(agent, TeacherStudent)
    agent.student.start(None)
    return agent


def count_calls(monkeypatch, owner, name: str, rows=lambda args: 1) -> list:
    """Wrap ``owner.name`` to count its calls (``rows``: what one call adds to the count)."""
    counted, original = [0], getattr(owner, name)

    def counting(*args, **kwargs):
        counted[0] += rows(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, counting)
    return counted


def test_a_dagger_round_labels_every_visited_state_once_and_grows_the_data_set_by_its_steps(sb3_teacher, monkeypatch):
    agent = student_of(sb3_teacher, "dagger", total_steps=700, round_steps=300, epochs=1.0)
    labelled = count_calls(monkeypatch, agent.teacher, "policy_on", rows=lambda args: len(args[0]))
    sizes = []
    while not agent.done:
        taken = agent.train_iteration()
        sizes.append((taken, len(agent.student.states), labelled[0]))
    # rounds of 300, 300 and the 100 left; the data set aggregates them, each state labelled once
    assert sizes == [(300, 300, 300), (300, 600, 600), (100, 700, 700)]
    assert agent.student.num_timesteps == 700
    states = agent.student.states.at(np.arange(700))
    (stored,) = agent.labels.answers_at(np.arange(700))
    assert torch.allclose(stored.output.mean, agent.teacher.policy_on(states).mean)  # the teacher's own answer
    agent.close()


def test_dagger_beta_decays_per_round_and_the_first_round_is_the_teachers(sb3_teacher, monkeypatch):
    from dpd.agents.teacher_student import dagger_beta

    config = TeacherConfig(beta=0.5)
    assert [dagger_beta(config, i) for i in range(4)] == [1.0, 0.5, 0.25, 0.125]
    assert dagger_beta(TeacherConfig(beta=0.0), 0) == 1.0 and dagger_beta(TeacherConfig(beta=0.0), 1) == 0.0
    agent = student_of(sb3_teacher, "dagger", total_steps=400, round_steps=200, beta=0.0)
    teacher_acts = count_calls(monkeypatch, agent.teacher.model, "predict")
    agent.train_iteration()
    assert teacher_acts[0] == 200  # round 0: the teacher acts at every step
    agent.train_iteration()
    assert teacher_acts[0] == 200  # beta 0 from round 1: the student alone
    agent.close()


def test_bc_never_steps_the_env_after_its_data_set_is_collected(sb3_teacher, monkeypatch):
    agent = student_of(sb3_teacher, "bc", total_steps=1000, dataset_steps=600, epochs=2.0)
    teacher_steps = count_calls(monkeypatch, agent.teacher.env, "step")
    student_steps = count_calls(monkeypatch, agent.student.env, "step")
    fits = count_calls(monkeypatch, agent, "fit")
    agent.train()
    assert agent.done and agent.student.num_timesteps == 600 and len(agent.student.states) == 600
    assert (teacher_steps[0], student_steps[0], fits[0]) == (600, 0, 1)  # collected, then trained once
    agent.close()


@pytest.mark.parametrize("mode, weighting", [("ppd", "ratio"), ("kickstart", "none")])
def test_ppo_with_a_zero_term_is_ppo_step_for_step_and_the_term_moves_the_student(sb3_teacher, mode, weighting):
    """PPO's update with PPD's or kickstarting's term at lambda 0 lands on SB3's own PPO update,
    parameter for parameter; with lambda > 0 it moves the student towards the teacher."""
    import copy

    from dpd.agents.distillation import answer_on
    from dpd.agents.ppd import flat_order, ppd_update

    agent = student_of(sb3_teacher, mode, total_steps=4096)
    assert agent.term_weighting == weighting  # a PPO student: the term rides in PPO's update
    student = agent.student
    student.train_iteration(0, update="none")  # a full rollout in the buffer, not yet learned from
    answer = answer_on(agent.teacher, flat_order(student.recorder.take().observations))
    target = student.express_target(answer.output, answer.kind)
    policy, model = student.model.policy, student.model
    saved = (copy.deepcopy(policy.state_dict()), copy.deepcopy(policy.optimizer.state_dict()), model._n_updates)
    buffer = copy.deepcopy(model.rollout_buffer)

    def restore() -> None:
        policy.load_state_dict(saved[0])
        policy.optimizer.load_state_dict(saved[1])
        model._n_updates = saved[2]
        model.rollout_buffer = copy.deepcopy(buffer)
        np.random.seed(7)

    def kl_to_teacher() -> float:
        states = student.states.at(np.arange(len(student.states)))
        with torch.no_grad():
            return float(student.distill_loss(student.policy_on(states), agent.teacher.policy_on(states)))

    restore()
    model.train()
    sb3 = [p.detach().clone() for p in policy.parameters()]
    restore()
    before = kl_to_teacher()
    ppd_update(student, target, 0.0, weighting)
    assert all(torch.equal(a, b) for a, b in zip(sb3, policy.parameters()))
    restore()
    ppd_update(student, target, 10.0, weighting)
    assert kl_to_teacher() < before and not all(torch.equal(a, b) for a, b in zip(sb3, policy.parameters()))
    agent.close()


@pytest.mark.parametrize("student_algo, path_tag", [("ppo", "distill/term_weight"), ("a2c", "distill/gradient_steps")])
def test_kickstart_sums_the_term_into_ppo_and_alternates_steps_otherwise(sb3_teacher, tmp_path, student_algo, path_tag):
    """A PPO student's kickstarting term rides in PPO's update; another's takes its own steps."""
    run_dir = tmp_path / student_algo
    short = ["--total-steps", "1024", "--set", "distill.steps=4"]  # A2C iterates every 5 env steps
    assert distill(sb3_teacher, run_dir, "kickstart", "--student-algo", student_algo, *short) == 0
    tags = scalar_tags(run_dir / "tb" / "student").Tags()["scalars"]
    assert "distill/lambda" in tags and path_tag in tags
    assert ("distill/gradient_steps" in tags) == (student_algo != "ppo")


def test_ppd_needs_a_ppo_student(sb3_teacher, tmp_path, capsys):
    run_dir = tmp_path / "never"
    args = ["distill", "--env", TINY, "--total-steps", "512", "--teacher", str(sb3_teacher), "--mode", "ppd"]
    message = expect_cli_error([*args, "--student-algo", "a2c", "--run-dir", str(run_dir)], capsys)
    assert "mode ppd distils into a PPO student" in message and not run_dir.exists()


@pytest.mark.parametrize("teacher_algo", ["ppo", "sac", "td3"])
@pytest.mark.parametrize("student_algo", ["ppo", "a2c", "sac"])
def test_a_student_of_each_algorithm_pair_lowers_its_loss_against_a_fixed_teacher(teacher_algo, student_algo):
    """KL where teacher and student are Gaussians of one kind, MSE on env-unit actions otherwise
    (``student_distill_defaults``); constructed states, a fixed (untrained) teacher."""
    from dpd.agents import ALGORITHMS
    from dpd.agents.distillation import answer_on, distill_step

    kinds = {ALGORITHMS[teacher_algo].distribution_kind, ALGORITHMS[student_algo].distribution_kind}
    loss = "kl" if len(kinds) == 1 and "deterministic" not in kinds else "mse"
    (teacher,) = tiny_learners(teacher_algo)
    (student,) = tiny_learners(student_algo, seed=1, distill={"loss": loss, "lr": 3e-3})
    states = np.random.default_rng(0).normal(size=(256, student.states.states.shape[1])).astype(np.float32)
    answer = answer_on(teacher, states)

    def current() -> float:
        with torch.no_grad():
            target = student.express_target(answer.output, answer.kind)
            return float(student.distill_loss(student.action_distribution(student.normalize(states)), target))

    before = current()
    for _ in range(100):
        distill_step(student, [answer], states, "none", 0.5)
    assert current() < 0.5 * before, (teacher_algo, student_algo, loss)
    teacher.close()
    student.close()


def test_dagger_trains_its_epochs_after_each_round_up_to_its_cap(sb3_teacher, monkeypatch):
    agent = student_of(sb3_teacher, "dagger", total_steps=1024, round_steps=512, epochs=2.0, distill={"batch": 64})
    updates = count_calls(monkeypatch, agent.student, "distill_update")
    agent.train_iteration()
    assert updates[0] == 2 * 512 // 64  # two passes over the 512 states of round 0
    agent.config.max_round_updates = 5
    agent.train_iteration()
    assert updates[0] == 16 + 5  # the cap: 5 of the 32 steps two passes over 1024 states would take
    agent.close()


def test_a_dpd_run_directory_teaches_with_its_best_learner(tmp_path, capsys):
    from dpd.agents.teacher_loading import teacher_files
    from dpd.config import TeacherConfig

    peers = tmp_path / "peers"
    args = ["train", "--env", TINY, "--total-steps", "1024", "--no-progress", "--set", "eval.final_episodes=2"]
    assert main([*args, "--run-dir", str(peers)]) == 0
    manifest = read_manifest(peers)
    best = max(manifest["progress"]["final_eval"], key=lambda result: result["mean_return"])["learner"]
    files = peers / manifest["progress"]["checkpoint"] / best
    assert teacher_files(TeacherConfig(path=str(peers))) == [(files / "model.zip", str(files / "vecnormalize.pkl"))]
    other = next(name for name in ("peer0", "peer1") if name != best)
    everyone = teacher_files(TeacherConfig(path=str(peers), learners="all"))  # the best first, then the others
    assert [path.parent.name for path, _ in everyone] == [best, other]
    run_dir = tmp_path / "student"
    capsys.readouterr()
    assert distill(peers, run_dir, "dagger", "--total-steps", "1024") == 0
    assert f"ppo student of {files / 'model.zip'} on {TINY}" in capsys.readouterr().out  # the file it picked
    assert read_manifest(run_dir)["progress"]["finished"]
    group = tmp_path / "group-student"  # both peers teach; per state the one that values it highest
    assert distill(peers, group, "dagger", "--total-steps", "1024", "--set", "teacher.learners=all") == 0
    assert f"{files / 'model.zip'}, {everyone[1][0]} on {TINY}" in capsys.readouterr().out
    assert read_manifest(group)["progress"]["finished"]
    mean = tmp_path / "mean-student"  # their mixture's moments
    assert (
        distill(
            peers, mean, "dagger", "--total-steps", "1024", "--set", "teacher.learners=all", "--set", "teacher.combine=mean"
        )
        == 0
    )
    assert read_manifest(mean)["progress"]["finished"]
    assert "teacher.learners=all takes the learners of a dpd run directory" in expect_cli_error(
        ["distill", "--teacher", str(files / "model.zip"), "--env", TINY, "--set", "teacher.learners=all",
         "--run-dir", str(tmp_path / "s3"), "--no-progress"], capsys
    )  # fmt: skip
    some = ["distill", "--teacher", str(peers), "--env", TINY, "--set", "teacher.learners=some"]
    assert "unknown teacher.learners 'some'" in expect_cli_error([*some, "--run-dir", str(tmp_path / "s4")], capsys)
    assert not (tmp_path / "s3").exists() and not (tmp_path / "s4").exists()
    from dpd.rundir import RunDirectory

    empty = tmp_path / "empty"  # a run created, never checkpointed
    RunDirectory.create(empty, {"config": {}, "progress": {"run_steps": 0, "finished": False, "checkpoint": None}}).unlock()
    assert "has no checkpoint yet" in expect_cli_error(
        ["distill", "--teacher", str(empty), "--env", TINY, "--run-dir", str(tmp_path / "s2"), "--no-progress"], capsys
    )
    assert not (tmp_path / "s2").exists()


def test_dpd_fidelity_takes_run_directories(sb3_teacher, tmp_path, capsys):
    run_dir = tmp_path / "student"
    assert distill(sb3_teacher, run_dir, "dagger", "--total-steps", "1024") == 0
    capsys.readouterr()
    args = ["fidelity", str(sb3_teacher), str(run_dir), "--env", TINY, "--episodes", "2", "--states", "50", "--json"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert 0 <= report["teacher_states/agreement"] <= 1 and report["student_return"] is not None


def test_several_teachers_each_label_every_state_once():
    from dpd.agents.state_buffer import RawStateBuffer
    from dpd.agents.teacher_student import TeacherLabels

    teachers = tiny_learners(peers=2, start=True)
    obs_dim = teachers[0].env.observation_space.shape[0]
    buffer = RawStateBuffer(64, obs_dim)
    buffer.add(np.random.default_rng(0).normal(size=(40, obs_dim)).astype(np.float32))
    labels = TeacherLabels(teachers, buffer)
    labels.label_all()
    indices = np.arange(40)
    answers = labels.answers_at(indices)
    assert len(answers) == 2 and labels.labelled == 40
    for teacher, answer in zip(teachers, answers):
        assert torch.allclose(answer.output.mean, teacher.policy_on(buffer.at(indices)).mean)
        np.testing.assert_allclose(answer.values, teacher.values_on(buffer.at(indices)))
    assert not torch.allclose(answers[0].output.mean, answers[1].output.mean)  # two different teachers
