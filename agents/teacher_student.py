"""Teacher-student distillation: a trained SB3 model teaches one learner (often a smaller one).

The teacher is any SB3 zip, from this project, plain SB3 or the RL zoo, with its VecNormalize
statistics when it has them. Teacher and student each normalise raw observations with their own
statistics, so neither sees the other's normalised inputs.

Modes (who samples the states, Czarnecki et al. 2019):
- ``bc``: behaviour cloning. The teacher acts (sampling from its policy, as SB3's ``predict``
  does by default: its exploration noise widens the states it shows, as DART's injected noise
  does) for ``teacher.dataset_steps`` env steps; the student then trains for ``teacher.epochs``
  passes over that fixed data set and never steps the env again. Changed from the textbook
  (Pomerleau; ``imitation``'s ``BC``): the target is the teacher's whole action distribution
  (``distill.loss``), not its sampled action. Recorded demonstrations (a Minari dataset,
  ``dpd.agents.demonstrations``) replace the teacher's rollout: their actions are the targets;
- ``dagger``: Ross et al. 2011. Round ``i`` runs ``teacher.round_steps`` env steps in the
  student's env with the mixture policy (the teacher's deterministic action with probability
  ``teacher.beta ** i``, else the student's); every visited state is labelled by the teacher once
  and added to one aggregated data set (capped at ``distill.buffer_size``, oldest out), and the
  student trains ``teacher.epochs`` passes over all of it. Changed from the paper: the student is
  trained on, not retrained from scratch, each round (as ``imitation``'s ``DAggerTrainer``), and
  the label is the teacher's distribution, not one action;
- ``ppd``: proximal policy distillation (Spigler 2025; ``dpd.agents.ppd``): a PPO student's own
  update on its rollout with ``teacher.ppd_lambda`` times the ratio-weighted divergence from the
  teacher added to its loss, each rollout state labelled once;
- ``offline``: the teacher acts and the student regresses on the teacher's states (Rusu et al.);
- ``online``: the student acts without RL updates and the teacher labels its states (DAgger-like);
- ``kickstart``: the student's own RL plus ``lambda`` times distillation on its own states, lambda
  annealed (Schmitt et al.). A PPO student sums the two losses in PPO's own update, as the paper
  does (``dpd.agents.ppd``: the pull to the teacher is weighed against PPO's gradient at PPO's
  learning rate). Changed from the paper for other students: the losses take alternate gradient
  steps, and lambda scales the distillation steps' learning rate (on the loss, Adam would divide
  most of it out);
- ``gated``: ``online`` weighted by the disadvantage weight of ``xi = V_teacher - V_student``
  (DPD's rule in teacher-student form; with ``distill.weighting=hard`` it is Czarnecki et al.'s
  value-gated loss); the student's critic trains (its actor frozen) so that ``V_student`` values
  the student's current policy.
"""

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch

from dpd.agents.comparison import FIDELITY_STATES, VisitedStates, fidelity, microseconds_per_action, rollout_states
from dpd.agents.demonstrations import Demonstrations
from dpd.agents.distillation import DistillBatch, TeacherAnswer, answer_on, combined_targets, distill_steps
from dpd.agents.learner import EVAL_SEED_SHIFT, Learner
from dpd.agents.on_policy import OnPolicyLearner
from dpd.agents.peer import PeerFailure, first_line
from dpd.agents.ppd import flat_order, ppd_update
from dpd.agents.resume_state import SavedEnv, read_state, write_state
from dpd.agents.state_buffer import RawStateBuffer
from dpd.agents.teacher_loading import TEACHER_SEED_SHIFT
from dpd.config import MODES, TeacherConfig
from dpd.envs.observation_view import TrajectoryViews, student_view
from dpd.errors import UserError, unknown_choice
from dpd.losses import PolicyOutput

