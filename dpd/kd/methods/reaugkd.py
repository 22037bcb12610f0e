"""Retrieval-augmented KD (ReAugKD; Zhang et al., ACL 2023).

1. A linear projection maps teacher embeddings to the student's embedding width, trained with a
   supervised contrastive loss on the frozen teacher embeddings.
2. The knowledge base stores (projected teacher embedding, teacher soft labels) of every training
   example.
3. The student trains with Hinton's loss plus the relational alignment loss: its similarities to
   the teacher embeddings of the batch should be distributed like the teacher's own.
4. At inference the student retrieves its k nearest knowledge-base entries (exact cosine
   search) and mixes their similarity-weighted soft labels into its prediction.

Exact forms the paper leaves open, as chosen here: cosine similarities with one temperature for
the loss, the projection and the retrieval weights; the relational rows span the batch; the
prediction is ``(1 - mix) p_student + mix * sum_j softmax(sim_j / T) p_teacher(j)``.
"""

import time
from dataclasses import dataclass
from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from dpd.kd.fidelity import Predictor, accuracy
from dpd.kd.methods.base import DistillContext, Distilled, kd_method
from dpd.kd.models import MLP, log_probs_of
from dpd.losses import get_loss


class KnowledgeBase:
    """Keys (embeddings, stored unit-normalised) and values (soft labels); exact nearest
    neighbours by cosine similarity, i.e. by Euclidean distance between unit vectors."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        if len(keys) != len(values):
            raise ValueError(f"{len(keys)} keys but {len(values)} values")
        self.keys = F.normalize(keys.detach(), dim=-1)
        self.values = values.detach()

    def __len__(self) -> int:
        return len(self.keys)

    def search(self, queries: torch.Tensor, k: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """(similarities, indices) of the ``k`` most similar keys to each query, most similar first."""
        similarities = F.normalize(queries, dim=-1) @ self.keys.T
        return similarities.topk(min(k, len(self)), dim=-1)

    def soft_labels(self, queries: torch.Tensor, k: int, temperature: float) -> torch.Tensor:
        """The retrieved values, weighted by the softmax of their similarities."""
        similarities, indices = self.search(queries, k)
        weights = torch.softmax(similarities / temperature, dim=-1)
        return (weights.unsqueeze(-1) * self.values[indices]).sum(dim=1)


@dataclass
class RetrievalAugmented:
    """The deployed ReAugKD predictor: the student's probabilities mixed with retrieved ones."""

    student: MLP
    knowledge: KnowledgeBase
    k: int
    mix: float
    temperature: float

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self.student(x)
        retrieved = self.knowledge.soft_labels(out.embedding, self.k, self.temperature)
        mixed = (1 - self.mix) * torch.softmax(out.logits, dim=-1) + self.mix * retrieved
        return mixed.clamp_min(1e-12).log()


@kd_method(
    "reaugkd",
    "retrieval-augmented KD: relational alignment to a knowledge base of projected teacher embeddings; k-NN soft "
    "labels mixed in at inference",
)
def reaugkd(ctx: DistillContext) -> Distilled:
    options = ctx.options
    student = ctx.new_student()
    teacher = ctx.teacher_train
    width = student.hidden[-1]

    # 1. Projection of teacher embeddings into the student's embedding space.
    projection = ctx.new_module(lambda: nn.Linear(teacher.embedding.shape[1], width), seed_offset=40)
    contrastive = get_loss("supcon", kind="supervised")

    def projection_step(indices: torch.Tensor) -> Dict[str, torch.Tensor]:
        z = projection(teacher.embedding[indices])
        return {"loss": contrastive(z, z, labels=ctx.y[indices], temperature=options.reaugkd_temperature)}

    ctx.fit("reaugkd_projection", projection.parameters(), projection_step, options.projection_epochs)
    with torch.no_grad():
        keys = projection(teacher.embedding)

    # 2. The knowledge base: projected teacher embeddings and the teacher's soft labels.
    knowledge = KnowledgeBase(keys, torch.softmax(teacher.logits, dim=-1))

    # 3. The student: Hinton's loss plus relational alignment to the teacher's similarity rows.
    hinton, relational = get_loss("hinton_kd", kind="supervised"), get_loss("reaugkd_rel", kind="supervised")

    def step(indices: torch.Tensor) -> Dict[str, torch.Tensor]:
        out = student(ctx.x[indices])
        kd = hinton(
            out.logits, teacher.logits[indices], labels=ctx.y[indices], alpha=options.alpha, temperature=options.temperature
        )
        rel = relational(out.embedding, keys[indices], temperature=options.reaugkd_temperature)
        return {"loss": kd + options.reaugkd_weight * rel, "hinton": kd, "relational": rel}

    ctx.fit_student(student, step)

    # 4. Retrieval at inference, and what it costs.
    predictor = RetrievalAugmented(student, knowledge, options.reaugkd_k, options.reaugkd_mix, options.reaugkd_temperature)
    alone = lambda x: log_probs_of(student, x)  # noqa: E731
    extras = {
        "student_alone_test_accuracy": accuracy(alone(ctx.data.x_test), ctx.data.y_test),
        "knowledge_base_size": float(len(knowledge)),
        **retrieval_cost(alone, predictor, ctx.data.x_test),
    }
    return Distilled(student, predictor, extras)


def retrieval_cost(
    alone: Predictor, augmented: Predictor, x: torch.Tensor, repeats: int = 21, singles: int = 100
) -> Dict[str, float]:
    """Inference time of the student alone and with retrieval, in microseconds per sample: on the
    whole batch ``x`` (throughput) and one sample at a time (latency, the paper's measure); medians
    of interleaved repeats, and the overheads of retrieval in percent."""
    predictors = {"alone": alone, "retrieval": augmented}
    batch = {name: _median_seconds(predict, [x], repeats) / len(x) for name, predict in predictors.items()}
    rows = [x[i : i + 1] for i in range(min(singles, len(x)))]
    single = {name: _median_seconds(predict, rows, 3) / len(rows) for name, predict in predictors.items()}
    return {
        "batch_us_per_sample_alone": 1e6 * batch["alone"],
        "batch_us_per_sample_retrieval": 1e6 * batch["retrieval"],
        "batch_retrieval_overhead_pct": 100.0 * (batch["retrieval"] / batch["alone"] - 1.0),
        "single_sample_us_alone": 1e6 * single["alone"],
        "single_sample_us_retrieval": 1e6 * single["retrieval"],
        "single_sample_retrieval_overhead_pct": 100.0 * (single["retrieval"] / single["alone"] - 1.0),
    }


def _median_seconds(predict: Predictor, inputs: List[torch.Tensor], repeats: int) -> float:
    """Median wall-clock seconds of predicting every tensor of ``inputs`` once."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for x in inputs:
            predict(x)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]
