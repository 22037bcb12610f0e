"""The config's schema: every key declared once with its default and meaning (``setting``), in one
dataclass per section, each section with the checks of its own values (``check``)."""

import dataclasses
import re
from dataclasses import dataclass, field
from typing import (
    Any,
    Callable,
    Dict,
    List,
    NewType,
    Optional,
    Tuple,
    get_type_hints,
)

from dpd.errors import UserError, unknown_choice
from dpd.weighting import WEIGHTINGS

# How a learner combines N > 2 peers (``dpd.agents.peer_group``).
COMBINE_RULES = ("best", "round_robin")
# Which peers a learner distills from (``dpd.agents.peer_group``).
GATES = ("none", "return")
# Teacher-student modes and kickstarting's schedules of lambda (``dpd.agents.teacher_student``).
MODES = ("bc", "dagger", "offline", "online", "kickstart", "gated", "ppd")
SCHEDULES = ("constant", "linear", "exponential")
TEACHER_LEARNERS = ("best", "all")  # which learners of a dpd run directory teach
TEACHER_COMBINE = ("best", "mean")  # how several teachers' answers on a state make one target
DATASET_PREFIX = "minari:"  # teacher.path naming recorded demonstrations (``dpd.agents.demonstrations``)
# The modes that teach a student that sees less than its teacher (``student.obs``): those where each
# state the student stores is labelled from the full observation of the same step. ``offline``
# trains on the teacher's own state buffer, which holds no student view.
VIEW_MODES = ("bc", "dagger", "online", "kickstart", "gated", "ppd")

# A comma-separated setting whose items may be numbers (``student.obs.drop``): YAML reads ``0,3`` as
# a string, ``3`` as a number and ``[0, 3]`` as a list; all three are the one string ``0,3``.
CommaSeparated = NewType("CommaSeparated", str)