# What a student's own algorithm updates in each mode where the student acts: kickstarting (a
# student other than PPO) keeps its RL; gating needs the student's critic to value its current
# policy, so only the critic learns.
STUDENT_UPDATES = {"online": "none", "kickstart": "rl", "gated": "critic"}
# Modes that train on a data set labelled once per state (``TeacherLabels``), in passes over it.
DATASET_MODES = ("bc", "dagger")
# In a checkpoint, beside the student's folder: what the pair carries on (``PairState``).
PAIR_FILE = "teacher_student.pkl.gz"


@dataclass
class TeacherRollout:
    """Where the acting teacher's own episodes stand, where it acts from one iteration to the
    next (``offline``): its env, the observation it acts on next, the states it visited (which
    the student samples) and the student's view along them."""

    obs: np.ndarray
    env: SavedEnv
    states: RawStateBuffer
    views: Optional[TrajectoryViews]


@dataclass
class PairState:
    """What a teacher-student pair carries from one iteration to the next beside its student and
    generator: the teachers' labels as they were computed (labelled again in one batch, a label
    can differ in its last bits from one labelled in a batch of another size), and the acting
    teacher's episodes where it acts on."""

    labels: Dict[str, Any]  # ``TeacherLabels.state``
    rollout: Optional[TeacherRollout]


class TeacherLabels:
    """The teachers' answers on every state of a state buffer, computed once per state.

    A teacher is fixed, so a state's label never changes: labelling each state as it enters
    the buffer, rather than each time it is sampled, saves a teacher forward pass per gradient
    step. The labels follow the buffer's ring (a label sits at its state's index); a resumed run
    takes them back from its checkpoint (``state``), or, from an older dpd's, labels its reloaded
    buffer again (``label_all``). With several teachers (the learners of a
    dpd run, ``teacher.learners=all``) each labels every state; the distillation step takes, per
    state, the one that values it highest, or their mean (``teacher.combine``, ``combined_targets``)."""

    def __init__(self, teachers: Sequence[Learner], buffer: RawStateBuffer) -> None:
        self.teachers = list(teachers)
        self.buffer = buffer
        self.labelled = 0  # states labelled so far, over the buffer's whole life
        labellers = max(1, len(self.teachers))  # recorded demonstrations: one labeller, no model
        self._fields: List[Optional[Dict[str, Optional[torch.Tensor]]]] = [None] * labellers
        self._kinds = [""] * labellers
        self._values = np.zeros((labellers, buffer.capacity), dtype=np.float64)

    def label_newest(self, count: int) -> None:
        """Label the ``count`` states most recently added to the buffer, from their full
        observations (a student that sees a view keeps them beside its states)."""
        if count > 0:
            states = self.buffer.full_at(self.buffer.newest(count))
            self.record_newest(count, [answer_on(teacher, states) for teacher in self.teachers])

    def record_newest(self, count: int, answers: Sequence[TeacherAnswer]) -> None:
        """Keep each teacher's ``answers`` on the ``count`` newest states (recorded demonstrations
        bring theirs: the recorded actions)."""
        capacity = self.buffer.capacity
        indices = self.buffer.newest(count)
        rows = torch.as_tensor(indices)
        for k, answer in enumerate(answers):
            self._kinds[k] = answer.kind
            if self._fields[k] is None:
                self._fields[k] = {
                    name: None if tensor is None else torch.zeros((capacity, *tensor.shape[1:]), dtype=tensor.dtype)
                    for name, tensor in answer.output._asdict().items()
                }
            fields = self._fields[k]
            assert fields is not None
            for name, tensor in answer.output._asdict().items():
                stored = fields[name]
                if stored is not None and tensor is not None:
                    # detached: a label is a constant (a PPO teacher's log_std comes as a view of its parameter)
                    stored[rows] = tensor.detach().expand(len(indices), *stored.shape[1:])
            self._values[k, indices] = answer.values
        self.labelled += count

    @property
    def state(self) -> Dict[str, Any]:
        """The labels as computed, for a checkpoint (``PairState``)."""
        return {"fields": self._fields, "kinds": self._kinds, "values": self._values, "labelled": self.labelled}

    @state.setter
    def state(self, state: Dict[str, Any]) -> None:
        self._fields, self._kinds, self._values = state["fields"], state["kinds"], state["values"]
        self.labelled = state["labelled"]

    def label_all(self) -> None:
        """Label every state the buffer holds (a resumed run's reloaded buffer)."""
        self.label_newest(len(self.buffer))

    def answers_at(self, indices: np.ndarray) -> Tuple[TeacherAnswer, ...]:
        """Every teacher's answer on the buffered states at ``indices``."""
        rows = torch.as_tensor(indices)
        answers = []
        for k, fields in enumerate(self._fields):
            assert fields is not None, "no state is labelled yet"
            output = PolicyOutput(**{name: None if t is None else t[rows] for name, t in fields.items()})
            answers.append(TeacherAnswer(output, self._values[k, indices], self._kinds[k]))
        return tuple(answers)


