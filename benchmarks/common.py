"""Shared pieces of the benchmarks: a plain SB3 learner built exactly like a dpd peer."""

import os
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch

from dpd.agents import check_config
from dpd.agents.learner import Learner
from dpd.bench.runner import plain_sb3_learner as bench_plain_sb3_learner
from dpd.config import RunConfig, build_config


def single_threaded() -> None:
    """Small MLPs run fastest on one thread; the benchmarks compare like with like."""
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def run_config(env_id: str, algo: str, total_steps: int, seed: int, peers: int = 2, **overrides: Any) -> RunConfig:
    cfg = build_config({"env": env_id, "algo": algo, "total_steps": total_steps, "seed": seed, "peers": peers}, overrides)
    check_config(cfg)
    return cfg


def plain_sb3_learner(env_id: str, algo: str, total_steps: int, seed: int, tensorboard_dir: Optional[Path] = None) -> Learner:
    """One learner with the whole budget and the same hyperparameters as a dpd peer, trained by
    SB3's own ``learn()``: the baseline a user knows (``dpd bench`` builds it the same way)."""
    return bench_plain_sb3_learner(run_config(env_id, algo, total_steps, seed, peers=1), tensorboard_dir)


def train_plain_sb3(learner: Learner) -> None:
    learner.model.learn(learner.spec.budget)


def describe(result: Tuple[float, float]) -> Dict[str, float]:
    return {"mean_return": result[0], "std_return": result[1]}
