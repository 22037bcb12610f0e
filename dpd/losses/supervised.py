"""Supervised knowledge-distillation losses.

Student and teacher are tensors: logits of shape (batch, classes), or embeddings of shape
(batch, dim). Extra inputs (labels, temperature, gate, ...) come as keyword arguments. Every
function returns one value per sample, so the registry's per-sample weights work here as they do
for policy losses. Relational losses (RKD, ReAugKD) compare pairs or triples of samples; their
per-sample value is the mean over the relations that sample anchors, so the batch mean is the
loss of the paper.

Teacher tensors are detached here: the teacher is a fixed target, never trained by these losses.
"""

import torch
import torch.nn.functional as F

from dpd.losses.registry import register_loss


def categorical_kl(target_log_probs: torch.Tensor, log_probs: torch.Tensor) -> torch.Tensor:
    """KL(target || p) per row, from log-probabilities; zero-probability targets contribute 0."""
    target_probs = target_log_probs.exp()
    terms = target_probs * (target_log_probs - log_probs)
    return torch.where(target_probs > 0, terms, torch.zeros_like(terms)).sum(dim=-1)


@register_loss(
    "kd_ce", "supervised", "cross-entropy of student logits against target probabilities (one-hot labels or soft targets)"
)
def soft_cross_entropy(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    return -(teacher.detach() * F.log_softmax(student, dim=-1)).sum(dim=-1)


@register_loss("kd_kl", "supervised", "tau^2 * KL(softmax(z_t / tau) || softmax(z_s / tau)) on logits (Hinton's soft term)")
def softened_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    # tau^2 keeps the gradient scale of the soft term independent of the temperature.
    teacher_log_probs = F.log_softmax(teacher.detach() / temperature, dim=-1)
    return temperature**2 * categorical_kl(teacher_log_probs, F.log_softmax(student / temperature, dim=-1))


@register_loss("hinton_kd", "supervised", "alpha * CE(y, z_s) + (1 - alpha) * tau^2 * KL on softened logits (Hinton et al.)")
def hinton(
    student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, alpha: float = 0.5, temperature: float = 4.0
) -> torch.Tensor:
    hard = F.cross_entropy(student, labels, reduction="none")
    return alpha * hard + (1 - alpha) * softened_kl(student, teacher, temperature)


@register_loss(
    "hint_mse",
    "supervised",
    "mean squared error between features (FitNets hints after the regressor; RID's filtered features)",
)
def hint_mse(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    return ((student - teacher.detach()) ** 2).mean(dim=-1)


def _off_diagonal_mean(matrix: torch.Tensor) -> torch.Tensor:
    """Per-row mean over the columns other than the diagonal (a sample's relations to the others)."""
    n = matrix.shape[0]
    mask = ~torch.eye(n, dtype=torch.bool, device=matrix.device)
    return (matrix * mask).sum(dim=1) / max(n - 1, 1)


def _normalised_distances(embeddings: torch.Tensor) -> torch.Tensor:
    """Pairwise Euclidean distances divided by their mean over distinct pairs (RKD's scale invariance)."""
    distances = torch.cdist(embeddings, embeddings)
    mean = distances.sum() / max(embeddings.shape[0] * (embeddings.shape[0] - 1), 1)
    return distances / mean.clamp_min(1e-12)


@register_loss(
    "rkd_dist", "supervised", "RKD distance-wise loss: Huber between mean-normalised pairwise distances (Park et al.)"
)
def rkd_distance(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    huber = F.smooth_l1_loss(_normalised_distances(student), _normalised_distances(teacher.detach()), reduction="none")
    return _off_diagonal_mean(huber)


def _angles(embeddings: torch.Tensor) -> torch.Tensor:
    """cos of the angle at vertex j of every triangle (i, j, k): entry [j, i, k]."""
    directions = F.normalize(embeddings.unsqueeze(0) - embeddings.unsqueeze(1), p=2, dim=2)
    return torch.bmm(directions, directions.transpose(1, 2))


@register_loss(
    "rkd_angle", "supervised", "RKD angle-wise loss: Huber between cosines of the angles of all sample triples (Park et al.)"
)
def rkd_angle(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    huber = F.smooth_l1_loss(_angles(student), _angles(teacher.detach()), reduction="none")
    # Per vertex j: the mean over its n^2 triangles (degenerate ones are zero on both sides).
    return huber.flatten(start_dim=1).mean(dim=1)


def _cosine_logits(anchors: torch.Tensor, keys: torch.Tensor, temperature: float) -> torch.Tensor:
    return F.normalize(anchors, dim=-1) @ F.normalize(keys, dim=-1).T / temperature


@register_loss(
    "supcon",
    "supervised",
    "supervised contrastive loss of anchors (student) against keys (teacher) with the same label (Khosla et al.)",
)
def supervised_contrastive(
    student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1, exclude_self: bool = True
) -> torch.Tensor:
    """Mean -log p(positive | anchor) over each anchor's positives. With ``exclude_self`` the
    anchors and keys are the same batch, and a sample is neither its own positive nor negative."""
    logits = _cosine_logits(student, teacher, temperature)
    positives = labels.unsqueeze(1) == labels.unsqueeze(0)
    if exclude_self:
        self_mask = torch.eye(len(labels), dtype=torch.bool, device=logits.device)
        logits = logits.masked_fill(self_mask, float("-inf"))
        positives = positives & ~self_mask
    log_probs = F.log_softmax(logits, dim=1)
    count = positives.sum(dim=1)
    summed = torch.where(positives, log_probs, torch.zeros_like(log_probs)).sum(dim=1)
    # An anchor without positives in the batch has nothing to pull toward: it contributes 0.
    return torch.where(count > 0, -summed / count.clamp_min(1), torch.zeros_like(summed))


@register_loss(
    "reaugkd_rel",
    "supervised",
    "ReAugKD relational alignment: KL(teacher-teacher || student-teacher) softmaxed cosine similarity rows",
)
def reaugkd_relational(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Row i compares how sample i's student embedding relates to the batch's teacher embeddings
    with how its teacher embedding does; the student learns the geometry that retrieval uses."""
    teacher = teacher.detach()
    target = F.log_softmax(_cosine_logits(teacher, teacher, temperature), dim=1)
    return categorical_kl(target, F.log_softmax(_cosine_logits(student, teacher, temperature), dim=1))


def scaffold_mass(teacher: torch.Tensor, labels: torch.Tensor, top_k: int) -> torch.Tensor:
    """Uniform distribution over the teacher's top-k classes and the true class (DiSK's scaffold)."""
    mask = torch.zeros_like(teacher, dtype=torch.bool)
    mask.scatter_(1, teacher.topk(min(top_k, teacher.shape[1]), dim=1).indices, True)
    mask.scatter_(1, labels.unsqueeze(1), True)
    return mask.float() / mask.sum(dim=1, keepdim=True)


@register_loss(
    "disk_kd",
    "supervised",
    "DiSK: Hinton loss on the student's softmax mixed, by gate g, with mass on the teacher's top-k and true classes",
)
def scaffolded_kd(
    student: torch.Tensor,
    teacher: torch.Tensor,
    labels: torch.Tensor,
    gate: torch.Tensor,
    top_k: int = 2,
    alpha: float = 0.5,
    temperature: float = 4.0,
) -> torch.Tensor:
    """``q = (1 - g) softmax(z_s / tau) + g * scaffold``: where the gate is open the target classes
    already have mass, so a hard example stops dominating the student's gradient (censoring)."""
    teacher = teacher.detach()
    scaffold = scaffold_mass(teacher, labels, top_k)
    g = gate.unsqueeze(1)

    def scaffolded_log_probs(tau: float) -> torch.Tensor:
        mixed = (1 - g) * F.softmax(student / tau, dim=-1) + g * scaffold
        return mixed.clamp_min(1e-12).log()

    hard = F.nll_loss(scaffolded_log_probs(1.0), labels, reduction="none")
    soft = categorical_kl(F.log_softmax(teacher / temperature, dim=-1), scaffolded_log_probs(temperature))
    return alpha * hard + (1 - alpha) * temperature**2 * soft