def dagger_beta(config: TeacherConfig, round_index: int) -> float:
    """The probability that the teacher acts at a step of DAgger's round ``round_index`` (from 0)."""
    return config.beta**round_index


def kickstart_lambda(config: TeacherConfig, progress: float) -> float:
    """The distillation weight at ``progress`` (0 to 1) of the student's budget."""
    if config.kickstart_schedule == "constant":
        return config.kickstart_lambda
    if config.kickstart_schedule == "linear":
        return config.kickstart_lambda * max(0.0, 1.0 - progress)
    return config.kickstart_lambda * 0.5 ** (progress / config.kickstart_half_life)


class TeacherStudent:
    """One student distilling from its teachers; trained by the same loop as a peer group.

    ``teachers``: one trained model, or the learners of a dpd run (``teacher.learners=all``).
    The first acts where a teacher acts (``bc``, ``offline``, DAgger's mixture) and is the one
    the student is measured against; every teacher labels every state. Or, for ``bc`` alone,
    no teacher and ``demonstrations``: recorded steps, their actions the labels."""

    def __init__(
        self,
        teachers: Sequence[Learner],
        student: Learner,
        config: TeacherConfig,
        seed: int,
        demonstrations: Optional[Demonstrations] = None,
    ) -> None:
        if config.mode not in MODES:
            raise unknown_choice("distillation mode", config.mode, MODES)
        assert bool(teachers) != (demonstrations is not None and config.mode == "bc"), "a teacher, or bc's recording"
        self.teachers = list(teachers)
        self.demonstrations = demonstrations
        self.teacher: Optional[Learner] = self.teachers[0] if self.teachers else None
        self.student = student
        self.config = config
        self.learners: List[Learner] = [student]  # what the loop trains, evaluates and saves
        self.rng = np.random.default_rng(seed)
        self.seed = seed
        self._teacher_obs: Optional[np.ndarray] = None
        self._teacher_states: Optional[VisitedStates] = None
        self._teacher_return: Optional[float] = None
        self.labels = TeacherLabels(self.teachers, student.states)
        # What the student sees where it sees less than its teacher (``student.obs``; None: all of
        # it). The teacher acts on and labels the full observation of the same step, always.
        self.view = student_view(student.env)
        self._teacher_views: Optional[TrajectoryViews] = None  # the student's view along the teacher's rollout
        is_ppo = student.spec.algo == "ppo" and isinstance(student, OnPolicyLearner)
        if config.mode == "ppd" and not is_ppo:
            raise UserError(f"mode ppd distils into a PPO student (its loss is PPO's), not {student.spec.algo}")
        # PPD, and kickstarting a PPO student: the term rides in PPO's update (``dpd.agents.ppd``).
        self.term_weighting = {"ppd": "ratio", "kickstart": "none"}.get(config.mode) if is_ppo else None
        if self.term_weighting is not None:
            student.recorder.recording = True  # the raw states of each rollout, in the buffer's order
            if self.view is not None and student.states.capacity < student.steps_per_iteration:
                raise UserError(
                    f"a student that sees a view keeps the full observations of a rollout in its state buffer; raise "
                    f"distill.buffer_size={student.states.capacity} to at least {student.steps_per_iteration}"
                )
        elif config.mode != "offline" and len(student.states):  # the modes that sample the labels
            self.labels.label_all()  # a resumed run: its states came back with the student
        # bc's data set: the recording as loaded (``teacher.dataset_steps`` or the budget, at most), else as asked
        asked = config.dataset_steps or student.spec.budget
        self.dataset_steps = len(demonstrations.observations) if demonstrations else asked
        if config.mode == "bc" and self.dataset_steps > student.spec.budget:
            raise UserError(
                f"teacher.dataset_steps={self.dataset_steps} is more than the run's {student.spec.budget} env steps; "
                "raise --total-steps or lower it"
            )
        if config.mode == "bc" and self.dataset_steps > student.states.capacity:
            raise UserError(
                f"bc's data set of {self.dataset_steps} steps does not fit distill.buffer_size={student.states.capacity}; "
                "raise distill.buffer_size"
            )

    @property
    def run_steps(self) -> int:
        return self.student.num_timesteps

    @property
    def random_state(self) -> Dict[str, Any]:
        return self.rng.bit_generator.state

    @random_state.setter
    def random_state(self, state: Dict[str, Any]) -> None:
        self.rng.bit_generator.state = state

    def save(self, directory: Path) -> None:
        """The labels and the acting teacher's episodes (``PairState``), while there is more to
        train: a run continued from the checkpoint goes on with them."""
        if self.done:
            return
        rollout = None
        if self._teacher_obs is not None:
            teacher = self.acting_teacher
            rollout = TeacherRollout(self._teacher_obs, SavedEnv.of(teacher.env), teacher.states, self._teacher_views)
        write_state(PairState(self.labels.state, rollout), directory / PAIR_FILE, "the teacher")

    def restore(self, directory: Path) -> None:
        """What ``save`` wrote; without it (a checkpoint of an older dpd) the states are labelled
        again (``__init__``) and a teacher that acts starts its episodes afresh."""
        state: Optional[PairState] = read_state(directory / PAIR_FILE)
        if state is None:
            return
        self.labels.state = state.labels
        if state.rollout is not None:
            rollout, teacher = state.rollout, self.acting_teacher
            teacher.use_env(rollout.env.restore())
            teacher.states = rollout.states
            self._teacher_obs, self._teacher_views = rollout.obs, rollout.views

    def train(
        self, after_turn: Optional[Callable[[int, int], None]] = None, after_round: Optional[Callable[[], None]] = None
    ) -> None:
        """One iteration per turn and per round (one learner: nothing to synchronise). A student
        that raises or turns NaN fails as a peer does (``PeerFailure``, one line): the loop keeps
        its last checkpoint."""
        while not self.done:
            try:
                taken = self.train_iteration(0)
            except (UserError, KeyboardInterrupt):
                raise
            except Exception as exc:
                raise PeerFailure(0, self.student.spec.name, f"{type(exc).__name__}: {first_line(exc)}") from exc
            if after_turn is not None:
                after_turn(0, taken)
            if after_round is not None:
                after_round()

    def close(self) -> None:
        self.student.close()
        for teacher in self.teachers:
            teacher.close()

    def policy_parameters(self) -> Dict[str, int]:
        """Parameters of the teacher's and the student's action distributions (what acts when deployed)."""
        return {
            name: sum(parameter.numel() for parameter in learner.actor_parameters())
            for name, learner in (("teacher", self.teacher), ("student", self.student))
            if learner is not None
        }

    @property
    def done(self) -> bool:
        if self.config.mode == "bc":  # collected, then trained once
            return self.student.iterations > 0 and self.student.num_timesteps >= self.dataset_steps
        return self.student.done

    def train_iteration(self, index: int = 0) -> int:
        """One iteration of the student (or, offline, of the teacher), then distillation."""
        student, mode = self.student, self.config.mode
        if mode in DATASET_MODES:
            taken = self._bc_iteration() if mode == "bc" else self._dagger_round()
            student.logger.record("time/run_total_steps", self.run_steps)
            student.logger.dump(step=student.num_timesteps)
            if not student.parameters_finite():
                raise FloatingPointError(f"{student.spec.name}: NaN or infinity in the policy after an update")
            return taken
        if self.term_weighting is not None:
            return self._term_iteration(self.term_weighting)
        if mode == "offline":
            taken = self._teacher_rollout(student.steps_per_iteration)
            student.model.num_timesteps += taken  # env steps the student has learned from
            student.iterations += 1
            source = self.acting_teacher.states
        else:
            taken = student.train_iteration(self.run_steps, update=STUDENT_UPDATES[mode])
            self.labels.label_newest(taken)
            source = student.states
        config = student.distill_config
        if config.due(student.iterations, student.num_timesteps):
            weighting = config.weighting if mode == "gated" else "none"
            scale = kickstart_lambda(self.config, student.num_timesteps / student.spec.budget) if mode == "kickstart" else 1.0
            student.logger.record("distill/lambda", scale)

            def batches() -> Iterator[DistillBatch]:
                for _ in range(config.steps):
                    indices = self.rng.integers(0, len(source), size=config.batch)
                    states = source.at(indices)
                    if mode == "offline":
                        answers = tuple(answer_on(teacher, states) for teacher in self.teachers)
                    else:
                        answers = self.labels.answers_at(indices)
                    yield DistillBatch(states, answers, weighting, combine=self.config.combine)

            distill_steps(student, batches(), scale)
            student.logger.record("distill/gradient_steps", config.steps)
        if not student.parameters_finite():
            raise FloatingPointError(f"{student.spec.name}: NaN or infinity in the policy after an update")
        if mode == "offline":
            student.logger.dump(step=student.num_timesteps)  # no SB3 rollout dumps the records
        return taken

    def _term_iteration(self, weighting: str) -> int:
        """Collect a rollout, label its states once, then PPO with the distillation term on it
        (PPD's ratio-weighted term at ``teacher.ppd_lambda``, or kickstarting's at its schedule)."""
        student = self.student
        assert isinstance(student, OnPolicyLearner)
        first = student.current_states()[1]  # the full observations the rollout's first actions are taken in
        taken = student.train_iteration(self.run_steps, update="none")
        if student.stopped:  # a callback stopped it mid-rollout: no update on a partial buffer
            return taken
        states = flat_order(student.recorder.take().observations)
        full = states if self.view is None else self._rollout_full(first, taken)
        answers = [answer_on(teacher, full) for teacher in self.teachers]
        target, _ = combined_targets(student, answers, len(states), self.config.combine)
        if weighting == "ratio":
            lam = self.config.ppd_lambda
        else:
            lam = kickstart_lambda(self.config, student.num_timesteps / student.spec.budget)
        stats = ppd_update(student, target, lam, weighting)
        if not np.isfinite(stats["loss"]) or not student.parameters_finite():
            raise FloatingPointError(f"{student.spec.name}: NaN or infinity in the {self.config.mode} update")
        student.logger.record("distill/lambda", lam)
        for key, value in stats.items():
            student.logger.record(f"distill/{key}", value)
        return taken

    def _rollout_full(self, first: np.ndarray, taken: int) -> np.ndarray:
        """The full observations of the rollout just collected, in its buffer's flat order: those
        its first actions were taken in, then those its steps reached but the last (the student
        records each state it reaches with its full observation, ``Learner.record_states``)."""
        buffer, envs = self.student.states, len(first)
        reached = buffer.full_at(buffer.newest(taken)).reshape(taken // envs, envs, -1)
        return flat_order(np.concatenate([first[None], reached[:-1]]))

    def _bc_iteration(self) -> int:
        """Collect the whole data set with the teacher acting, then train on it: the one iteration of ``bc``."""
        student = self.student
        if self.demonstrations is None:
            taken = self._teacher_rollout(self.dataset_steps - student.num_timesteps, student.states)
            self.labels.label_newest(taken)
        else:
            taken = self._recorded_steps()
        student.model.num_timesteps += taken
        student.iterations += 1
        self.fit(self.config.epochs)
        return taken

    def _recorded_steps(self) -> int:
        """The recorded steps into the student's data set, their actions as the labels."""
        recorded, student = self.demonstrations, self.student
        assert recorded is not None
        taken = len(recorded.observations)
        student.states.add(recorded.observations)
        self.labels.record_newest(taken, [recorded.answers(0, taken)])
        if student.env.norm_obs:
            student.env.obs_rms.update(recorded.observations)
        return taken

    @property
    def acting_teacher(self) -> Learner:
        """The teacher that acts and is measured against (a model: not recorded demonstrations)."""
        assert self.teacher is not None, "recorded demonstrations do not act"
        return self.teacher

    def _dagger_round(self) -> int:
        """One DAgger round: act with the mixture policy, label and aggregate, train on everything."""
        student = self.student
        beta = dagger_beta(self.config, student.iterations)
        steps = min(self.config.round_steps, student.spec.budget - student.num_timesteps)
        taken = self._mixture_rollout(max(1, steps), beta)
        self.labels.label_newest(taken)
        student.iterations += 1
        student.logger.record("dagger/beta", beta)
        student.logger.record("dagger/dataset", len(student.states))
        self.fit(self.config.epochs, self.config.max_round_updates)
        return taken

    def _mixture_rollout(self, steps: int, beta: float) -> int:
        """``steps`` env steps of the student's env: per step and env, the teacher's deterministic
        action with probability ``beta``, else the student's; each raw state reached before acting
        is added to the student's data set."""
        student, teacher = self.student, self.acting_teacher
        env, model = student.env, student.model
        if model._last_obs is None:  # type: ignore[has-type]
            model._last_obs = env.reset()  # type: ignore[assignment]
        taken = 0
        while taken < steps:
            raw, full = student.current_states()  # the teacher acts on the full observation of the step
            action, _ = model.predict(model._last_obs, deterministic=True)  # type: ignore[arg-type]
            teacher_acts = self.rng.random(env.num_envs) < beta
            if teacher_acts.any():
                teacher_action, _ = teacher.model.predict(teacher.env.normalize_obs(full), deterministic=True)
                action = np.where(teacher_acts[:, None], teacher_action, action)
            student.states.add(raw, full)
            model._last_obs, _, _, _ = env.step(action)
            taken += env.num_envs
        model.num_timesteps += taken
        return taken

    def fit(self, epochs: float, max_updates: int = 0) -> None:
        """``epochs`` passes over the labelled data set in shuffled minibatches of ``distill.batch``,
        at most ``max_updates`` gradient steps (0: no cap)."""
        student, config = self.student, self.student.distill_config
        size = len(student.states)
        steps = max(1, math.ceil(epochs * size / config.batch))
        if max_updates:
            steps = min(steps, max_updates)

        def batches() -> Iterator[DistillBatch]:
            order = np.empty(0, dtype=np.int64)
            for _ in range(steps):
                if len(order) < config.batch:
                    order = np.concatenate([order, self.rng.permutation(size)])
                indices, order = order[: config.batch], order[config.batch :]
                yield DistillBatch(
                    student.states.at(indices), self.labels.answers_at(indices), "none", combine=self.config.combine
                )

        distill_steps(student, batches())
        student.logger.record("distill/gradient_steps", steps)

    def _teacher_rollout(self, steps: int, buffer: Optional[RawStateBuffer] = None) -> int:
        """The teacher acts (sampling from its policy) in its own env; its raw states are kept
        (in ``buffer``, the teacher's own by default), as the student sees them beside the full ones.

        The student learns on these states alone, so its observation statistics follow them.
        """
        teacher = self.acting_teacher
        env = teacher.env
        if self._teacher_obs is None:
            self._teacher_obs = env.reset()
            self._student_view_of(env.get_original_obs(), np.ones(env.num_envs, dtype=bool))  # the views start here
        visited, seen = [], []
        for _ in range(max(1, steps // env.num_envs)):
            action, _ = teacher.model.predict(self._teacher_obs, deterministic=False)
            self._teacher_obs, _, dones, _ = env.step(action)
            visited.append(env.get_original_obs())
            seen.append(self._student_view_of(visited[-1], dones))
        states, views = np.concatenate(visited), np.concatenate(seen)
        (teacher.states if buffer is None else buffer).add(views, states)
        if self.student.env.norm_obs:
            self.student.env.obs_rms.update(views)
        return len(states)

    def _student_view_of(self, full: np.ndarray, starts: np.ndarray) -> np.ndarray:
        """The student's view of the teacher's newest full observations (``starts``: those that
        begin an episode), the observations themselves where it sees them all."""
        if self.view is None:
            return full
        if self._teacher_views is None:
            self._teacher_views = TrajectoryViews(self.view, len(full), self.seed + TEACHER_SEED_SHIFT)
        return self._teacher_views.observe(full, starts)

    def evaluation_metrics(self, learner: Learner, mean_return: float, episodes: int, final: bool) -> Dict[str, float]:
        """What the loop logs beside the student's evaluation: its fidelity, and at the end the
        return ratio and the cost of an action (``final_metrics``)."""
        return self.final_metrics(learner, mean_return, episodes) if final else self.fidelity_metrics(learner)

    def fidelity_metrics(self, learner: Learner) -> Dict[str, float]:
        """Fidelity on held-out states from the teacher's and the student's distributions (with
        recorded demonstrations, on recorded states against the recorded actions)."""
        if self.demonstrations is not None:
            fidelity_on_recording = self.demonstrations.fidelity(learner, self.config.agreement_tolerance, FIDELITY_STATES)
            return {f"fidelity/recorded_states/{key}": value for key, value in fidelity_on_recording.items()}
        if self._teacher_states is None:  # the student's view along the teacher's episodes, where it sees one
            views = None if self.view is None else TrajectoryViews(self.view, 1, self.seed + EVAL_SEED_SHIFT)
            self._teacher_states = rollout_states(self.acting_teacher, FIDELITY_STATES, views)
        metrics: Dict[str, float] = {}
        for source, (seen, full) in (
            ("teacher_states", self._teacher_states),
            ("student_states", rollout_states(learner, FIDELITY_STATES)),
        ):
            tolerance = self.config.agreement_tolerance
            for key, value in fidelity(self.acting_teacher, learner, seen, tolerance, teacher_states=full).items():
                if value is not None:
                    metrics[f"fidelity/{source}/{key}"] = value
        return metrics

    def final_metrics(self, learner: Learner, student_return: float, episodes: int) -> Dict[str, float]:
        """Fidelity plus the return ratio student / teacher from deterministic episodes (recorded
        demonstrations: their mean return), and the cost of an action."""
        if self._teacher_return is None:
            recorded = self.demonstrations
            self._teacher_return = recorded.mean_return if recorded else self.acting_teacher.evaluate(episodes)[0]
        metrics = self.fidelity_metrics(learner)
        metrics["fidelity/teacher_return"] = self._teacher_return
        steps = self.demonstrations.observations[:FIDELITY_STATES] if self.demonstrations else None
        states = VisitedStates(steps, steps) if steps is not None else self._teacher_states
        assert states is not None, "fidelity_metrics rolled the teacher's states out"
        for name, policy, seen in (("teacher", self.teacher, states.full), ("student", learner, states.seen)):
            if policy is not None:
                metrics[f"fidelity/{name}_us_per_action"] = microseconds_per_action(policy, seen)
        metrics["fidelity/return_ratio"] = student_return / self._teacher_return if self._teacher_return else math.nan
        return metrics