def comma_list(text: str) -> Tuple[str, ...]:
    """A comma-separated setting (``log_formats``, ``gym_packages``) as its items. Such settings
    are strings, not lists, so the manifest and ``--set`` write them as the command line does."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


def setting(
    default: Any = dataclasses.MISSING,
    doc: str = "",
    *,
    factory: Optional[Callable[[], Any]] = None,
    shown: str = "",
    allowed: Optional[str] = None,
    parse: Optional[Callable[[str], Any]] = None,
) -> Any:
    """A config field with its documentation, for the run config and ``dpd kd``'s options alike.
    ``doc``: its meaning, unit and the source of its default, one line of markdown (``config_table``,
    a flag's help). ``shown``: the default as the docs show it, where the value alone says too
    little (``None``, resolved later; ``{}``, merged over env defaults). ``factory``: a default
    factory, for mutable defaults. ``allowed``: a numeric option's range as its error names it;
    ``parse``: how its flag's text becomes a value (``dpd kd``)."""
    metadata = {"doc": doc, "shown": shown, "allowed": allowed, "parse": parse}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


PER_ALGORITHM = "per algorithm"  # the default of keys resolved from the learner's algorithm
# The most peers a run may have: each holds an SB3 model, its env and a state buffer, and every
# distillation round exchanges batches between all of them; far more is a typo, not a plan.
MAX_PEERS = 64
LOG_FORMATS = ("tensorboard", "csv", "json", "log", "stdout")  # SB3's logger formats
DEVICES = ("cpu", "cuda", "cuda:<index>", "auto")  # torch devices as SB3's ``get_device`` takes them


@dataclass
class DistillSettings:
    """How a learner distills from its peers, as the config says (``distill.*``, and
    ``peer_configs[k].distill`` per peer).

    Keys left at ``None`` take the learner's algorithm's default (``dpd.agents.algorithms``), so a
    mixed PPO + SAC group gets sensible cadences for both; set a key to apply it to every peer.
    Those defaults, with their sources, are each learner class's ``distill_defaults``
    (``agents/on_policy.py``, ``agents/off_policy.py``; docs/CONFIGURATION.md tabulates them); a student's are
    ``dpd.agents.teacher_loading``'s. ``dpd.agents.peer_setup`` resolves the settings into one
    ``DistillConfig`` per learner, which checks the values (``DistillConfig.check``).
    """

    enabled: bool = setting(True, "false (or `distill: off`): independent peers with the same budget split")
    loss: Optional[str] = setting(
        None,
        "any policy loss of the registry (`dpd losses`); peers: `mse` (the paper's); a student: `kl` where it and its "
        "teacher are Gaussians of one kind, `mse` otherwise",
        shown="per role",
    )
    weighting: str = setting(
        "soft", "`soft`, `hard` or `none`: how the disadvantage `xi = V_peer - V_self` weights each state (`dpd.weighting`)"
    )
    alpha: Optional[float] = setting(None, "the soft weight's temperature, in 1 / raw return units", shown=PER_ALGORITHM)
    every: Optional[int] = setting(None, "learner iterations between distillation rounds", shown=PER_ALGORITHM)
    start: int = setting(0, "learner env steps before the first distillation round (peers first find their own way)")
    steps: Optional[int] = setting(None, "gradient steps per round", shown=PER_ALGORITHM)
    batch: Optional[int] = setting(None, "states per gradient step", shown=PER_ALGORITHM)
    lr: Optional[float] = setting(None, "Adam learning rate of the distillation optimizer", shown=PER_ALGORITHM)
    max_grad_norm: float = setting(0.5, "gradient clipping (maximum norm) of distillation steps")
    temperature: float = setting(
        1.0,
        "`kl`, `kl_reverse`: the teacher's standard deviation is multiplied by it (above 1 a softer target, below 1 a "
        "sharper one)",
    )
    buffer_size: Optional[int] = setting(
        None, "recent raw states kept per learner, the states its peers distill on", shown=PER_ALGORITHM
    )
    combine: str = setting(
        "best",
        "with more than two peers: `best` (per state, the peer with the highest value) or `round_robin` (one peer per "
        "gradient step, in turn)",
    )
    gate: str = setting(
        "none",
        "peers only. `return` (ours): distill only from peers whose mean raw return over their last `gate_episodes` "
        "training episodes is higher than the learner's own; `none`: from every peer",
    )
    gate_episodes: int = setting(10, "training episodes the gate's recent return averages over")

    def check(self, where: str = "the run") -> None:
        """The values that are set, for ``where`` (e.g. ``peer0 (ppo)``); a key at None takes its
        learner's default and is checked once resolved (``DistillConfig``, from ``dpd.agents.checks``,
        which also checks what depends on the algorithm: a stochastic policy for distribution losses)."""
        from dpd.losses import get_loss  # imports torch: only when a config is checked

        for key in ("every", "steps", "batch", "buffer_size", "lr", "max_grad_norm", "temperature", "gate_episodes"):
            value = getattr(self, key)
            if value is not None and value <= 0:
                raise UserError(f"distill.{key} must be positive, got {value} for {where}")
        for key in ("alpha", "start"):
            value = getattr(self, key)
            if value is not None and value < 0:
                raise UserError(f"distill.{key} must not be negative, got {value} for {where}")
        if self.loss is not None:
            get_loss(self.loss, kind="policy")
            if self.temperature != 1.0 and self.loss not in ("kl", "kl_reverse"):
                raise UserError(f"distill.temperature applies to the kl and kl_reverse losses, not {self.loss!r} ({where})")
        if self.weighting not in WEIGHTINGS:
            raise unknown_choice("weighting", self.weighting, WEIGHTINGS)
        if self.combine not in COMBINE_RULES:
            raise unknown_choice("combine rule", self.combine, COMBINE_RULES)
        if self.gate not in GATES:
            raise unknown_choice("distillation gate", self.gate, GATES)


@dataclass
class DistillConfig(DistillSettings):
    """How one learner distills: ``DistillSettings`` resolved for it, with every key set.

    The keys are ``DistillSettings``' and are declared there only; ``dpd.agents.peer_setup``
    resolves them per learner, from its algorithm's defaults, its role's (peer or student), the
    run's ``distill.*`` and the peer's own (``build_distill_config``). Built by hand, it needs
    every key that has no default of its own (a key left at None names itself)."""

    def __post_init__(self) -> None:
        unset = [f.name for f in dataclasses.fields(self) if getattr(self, f.name) is None]
        if unset:
            raise TypeError(f"DistillConfig needs every key set; unset: {', '.join(unset)}")

    def due(self, iterations: int, env_steps: int) -> bool:
        """Whether a learner that has just finished iteration ``iterations`` at ``env_steps``
        distills now: every ``every`` iterations, once it has taken ``start`` env steps."""
        assert self.every is not None and self.enabled is not None
        return self.enabled and env_steps >= self.start and iterations % self.every == 0


@dataclass
class ShareConfig:
    """Shared experience between peers. Off-policy peers (SAC, TD3, DDPG): every transition any
    peer collects enters every peer's replay buffer, raw; each peer normalises with its own
    statistics. On-policy peers (PPO, A2C): each update uses the own rollout and the peers'
    latest ones, importance-weighted (SEAC). ``share: on`` on the command line is ``share.enabled: true``."""

    enabled: bool = setting(
        False,
        "true (or `share: on`): off-policy peers put every transition any of them collects into every replay buffer, "
        "raw, each normalising with its own statistics; on-policy peers (ppo, a2c) learn from their peers' latest "
        "rollouts as well as their own (SEAC, Christianos et al., NeurIPS 2020)",
    )
    updates: str = setting(
        "equal",
        "off-policy peers: gradient updates are a budget like env steps. `equal`: each peer keeps its algorithm's "
        "updates per own env step, so the group takes as many updates in total as one learner at the same total env "
        "steps (P3S's accounting); `per_peer`: each peer's `gradient_steps` times the number of peers, as if it alone "
        "had collected all the group's data (N times the compute). On-policy peers: `equal` keeps each peer's rollout "
        "of n_steps, and its epochs then run over the own and the peers' samples (N times the minibatches); "
        "`per_peer` shortens each peer's rollout to n_steps / N, so that every peer updates once per n_steps group "
        "steps, as often as one learner alone, on as many samples, own and peers' (N times the compute)",
    )
    act: str = setting(
        "all",
        "who collects experience. `all`: every peer in its own env, all in the same round; `episode`: one peer at a "
        "time for one whole episode, the one with the fewest env steps so far (PIEKD, Hong et al. 2020: one learner "
        "acts per episode, all learn from the shared buffer); off-policy peers with n_envs=1",
    )
    weight: float = setting(
        1.0, "on-policy peers: the weight (SEAC's lambda) of peers' samples in the policy and value losses (SEAC: 1)"
    )
    ratio_clip: float = setting(
        1.0,
        "on-policy peers: a peer's sample is weighted by min(pi_self / pi_peer, ratio_clip), the importance ratio of "
        "the learner's policy before the update to the collector's, truncated as V-trace truncates (Espeholt et al. "
        "2018: 1)",
    )

    UPDATES = ("equal", "per_peer")
    ACTS = ("all", "episode")

    def check(self) -> None:
        if self.updates not in self.UPDATES:
            raise unknown_choice("share.updates", self.updates, self.UPDATES)
        if self.act not in self.ACTS:
            raise unknown_choice("share.act", self.act, self.ACTS)
        if not (self.weight >= 0 and self.ratio_clip > 0):  # NaN fails both
            raise UserError(
                "share.weight must not be negative and share.ratio_clip must be positive, "
                f"got {self.weight} and {self.ratio_clip}"
            )


@dataclass
class GuideConfig:
    """Guidance by the best peer. ``guide: best`` on the command line is ``guide.mode: best``.

    mode "best" (P3S; Jung, Park, Sung, ICLR 2020): the peers other than the leader add
    ``beta / 2 * ||pi(s) - pi_leader(s)||^2`` to their actor loss, with ``beta`` adapted to keep
    the mean distance to the leader near ``target_distance`` (``dpd.agents.guidance``).
    mode "distill" (PIEKD; Hong et al. 2020): at each election the others take ``steps`` plain
    imitation steps towards the leader, and of their critics towards the leader's (``critic``),
    off-policy peers only; ``best`` works for on-policy peers too. "none": no guidance.
    """

    mode: str = setting(
        "none",
        "`best` (or `guide: best`; P3S, Jung, Park, Sung, ICLR 2020): the peers other than the leader add beta / 2 times "
        "the squared distance of their actions to the leader's to their actor loss. `distill` (PIEKD, Hong et al. 2020): "
        "at each election the others take `guide.steps` unweighted distillation steps towards the leader, off-policy "
        "peers only. `best` works for peers of one kind: off-policy, or on-policy (ppo, a2c: the Gaussian mean, the "
        "term joins every step of the policy's optimizer, on the peer's recent states). `none`: no guidance",
    )
    every: int = setting(
        1000,
        "own env steps of a peer between leader elections. P3S re-elects every 250 steps; dpd elects at the end of a "
        "round, so with `turn_steps` 1000 (the default) 1000 is the finest cadence",
    )
    episodes: int = setting(10, "training episodes whose mean raw return ranks the peers (P3S: 10)")
    beta: float = setting(1.0, "the guidance weight before any adaptation (P3S's released code: 1), kept in [1e-3, 1e3]")
    target_distance: float = setting(
        0.04,
        "the smallest search range: the mean 0.5 * squared distance to the leader, in [-1, 1] action units, that beta "
        "steers towards (P3S's released code: `target_range` 0.04; its distance may be scaled differently)",
    )
    drift_ratio: float = setting(
        2.0,
        "the range widens to this times the distance the peer's own policy moved since the last election (P3S's "
        "released code: `target_ratio` 2); 0 turns it off",
    )
    rho: float = setting(
        0.0,
        "the paper's rule instead: the range widens to rho times the leader's advantage estimated with the follower's "
        "critic, in raw return units; off (0) by default, as the released code does not use it",
    )
    rate: float = setting(2.0, "beta is multiplied or divided by this at each election (P3S: 2)")
    batch: int = setting(
        256, "states of each guidance term, sampled from the peer's replay buffer (on-policy peers: its recent states)"
    )
    steps: int = setting(
        200,
        "mode `distill`: distillation steps per election, each on `distill.batch` of the leader's recent states with "
        "the follower's `distill.loss` and `distill.lr` (ours: PIEKD distils a few epochs every 5000 steps; at the "
        "default cadence of 1000 steps, 200 steps keep a similar ratio to the RL updates)",
    )
    critic: bool = setting(
        True,
        "mode `distill`: each of those steps also moves every critic of a follower towards the leader's critic of the "
        "same index (MSE, on the same states at actions the leader's policy samples there, fresh Adam at `distill.lr` "
        "per election, target critics synced after it), as PIEKD distils policy and Q; peers of one algorithm (SAC's "
        "critics are soft)",
    )

    MODES = ("none", "best", "distill")

    def check(self) -> None:
        if self.mode not in self.MODES:
            raise unknown_choice("guide mode", self.mode, self.MODES)
        for key in ("every", "episodes", "batch", "steps", "target_distance"):
            if not getattr(self, key) > 0:
                raise UserError(f"guide.{key} must be positive, got {getattr(self, key)}")
        if not (self.beta >= 0 and self.rho >= 0 and self.drift_ratio >= 0):
            raise UserError(
                f"guide.beta, guide.rho and guide.drift_ratio must not be negative, got {self.beta}, {self.rho} and "
                f"{self.drift_ratio}"
            )
        if not self.rate > 1:
            raise UserError(f"guide.rate must be above 1, got {self.rate}")


@dataclass
class EvalConfig:
    """Deterministic evaluation on a separate env with the learner's frozen obs statistics."""

    every: int = setting(50_000, "learner env steps between evaluations (0: only at the end)")
    episodes: int = setting(5, "deterministic episodes per evaluation")
    final_episodes: int = setting(10, "deterministic episodes of the final evaluation")

    def check(self) -> None:
        for key in ("episodes", "final_episodes"):
            if getattr(self, key) <= 0:
                raise UserError(f"eval.{key} must be positive, got {getattr(self, key)}")
        if self.every < 0:
            raise UserError(f"eval.every must not be negative, got {self.every}")


@dataclass
class TeacherConfig:
    """Teacher-student distillation: a trained SB3 model teaches the run's single learner.

    Modes: ``bc`` (behaviour cloning on a fixed data set of the teacher's transitions),
    ``dagger`` (Ross et al. 2011: the student acts, the teacher acting with probability beta,
    every visited state labelled and aggregated), ``offline`` (the student regresses on states the
    teacher visits), ``online`` (the student acts, the teacher labels its states), ``kickstart``
    (the student's RL plus lambda times distillation on its own states), ``gated`` (``online``
    weighted by the disadvantage weight of ``xi = V_teacher - V_student``), ``ppd`` (proximal
    policy distillation: the student's PPO loss plus lambda times the ratio-weighted KL to the
    teacher, on its own rollouts).
    """

    path: str = setting(
        "",
        "the teacher's SB3 zip (from dpd, plain SB3 or the RL zoo), a dpd run directory (its learners from the latest "
        "checkpoint, `teacher.learners`), or `minari:DATASET_ID`, recorded demonstrations in Minari's local store (mode "
        "`bc` only); empty: no teacher (a peer group)",
    )
    learners: str = setting(
        "best",
        "a dpd run directory as the teacher: `best` (its learner with the best final evaluation, else its first) or "
        "`all` (every learner labels every state; per state the one whose critic values it highest, in raw return "
        "units, is the target, as peers combine, or their mean: `teacher.combine`; the best one acts and is measured)",
    )
    combine: str = setting(
        "best",
        "`teacher.learners=all`: per state the target of the learner whose critic values it highest (`best`), or the "
        "mean of all (`mean`: Gaussians as their equal mixture's mean and variance, actions averaged)",
    )
    norm: str = setting("", "its VecNormalize statistics; empty: `vecnormalize.pkl` beside the zip, if any")
    algo: str = setting("", "its algorithm; empty: detected from the zip")
    mode: str = setting(
        "dagger",
        "`bc` (behaviour cloning on a fixed data set of teacher transitions), `dagger` (the student acts, the teacher "
        "with probability beta; every visited state labelled and aggregated), `offline` (the student regresses on the "
        "teacher's states as they come), `online` (the student acts, the teacher labels its states), `kickstart` (the "
        "student's RL plus lambda times distillation), `gated` (`online` weighted by the disadvantage weight of "
        "`xi = V_teacher - V_student`) or `ppd` (PPO plus lambda * mean(max(ratio, 1 - eps) * KL(teacher || student)) "
        "on the student's rollouts)",
    )
    dataset_steps: int = setting(
        0, "bc: teacher transitions in the data set, counted as env steps; 0: the run's `total_steps`"
    )
    epochs: float = setting(
        50.0,
        "bc: passes over the data set once it is collected; dagger: passes over the aggregated data set after each "
        "round (minibatches of `distill.batch`), up to `teacher.max_round_updates` (ours: benchmarks/RESULTS.md, "
        "teacher-student)",
    )
    round_steps: int = setting(
        1000, "dagger: env steps of a round (the student's data collection between two retrainings; ours)"
    )
    max_round_updates: int = setting(
        2000,
        "dagger: at most this many gradient steps after a round (0: no cap), so that a long run's cost grows with its "
        "env steps, not with their square (ours)",
    )
    beta: float = setting(
        0.5,
        "dagger: the teacher acts at a step with probability beta**round (round 0: the teacher alone), Ross et al.'s "
        "beta_i = p**(i-1)",
    )
    ppd_lambda: float = setting(1.0, "ppd: lambda, the weight of the distillation term beside PPO's loss (ours)")
    kickstart_lambda: float = setting(
        1.0,
        "kickstart: lambda at the start of training; a PPO student adds `lambda * KL` to PPO's loss (Schmitt et al.), "
        "another takes distillation steps at `lambda * distill.lr` (Adam would divide most of a weight on their loss out)",
    )
    kickstart_schedule: str = setting("linear", "kickstart: lambda is `constant`, `linear` (to 0 at the end) or `exponential`")
    kickstart_half_life: float = setting(0.1, "exponential: the fraction of training over which lambda halves")
    agreement_tolerance: float = setting(
        0.1, "fidelity: actions agree when every dimension is this close, in [-1, 1] action units"
    )

    def check(self) -> None:
        """Without a teacher (no ``path``) these keys are unused and not checked."""
        if not self.path:
            return
        if self.mode not in MODES:
            raise unknown_choice("distillation mode", self.mode, MODES)
        if self.learners not in TEACHER_LEARNERS:
            raise unknown_choice("teacher.learners", self.learners, TEACHER_LEARNERS)
        if self.combine not in TEACHER_COMBINE:
            raise unknown_choice("teacher.combine", self.combine, TEACHER_COMBINE)
        if self.kickstart_schedule not in SCHEDULES:
            raise unknown_choice("kickstart schedule", self.kickstart_schedule, SCHEDULES)
        if self.path.startswith(DATASET_PREFIX) and (self.mode != "bc" or self.learners != "best"):
            raise UserError(
                f"a Minari dataset ({self.path}) has no teacher to ask: it is cloned by mode bc alone, got mode {self.mode}"
            )
        if self.path.startswith(DATASET_PREFIX) and not self.path[len(DATASET_PREFIX) :]:
            raise UserError("teacher.path minari: names no dataset; give minari:DATASET_ID")
        if self.dataset_steps < 0 or self.max_round_updates < 0:
            raise UserError(
                "teacher.dataset_steps and teacher.max_round_updates must not be negative, got "
                f"{self.dataset_steps} and {self.max_round_updates}"
            )
        if self.epochs <= 0 or self.round_steps <= 0 or not 0 <= self.beta <= 1:
            raise UserError(
                "teacher.epochs and teacher.round_steps must be positive and teacher.beta must lie in [0, 1]; got "
                f"{self.epochs}, {self.round_steps}, {self.beta}"
            )
        if self.ppd_lambda < 0:
            raise UserError(f"teacher.ppd_lambda must not be negative, got {self.ppd_lambda}")
        if self.kickstart_lambda < 0 or self.kickstart_half_life <= 0 or self.agreement_tolerance <= 0:
            raise UserError(
                "teacher.kickstart_lambda must not be negative; kickstart_half_life and agreement_tolerance must be positive"
            )


@dataclass
class ObservationViewConfig:
    """What a student sees of the env's observation, when it sees less than its teacher (a robot's
    sensors rather than the simulator's state). Four transforms, applied in this order to each
    observation for the student only (``dpd.envs.observation_view``): drop, noise, delay, stack.
    The teacher always labels from the full observation of the same step."""

    drop: CommaSeparated = setting(
        "",
        "a teacher's student (modes bc, dagger, online, kickstart, gated, ppd) sees the observation through drop, "
        "noise, delay and stack, in that order; drop: the entries it does not see, comma-separated: indices from 0, "
        "or named groups of the "
        "env's layout as Gymnasium's MuJoCo v5 envs publish it (`observation_structure`): `positions` and "
        "`velocities` (HalfCheetah-v5: 0-7 and 8-16), also by Gymnasium's names (`qpos`, `qvel`, `cfrc_ext`, ...); "
        "empty: none",
    )
    noise: float = setting(
        0.0,
        "standard deviation of Gaussian noise added to every entry the student sees, in the observation's units, drawn "
        "from each env's seed (the same seed, the same noise); 0: none",
    )
    delay: int = setting(0, "the student sees the observation of this many steps ago (the first one at an episode's start)")
    stack: int = setting(
        1,
        "the student sees its last `stack` observations side by side, oldest first (1: the current one alone); at an "
        "episode's start the stack is filled with its first observation",
    )

    @property
    def active(self) -> bool:
        """Whether the student sees anything but the full observation."""
        return bool(comma_list(self.drop)) or self.noise > 0 or self.delay > 0 or self.stack > 1

    def check(self) -> None:
        """The values alone; ``drop``'s items are checked against the env's observation when it is built."""
        if not self.noise >= 0:  # NaN fails too
            raise UserError(f"student.obs.noise must not be negative, got {self.noise}")
        if self.stack < 1:
            raise UserError(f"student.obs.stack must be at least 1 (1: no stacking), got {self.stack}")
        if self.delay < 0:
            raise UserError(f"student.obs.delay must not be negative, got {self.delay}")


@dataclass
class StudentConfig:
    """The student of a teacher-student run, beyond its algorithm and network (``algo``,
    ``algo_kwargs``): what it sees."""

    obs: ObservationViewConfig = field(default_factory=ObservationViewConfig)


@dataclass
class RunConfig:
    env: str = setting(
        "HalfCheetah-v5",
        "Gymnasium id with continuous actions (`DpdPointReach-v0` is the tiny test env), or, as in the RL zoo, "
        "`module:EnvClass` (a `gymnasium.Env` class, registered on the fly as `module.EnvClass-v0`)",
    )
    gym_packages: str = setting(
        "",
        "modules to import before the env id is looked up, comma-separated (`--gym-packages`): packages that register "
        "their envs on import, as with `rl_zoo3.train --gym-packages`",
    )
    algo: str = setting(
        "ppo",
        "SB3 algorithm of the peers: `ppo`, `a2c`, `sac`, `td3`, `ddpg`, or a comma-separated list cycled over the peers",
    )
    peers: int = setting(2, "number of learners (a teacher teaches one: the student)")
    total_steps: int = setting(1_000_000, "environment steps of all peers together; each gets `total_steps // peers`")
    seed: int = setting(0, "base seed; peer k uses seed `seed + k * seed_offset`")
    seed_offset: int = setting(1000, "peer k uses seed `seed + k * seed_offset`")
    n_envs: int = setting(1, "vectorised envs per learner")
    normalize_obs: bool = setting(True, "VecNormalize the observations, as in the paper's baseline")
    normalize_reward: bool = setting(True, "VecNormalize the rewards, as in the paper's baseline")
    turn_steps: int = setting(
        1000,
        "env steps of a learner's turn before the next peer's (at least one iteration): PPO and A2C peers still "
        "alternate every iteration; off-policy peers, whose iterations are single steps, every 1000 steps, which keeps "
        "each learner's networks in the CPU's caches",
    )
    checkpoint_every: int = setting(100_000, "run env steps (all peers together) between checkpoints (0: only at the end)")
    backend: str = setting(
        "local",
        "where peers live: `local` (this process, one after another), `process` (one process per peer; `--parallel`) or "
        "`ray` (Ray actors; `--backend ray`); the same results on each",
    )
    ray_address: str = setting("", "with `backend: ray`, the cluster to join (`--address`); empty: start a local instance")
    save_replay_buffer: bool = setting(
        True, "off-policy peers: checkpoint the replay buffer, for a resume that continues exactly"
    )
    algo_kwargs: Dict[str, Any] = setting(
        factory=dict,
        doc="keyword arguments of the SB3 constructor (`learning_rate`, `n_steps`, `policy_kwargs`, ...), over the env's "
        "defaults (`envs/defaults.py`; none for MuJoCo tasks: SB3's defaults, the paper's baseline); the RL zoo's "
        "`lin_<x>` schedules work for any of them, `policy_kwargs.activation_fn` takes a name (`nn.ReLU`), and "
        "off-policy exploration noise is `action_noise: {type: normal, std: 0.1}` (or `ornstein-uhlenbeck`)",
        shown="per env",
    )
    env_kwargs: Dict[str, Any] = setting(factory=dict, doc="keyword arguments of `gymnasium.make`")
    device: str = setting(
        "cpu",
        "torch device of the SB3 models, as SB3 takes it: `cpu`, `cuda` (refused where torch sees no GPU), `cuda:<index>` "
        "or `auto` (a GPU if there is one); the small MLPs of MuJoCo tasks train fastest on the CPU",
    )
    verbose: int = setting(
        0,
        "SB3's `verbose`: 0 quiet; 1 SB3's messages and each learner's log tables on stdout (`log_formats` `stdout`); 2 debug",
    )
    log_formats: str = setting(
        "tensorboard",
        "SB3 logger formats of each learner, comma-separated: `tensorboard`, `csv`, `json`, `log` (files in "
        "`RUN_DIR/tb/<learner>/`) and `stdout`",
    )
    distill: DistillSettings = field(default_factory=DistillSettings)
    share: ShareConfig = field(default_factory=ShareConfig)
    guide: GuideConfig = field(default_factory=GuideConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    peer_configs: List[Dict[str, Any]] = setting(
        factory=list,
        doc="per-peer overrides, one mapping per peer with `algo`, `algo_kwargs`, `distill`, merged over the keys above",
    )

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def log_format_list(self) -> Tuple[str, ...]:
        return comma_list(self.log_formats)

    @property
    def gym_package_list(self) -> Tuple[str, ...]:
        return comma_list(self.gym_packages)

    def check(self) -> None:
        """The run's own values and how its sections fit together; each section checks its own."""
        for log_format in self.log_format_list:
            if log_format not in LOG_FORMATS:
                raise unknown_choice("log format", log_format, LOG_FORMATS)
        if self.device not in ("cpu", "cuda", "auto") and not re.fullmatch(r"cuda:\d+", self.device):
            raise unknown_choice("device", self.device, DEVICES)
        if self.verbose not in (0, 1, 2):
            raise UserError(f"verbose must be 0, 1 or 2 (as in SB3), got {self.verbose}")
        for key in ("total_steps", "peers", "n_envs"):
            if getattr(self, key) <= 0:
                raise UserError(f"{key} must be positive, got {getattr(self, key)}")
        if self.peers > MAX_PEERS:
            raise UserError(f"peers must be at most {MAX_PEERS}, got {self.peers}")
        for key in ("checkpoint_every", "turn_steps", "seed", "seed_offset"):  # seeds: NumPy's are from 0
            if getattr(self, key) < 0:
                raise UserError(f"{key} must not be negative, got {getattr(self, key)}")
        if self.teacher.path and self.backend != "local":
            raise UserError("a teacher-student run trains one learner: --parallel and --backend apply to peer groups")
        if self.total_steps < self.peers:
            raise UserError(f"total_steps ({self.total_steps}) must give each of the {self.peers} peers at least one step")
        if self.teacher.path and self.peers != 1:
            raise UserError(f"a teacher teaches one student; got peers={self.peers}")
        if self.teacher.path and self.distill.gate != "none":
            raise UserError("distill.gate compares peers' returns: a teacher-student run has no peer to gate")
        self._check_view()

    def _check_view(self) -> None:
        """A view of the observation is a student's (``student.obs``), in the modes that keep its
        states beside the full observations the teacher labels."""
        if not self.student.obs.active:
            return
        if not self.teacher.path:
            raise UserError("student.obs is what a teacher's student sees; a peer group has no student (give a teacher)")
        if self.teacher.path.startswith(DATASET_PREFIX):
            raise UserError(f"student.obs needs a teacher to label the full observations; {self.teacher.path} is a recording")
        if self.teacher.mode not in VIEW_MODES:
            raise UserError(
                f"student.obs works with modes {', '.join(VIEW_MODES)}; mode {self.teacher.mode} trains on the teacher's "
                "own states, which hold no student view"
            )


def check_values(cfg: RunConfig) -> None:
    """Every check of a run config that needs nothing but the config, each in its section's
    ``check()``. The distillation keys that are set are checked here, and each learner's resolved
    settings once more (``DistillConfig.check``, from ``dpd.agents.checks``, which also checks what
    needs the learners)."""
    cfg.check()
    cfg.distill.check()
    cfg.eval.check()
    cfg.teacher.check()
    cfg.student.obs.check()
    cfg.share.check()
    cfg.guide.check()


def config_keys(cls: type = RunConfig, prefix: str = "") -> List[str]:
    """Every settable dotted key, e.g. ``distill.alpha``."""
    keys: List[str] = []
    for f in dataclasses.fields(cls):
        hint = get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(hint):
            keys += config_keys(hint, f"{prefix}{f.name}.")
        else:
            keys.append(prefix + f.name)
    return keys
