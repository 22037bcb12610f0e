"""What a benchmark runs: methods, presets and the grid of (env, algo, method, seed) runs.

Every method of one grid gets the same total env steps, hyperparameters and seeds; only the
number of learners and the distillation settings differ.
"""

import inspect
from dataclasses import dataclass, field
from typing import Any, Dict, List, Tuple

from dpd.errors import UserError, unknown_choice

# Config layers that turn the grid's shared config into each method. ``sb3`` is trained by
# SB3's own ``learn()`` (runner.py); the layer only fixes its single learner.
METHODS: Dict[str, Dict[str, Any]] = {
    "sb3": {"peers": 1, "distill": {"enabled": False}},
    "sb3-utd": {"peers": 1, "distill": {"enabled": False}},  # its updates are set in BenchRun.config
    "dpd": {},
    "independent": {"distill": {"enabled": False}},
    "dpd-hard": {"distill": {"weighting": "hard"}},
    "dpd-none": {"distill": {"weighting": "none"}},
    # Peers that share experience: off-policy peers every transition (dpd.agents.sharing),
    # on-policy peers their rollouts (dpd.agents.rollout_sharing)...
    "shared": {"distill": {"enabled": False}, "share": {"enabled": True}},
    # ... and follow the best peer (P3S; dpd.agents.guidance) ...
    "shared-guided": {"distill": {"enabled": False}, "share": {"enabled": True}, "guide": {"mode": "best"}},
    # ... or are distilled towards the best peer every 5000 steps (PIEKD) ...
    "shared-distill": {
        "distill": {"enabled": False},
        "share": {"enabled": True},
        "guide": {"mode": "distill", "every": 5000, "steps": 1000},
    },
    # PIEKD as published: one peer acts per episode, all learn from the shared buffer at their
    # own update rate (N times the updates: compare with sb3-utd), and the best is distilled
    # into the others, policy and critics, every 5000 steps.
    "piekd": {
        "distill": {"enabled": False},
        "share": {"enabled": True, "act": "episode", "updates": "per_peer"},
        "guide": {"mode": "distill", "every": 5000, "steps": 1000},
    },
    # ... or distill from each other where the peer is better (DPD's weighted distillation).
    "shared-dpd": {"share": {"enabled": True}},
    # Sharing with each peer updating as if alone: off-policy peers compare with sb3-utd (same
    # updates per env step); on-policy peers collect n_steps / N each and update as often as sb3.
    "shared-per-peer": {"distill": {"enabled": False}, "share": {"enabled": True, "updates": "per_peer"}},
    # ... and with DPD's weighted distillation, which keeps the peers' policies close.
    "shared-dpd-per-peer": {"share": {"enabled": True, "updates": "per_peer"}},
    # Guidance by the best peer without sharing: what the guidance alone does.
    "guided": {"distill": {"enabled": False}, "guide": {"mode": "best"}},
    # P3S as its released code runs it: sharing, guidance, and per-peer updates.
    "shared-guided-per-peer": {
        "distill": {"enabled": False},
        "share": {"enabled": True, "updates": "per_peer"},
        "guide": {"mode": "best"},
    },
    # A DPD group on the budget less ``student_steps``, then one student of the group's learners
    # on those steps (BenchRun.student_config): a single deployable policy at sb3's env steps.
    "dpd-distilled": {},
}
PLAIN_SB3 = "sb3"
# One SB3 learner at the update-to-data ratio of a group whose peers update as if alone
# (``share.updates=per_peer``): ``gradient_steps`` (PPO: ``n_epochs``) times the number of peers.
PLAIN_SB3_UTD = "sb3-utd"
SINGLE_LEARNER_METHODS = (PLAIN_SB3, PLAIN_SB3_UTD)
DISTILLED = "dpd-distilled"
# The student's share of a dpd-distilled run's env steps: dpd's DAgger reaches 0.99 of a zoo
# teacher within 8k env steps on the three MuJoCo tasks (benchmarks/RESULTS.md), so 25k, and at
# most a quarter of a short run's budget.
DISTILLED_STUDENT_STEPS = 25_000


