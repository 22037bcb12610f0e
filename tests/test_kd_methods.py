"""Every KD method end to end on a tiny task, the knowledge base's exact retrieval, teachers, and
the ``dpd kd`` command with its run directory and TensorBoard tags."""

import json
import math
import time

import pytest
import torch

from dpd.errors import UserError
from dpd.kd.data import load_dataset
from dpd.kd.experiment import distill_and_measure
from dpd.kd.methods import KDOptions, method_names
from dpd.kd.methods.cooperative import Peer, _epochs_per_round, counterfactuals
from dpd.kd.methods.disk import LagrangeMultiplier
from dpd.kd.methods.reaugkd import KnowledgeBase, RetrievalAugmented, retrieval_cost
from dpd.kd.models import ModelOutput, log_probs_of, seeded_mlp
from dpd.kd.options import METHOD_NAMES, Schedule, SyntheticSpec
from dpd.kd.teachers import NuisanceTeacher, Teacher, load_teacher, save_teacher, train_teacher
from tests.conftest import kd, scalar_tags

CLASSES = 3
TINY = SyntheticSpec(samples=240, features=8, classes=CLASSES, difficulty="easy")
FAST = Schedule(epochs=20, batch_size=32, lr=1e-2)
QUICK_OPTIONS = KDOptions(projection_epochs=5, filter_epochs=5, coop_rounds=2, coop_virtual=8)
TINY_FLAGS = [
    "--dataset",
    "synthetic",
    "--samples",
    "240",
    "--features",
    "8",
    "--classes",
    "3",
    "--difficulty",
    "easy",
    "--epochs",
    "20",
    "--batch-size",
    "32",
    "--lr",
    "0.01",
]


@pytest.fixture(scope="module")
def tiny():
    return load_dataset("synthetic", synthetic=TINY)


@pytest.fixture(scope="module")
def teacher(tiny):
    return train_teacher(tiny, (32, 32), "single", 1, Schedule(30, 32, 1e-2), seed=0)


def test_the_command_line_lists_every_registered_method():
    assert list(METHOD_NAMES) == method_names()


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_each_method_beats_chance_on_a_tiny_task(tiny, teacher, method):
    report, result = distill_and_measure(tiny, teacher, method, (8,), FAST, seed=0, options=QUICK_OPTIONS)
    fidelity = report.fidelity
    assert fidelity.teacher_accuracy > 0.8
    assert fidelity.student_accuracy > 1 / CLASSES + 0.3, f"{method}: {fidelity}"
    assert fidelity.test.agreement > 1 / CLASSES + 0.3 and math.isfinite(fidelity.test.kl) and fidelity.test.kl >= 0
    assert result.student.hidden == (8,)


def test_hinton_with_alpha_one_is_the_ce_student(tiny, teacher):
    ce, _ = distill_and_measure(tiny, teacher, "ce", (8,), FAST, seed=3)
    labels_only, _ = distill_and_measure(tiny, teacher, "hinton", (8,), FAST, seed=3, options=KDOptions(alpha=1.0))
    assert labels_only.fidelity == ce.fidelity


def test_knowledge_base_returns_the_exact_nearest_neighbours():
    # Eight keys on the unit circle at 0, 45, ..., 315 degrees, stored with different lengths:
    # cosine similarity ignores the length.
    angles = torch.arange(8) * math.pi / 4
    keys = torch.stack([torch.cos(angles), torch.sin(angles)], dim=1) * torch.arange(1, 9).unsqueeze(1)
    base = KnowledgeBase(keys, torch.eye(8))
    query = torch.tensor([[math.cos(math.radians(100)), math.sin(math.radians(100))]])  # 10 deg from 90, 35 from 135
    similarities, indices = base.search(query, k=3)
    assert indices.tolist() == [[2, 3, 1]]
    assert similarities[0].tolist() == pytest.approx([math.cos(math.radians(d)) for d in (10, 35, 55)], rel=1e-5)
    # k = 1 returns the nearest value itself; larger k weights values by softmax(similarity / T).
    assert base.soft_labels(query, k=1, temperature=0.1).tolist() == [torch.eye(8)[2].tolist()]
    weights = torch.softmax(similarities[0] / 0.5, dim=0)
    assert base.soft_labels(query, k=3, temperature=0.5)[0, [2, 3, 1]].tolist() == pytest.approx(weights.tolist(), rel=1e-5)