def student_steps(total_steps: int) -> int:
    """The env steps a dpd-distilled run leaves its student."""
    return min(DISTILLED_STUDENT_STEPS, total_steps // 4)


# Checkpoints a run writes over its budget: a kill (a session's end) loses at most
# 1/CHECKPOINTS_PER_RUN of the run, for writing every learner (and its replay buffer) as often.
CHECKPOINTS_PER_RUN = 10


@dataclass(frozen=True)
class Grid:
    envs: Tuple[str, ...]
    algos: Tuple[str, ...]
    methods: Tuple[str, ...]
    seeds: Tuple[int, ...]
    total_steps: int
    peers: int = 2
    eval_every: int = 50_000  # total env steps of a run between evaluations
    eval_episodes: int = 5
    final_episodes: int = 10
    overrides: Tuple[str, ...] = ()  # "key=value" config overrides for every run (e.g. distill.alpha=1.0)


PRESETS: Dict[str, Grid] = {
    # A coffee's worth on 2 cores (about 25 minutes).
    "quick": Grid(
        envs=("HalfCheetah-v5", "Hopper-v5"),
        algos=("ppo",),
        methods=("sb3", "dpd", "independent"),
        seeds=(0, 1, 2),
        total_steps=200_000,
        eval_every=20_000,
    ),
    # The product's evidence: 75 runs of 1M steps (hours of CPU time; use --workers).
    "full": Grid(
        envs=("HalfCheetah-v5", "Hopper-v5", "Walker2d-v5"),
        algos=("ppo",),
        methods=("sb3", "dpd", "independent", "dpd-hard", "dpd-none"),
        seeds=(0, 1, 2, 3, 4),
        total_steps=1_000_000,
        eval_every=50_000,
    ),
    # Whether a group of off-policy peers pays: SAC at 300k total env steps, equal env steps for
    # every method; equal gradient updates for the first six, and P3S's own budget (each peer one
    # update per group env step) for the last two. About 250 CPU-hours: 105 minutes per sb3 run on
    # this project's 2-core machine, 180 per run of the last two (benchmarks/RESULTS.md).
    "offpolicy": Grid(
        envs=("HalfCheetah-v5", "Hopper-v5", "Walker2d-v5"),
        algos=("sac",),
        methods=(
            "sb3",
            "independent",
            "shared",
            "shared-guided",
            "shared-distill",
            "shared-dpd",
            "sb3-utd",
            "shared-guided-per-peer",
        ),
        seeds=(0, 1, 2, 3, 4),
        total_steps=300_000,
        eval_every=20_000,
    ),
}


@dataclass(frozen=True)
class BenchRun:
    """One training run of the grid; ``key`` names its directory under ``--out``."""

    env: str
    algo: str
    method: str
    seed: int
    total_steps: int
    peers: int
    eval_every: int
    eval_episodes: int
    final_episodes: int
    overrides: Tuple[str, ...] = field(default=())

    @property
    def key(self) -> str:
        return f"{self.env}/{self.algo}/{self.method}/seed{self.seed}"

    def config(self) -> Dict[str, Any]:
        """The run's ``RunConfig`` layer: the grid's settings, overrides, then the method's."""
        from dpd.config import merge, parse_overrides

        learners = 1 if self.method in SINGLE_LEARNER_METHODS else self.peers
        budget = self.total_steps - student_steps(self.total_steps) if self.method == DISTILLED else self.total_steps
        layer: Dict[str, Any] = {
            "env": self.env,
            "algo": self.algo,
            "seed": self.seed,
            "total_steps": budget,
            "peers": learners,
            # After a kill, a rerun continues the run from its latest checkpoint.
            "checkpoint_every": -(-budget // CHECKPOINTS_PER_RUN),
            # Each learner evaluates at its own steps; peers share the budget, so a group is
            # evaluated every ``eval_every`` total steps, like the single learner.
            "eval": {
                "every": max(1, self.eval_every // learners),
                "episodes": self.eval_episodes,
                "final_episodes": self.final_episodes,
            },
        }
        layer = merge(merge(layer, parse_overrides(list(self.overrides))), METHODS[self.method])
        if self.method == PLAIN_SB3_UTD:
            layer = merge(layer, {"algo_kwargs": updates_times(self.algo, self.env, layer.get("algo_kwargs", {}), self.peers)})
        return layer

    def student_config(self, group_run: str) -> Dict[str, Any]:
        """A dpd-distilled run's student: the group's algorithm and hyperparameters, taught by
        every learner of the finished group at ``group_run`` (``teacher.learners=all``: per state
        the one whose critic values it highest) with dpd's default mode, on the run's last
        ``student_steps``; evaluated five times on the way."""
        steps = student_steps(self.total_steps)
        layer = {key: value for key, value in self.config().items() if key not in ("distill", "share", "guide")}
        layer.update(
            peers=1,
            total_steps=steps,
            checkpoint_every=-(-steps // CHECKPOINTS_PER_RUN),
            teacher={"path": group_run, "learners": "all"},
        )
        layer["eval"] = {**layer["eval"], "every": max(1, steps // 5)}
        return layer


def updates_times(algo: str, env: str, algo_kwargs: Dict[str, Any], factor: int) -> Dict[str, Any]:
    """The hyperparameter that sets ``algo``'s gradient updates per env step, ``factor`` times its
    value (the run's, else the env's default, else SB3's): an off-policy learner's
    ``gradient_steps``, PPO's ``n_epochs`` (each epoch a pass of minibatches over the rollout)."""
    from dpd.agents.algorithms import ALGORITHMS
    from dpd.agents.peer_setup import sb3_default
    from dpd.config import merge
    from dpd.envs.defaults import env_defaults

    resolved = merge(env_defaults(env, algo), algo_kwargs)
    key = "gradient_steps" if ALGORITHMS[algo].off_policy else "n_epochs"
    if key not in inspect.signature(ALGORITHMS[algo].algo_class.__init__).parameters:
        raise UserError(f"{PLAIN_SB3_UTD} multiplies a learner's updates per env step, which {algo} cannot (no {key})")
    value = resolved.get(key, sb3_default(algo, key))
    if value < 1:
        raise UserError(f"{PLAIN_SB3_UTD} multiplies {key}, which must then be a positive count, got {value}")
    return {key: value * factor}


def parse_seeds(text: str) -> Tuple[int, ...]:
    """``0-4`` or ``0,2,7`` or a mix such as ``0-2,9``."""
    seeds: List[int] = []
    try:
        for part in text.split(","):
            first, _, last = part.strip().partition("-")
            if last and int(last) < int(first):
                raise UserError(f"--seeds range {part.strip()!r} is reversed; write {last}-{first}")
            seeds.extend(range(int(first), int(last) + 1) if last else [int(first)])
    except ValueError:
        raise UserError(f"--seeds expects a list such as 0-4 or 0,2,7 of seeds from 0, got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds must name distinct seeds, got {text!r}")
    return tuple(seeds)


def split_list(text: str) -> Tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def expand(grid: Grid) -> List[BenchRun]:
    """Every run of the grid, checked before anything starts (a typo fails at once, not an hour in)."""
    from dpd.agents import check_config
    from dpd.agents.algorithms import ALGORITHMS
    from dpd.config import build_config

    for method in grid.methods:
        if method not in METHODS:
            raise unknown_choice("benchmark method", method, METHODS)
    for algo in grid.algos:
        if algo not in ALGORITHMS:
            raise unknown_choice("algorithm", algo, ALGORITHMS)
    positive = {
        "total_steps": grid.total_steps,
        "peers": grid.peers,
        "eval_every": grid.eval_every,
        "eval_episodes": grid.eval_episodes,
        "final_episodes": grid.final_episodes,
    }
    for name, value in positive.items():
        if value <= 0:
            raise UserError(f"{name} must be positive, got {value}")
    if not (grid.envs and grid.algos and grid.methods and grid.seeds):
        raise UserError("the grid is empty: give at least one env, algo, method and seed")
    runs = [
        BenchRun(
            env,
            algo,
            method,
            seed,
            grid.total_steps,
            grid.peers,
            grid.eval_every,
            grid.eval_episodes,
            grid.final_episodes,
            grid.overrides,
        )
        for env in grid.envs
        for algo in grid.algos
        for method in grid.methods
        for seed in grid.seeds
    ]
    for run in runs:
        if run.seed == grid.seeds[0]:
            check_config(build_config(run.config()))
    return runs