def test_knowledge_base_matches_brute_force_search():
    generator = torch.Generator().manual_seed(0)
    keys, queries = torch.randn(50, 6, generator=generator), torch.randn(9, 6, generator=generator)
    _, indices = KnowledgeBase(keys, torch.zeros(50, 2)).search(queries, k=4)
    for query, found in zip(queries, indices):
        distances = (keys / keys.norm(dim=1, keepdim=True) - query / query.norm()).norm(dim=1)
        assert found.tolist() == distances.argsort()[:4].tolist()


def test_retrieval_mixing_weight(tiny, teacher):
    student = seeded_mlp(tiny.n_features, (8,), CLASSES, seed=0)
    soft_labels = torch.softmax(teacher(tiny.x_train).logits, dim=-1)
    base = KnowledgeBase(torch.randn(len(soft_labels), 8), soft_labels)
    alone = RetrievalAugmented(student, base, k=3, mix=0.0, temperature=0.1)
    assert torch.allclose(alone(tiny.x_test), log_probs_of(student, tiny.x_test), atol=1e-5)
    retrieved = RetrievalAugmented(student, base, k=3, mix=1.0, temperature=0.1)(tiny.x_test).exp()
    expected = base.soft_labels(student(tiny.x_test).embedding, 3, 0.1)
    assert torch.allclose(retrieved, expected, atol=1e-5)


def test_reaugkd_reports_the_inference_cost_of_retrieval(tiny, teacher):
    report, result = distill_and_measure(tiny, teacher, "reaugkd", (8,), FAST, seed=0, options=QUICK_OPTIONS)
    extras = report.extras
    assert extras["knowledge_base_size"] == len(tiny.y_train)
    timings = {
        "batch_us_per_sample_alone",
        "batch_us_per_sample_retrieval",
        "single_sample_us_alone",
        "single_sample_us_retrieval",
    }
    assert timings <= set(extras)  # their values: test_retrieval_cost_measures_a_known_delay
    alone = log_probs_of(result.student, tiny.x_test).argmax(dim=1)
    assert extras["student_alone_test_accuracy"] == pytest.approx((alone == tiny.y_test).float().mean().item())


def test_retrieval_cost_measures_a_known_delay():
    delay = 2e-3

    def slow(x: torch.Tensor) -> torch.Tensor:
        time.sleep(delay)
        return x

    cost = retrieval_cost(lambda x: x, slow, torch.zeros(4, 2), repeats=3, singles=4)
    assert cost["single_sample_us_retrieval"] >= 1e6 * delay  # one call per sample
    assert cost["batch_us_per_sample_retrieval"] >= 1e6 * delay / 4  # one call for the batch of 4
    # the identity is far faster than a sleep: retrieval more than doubles the time
    assert cost["batch_retrieval_overhead_pct"] > 100.0 and cost["single_sample_retrieval_overhead_pct"] > 100.0


def test_ensemble_averages_probabilities_and_concatenates_features(tiny):
    ensemble = train_teacher(tiny, (16,), "ensemble", 3, Schedule(2, 32), seed=0)
    out = ensemble(tiny.x_test)
    members = [member(tiny.x_test) for member in ensemble.members]
    mean_probs = torch.stack([torch.softmax(m.logits, dim=-1) for m in members]).mean(dim=0)
    assert torch.allclose(torch.softmax(out.logits, dim=-1), mean_probs, atol=1e-6)
    assert out.embedding.shape[1] == 3 * 16
    assert len({tuple(m.head.weight.flatten()[:3].tolist()) for m in ensemble.members}) == 3  # distinct members
    assert ensemble.describe() == "ensemble of 3 x 16"


def test_saved_teacher_reloads_only_on_its_own_data(tmp_path, tiny, teacher):
    path = tmp_path / "teacher.pt"
    save_teacher(teacher, path, tiny)
    loaded = load_teacher(path, tiny)
    assert torch.equal(loaded(tiny.x_test).logits, teacher(tiny.x_test).logits)
    other = load_dataset("synthetic", synthetic=TINY, split_seed=1)
    with pytest.raises(UserError, match="trained on other data"):
        load_teacher(path, other)
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(UserError, match="cannot read teacher"):
        load_teacher(tmp_path / "junk.pt", tiny)


def test_nuisance_teacher_keeps_its_predictions_and_adds_units(tiny, teacher):
    nuisance = NuisanceTeacher(teacher, tiny, dim=10, scale=3.0, seed=0)
    clean, noisy = teacher(tiny.x_test), nuisance(tiny.x_test)
    assert torch.equal(noisy.logits, clean.logits)
    assert [h.shape[1] for h in noisy.hiddens] == [32 + 10, 32 + 10]
    assert torch.equal(noisy.hiddens[0][:, :32], clean.hiddens[0])
    extra_rms = noisy.hiddens[-1][:, 32:].pow(2).mean().sqrt()
    assert extra_rms > clean.hiddens[-1].pow(2).mean().sqrt()  # a loud nuisance, by construction


def test_lagrange_multiplier_rises_while_the_budget_is_exceeded():
    multiplier = LagrangeMultiplier(budget=0.1, step_size=0.5)
    multiplier.ascend(0.5)
    assert multiplier.value == pytest.approx(0.2)
    assert multiplier.penalty(torch.tensor(0.3)).item() == pytest.approx(0.2 * 0.2)
    multiplier.ascend(0.0)
    assert multiplier.value == pytest.approx(0.15)  # slack: it falls by step * (budget - mean gate)
    for _ in range(10):
        multiplier.ascend(0.0)
    assert multiplier.value == 0.0  # and never below zero


def test_counterfactuals_cross_the_mentors_boundary():
    # A linear mentor that predicts class 1 where the first feature is positive.
    model = torch.nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[-4.0, 0.0], [4.0, 0.0]]))
        model.bias.zero_()
    mentor = Peer("mentor", lambda x: ModelOutput(model(x), ()), torch.arange(2), trainable=False)
    seeds = torch.tensor([[-0.3, 1.0], [-0.2, -1.0]])
    moved, probs = counterfactuals(mentor, seeds, target=1)
    assert (probs.argmax(dim=1) == 1).all()
    assert (moved[:, 0] > 0).all() and torch.allclose(moved[:, 1], seeds[:, 1], atol=0.05)  # moved across, little else


def test_epochs_are_spread_over_rounds():
    assert _epochs_per_round(10, 3) == [4, 3, 3]
    assert sum(_epochs_per_round(7, 7)) == 7


def test_kd_command_end_to_end_then_reuse_the_teacher(tmp_path, capsys):
    first = tmp_path / "first"
    assert kd(["--method", "hinton", *TINY_FLAGS, "--teacher-net", "32", "--student-net", "8", "--run-dir", str(first)]) == 0
    table = capsys.readouterr().out
    assert "teacher" in table and "student" in table and "agree train" in table and "KL test" in table
    assert {path.name for path in first.iterdir()} == {"config.json", "teacher.pt", "student.pt", "results.json", "tb"}
    results = json.loads((first / "results.json").read_text())
    assert results["fidelity"]["student_accuracy"] > 1 / CLASSES + 0.3

    events = scalar_tags(first / "tb")
    tags = set(events.Tags()["scalars"])
    expected = {
        "kd/teacher/loss",
        "kd/student/loss",
        "kd/student/test_accuracy",
        "fidelity/train_agreement",
        "fidelity/test_agreement",
        "fidelity/train_kl",
        "fidelity/test_kl",
    }
    assert expected <= tags, expected - tags
    assert len(events.Scalars("fidelity/test_kl")) == 20  # one point per student epoch

    second = tmp_path / "second"
    assert (
        kd(
            [
                "--method",
                "fitnet",
                *TINY_FLAGS,
                "--student-net",
                "8",
                "--teacher",
                str(first / "teacher.pt"),
                "--json",
                "--run-dir",
                str(second),
            ]
        )
        == 0
    )
    reused = json.loads(capsys.readouterr().out)
    assert reused["fidelity"]["teacher_accuracy"] == results["fidelity"]["teacher_accuracy"]
    assert reused["teacher"] == "32 (single)"


def test_kd_command_with_ensemble_and_self_distillation_teachers(tmp_path, capsys):
    assert (
        kd(
            [
                "--method",
                "ce",
                *TINY_FLAGS,
                "--teacher-net",
                "16",
                "--teacher-ensemble",
                "2",
                "--run-dir",
                str(tmp_path / "ens"),
            ]
        )
        == 0
    )
    assert "teacher ensemble of 2 x 16" in capsys.readouterr().out
    assert (
        kd(["--method", "hinton", *TINY_FLAGS, "--student-net", "8", "--self-distill", "--run-dir", str(tmp_path / "self")])
        == 0
    )
    assert "teacher 8 (self-distillation)" in capsys.readouterr().out
    loaded = load_teacher(tmp_path / "self" / "teacher.pt", load_dataset("synthetic", synthetic=TINY))
    assert isinstance(loaded, Teacher) and loaded.kind == "self" and loaded.hidden == (8,)
