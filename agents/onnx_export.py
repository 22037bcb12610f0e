"""A saved SB3 policy as one ONNX graph: raw observation in, deterministic action in the env's units out.

A controller, or any runtime that is not Python RL, should run a student with onnxruntime and
numpy alone, not SB3, gymnasium and a VecNormalize pickle. So the graph holds everything SB3's
``predict(obs, deterministic=True)`` does to an observation behind ``VecNormalize``:

1. observation normalisation, ``clip((obs - mean) / sqrt(var + eps), -clip_obs, clip_obs)``
   (``VecNormalize.normalize_obs``), with the saved statistics as constants;
2. the policy's deterministic action (``policy._predict``: the Gaussian's mean, the actor's
   output, the argmax of a categorical);
3. what ``BasePolicy.predict`` does to a Box action: a tanh-squashed policy's action (SAC, TD3,
   DDPG) rescaled from [-1, 1] to [low, high], any other clipped to [low, high].

Exporting follows SB3's documentation ("Exporting models", ONNX) with ``torch.onnx.export``; the
batch axis is dynamic. The export checks its own output: it runs the graph with onnxruntime on
``states`` raw observations and compares with SB3's ``predict`` through the VecNormalize
statistics; the file is renamed into place only when the largest difference is at most
``TOLERANCE``, so a failed export leaves nothing behind.

A student that saw less than its teacher (``student.obs``, ``dpd.envs.observation_view``) takes
its view as the graph's input, as its policy does: the kept entries of its last ``stack``
observations (each ``delay`` steps old), oldest first. The graph holds no history: a runner keeps
the last readings and concatenates them, as the student's env did. Noise is left out: a deployed
student reads real sensors, whose noise it was trained to bear.
"""

import contextlib
import io
import logging
import pickle
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecNormalize

from dpd.agents.algorithms import ALGORITHMS
from dpd.agents.comparison import rollout_states
from dpd.agents.learner import MODEL_FILE, NORM_FILE
from dpd.agents.model_zip import detect_algo
from dpd.agents.teacher_loading import UNTRAINED, load_saved_learner
from dpd.config import ObservationViewConfig, comma_list
from dpd.envs import check_env_id
from dpd.errors import UserError, unknown_choice
from dpd.rundir import learner_files

TOLERANCE = 1e-5  # the largest |action difference| to SB3 an export may have, in the env's action units
CHECK_STATES = 10_000  # observations the check runs; 10,000 is the number the check's guarantee is quoted at
OPSET = 18  # the ONNX opset torch's exporter targets by default; onnxruntime 1.17+ runs it


class ExportCheckFailed(Exception):
    """The graph's actions differ from SB3's by more than ``TOLERANCE``: nothing was written."""


@dataclass(frozen=True)
class ExportCheck:
    """What ``export_onnx`` measured on the file it wrote."""

    states: int
    state_source: str  # where the checked observations came from
    max_abs_difference: float
    us_per_action: float  # onnxruntime, batch 1, one thread, median


class DeployablePolicy(torch.nn.Module):
    """SB3's ``predict(deterministic=True)`` behind VecNormalize, as one module (see the module doc)."""

    def __init__(self, model: BaseAlgorithm, norm: Optional[VecNormalize]) -> None:
        super().__init__()
        if not isinstance(model.observation_space, spaces.Box):
            raise UserError(
                f"cannot export a policy with {type(model.observation_space).__name__} observations: only Box "
                "observations become one ONNX input"
            )
        self.policy = model.policy.to("cpu").eval()
        self.normalize = norm is not None and bool(norm.norm_obs)
        if self.normalize:
            assert norm is not None
            self.register_buffer("obs_mean", torch.as_tensor(norm.obs_rms.mean, dtype=torch.float32))
            self.register_buffer("obs_std", torch.as_tensor(np.sqrt(norm.obs_rms.var + norm.epsilon), dtype=torch.float32))
            self.clip_obs = float(norm.clip_obs)
        action_space = model.action_space
        self.box_action = isinstance(action_space, spaces.Box)
        self.squash = self.box_action and bool(self.policy.squash_output)
        if self.box_action:
            self.register_buffer("low", torch.as_tensor(action_space.low, dtype=torch.float32))
            self.register_buffer("high", torch.as_tensor(action_space.high, dtype=torch.float32))

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        if self.normalize:
            observation = torch.clamp((observation - self.obs_mean) / self.obs_std, -self.clip_obs, self.clip_obs)
        action = self.policy._predict(observation, deterministic=True)
        if self.squash:
            return self.low + 0.5 * (action + 1.0) * (self.high - self.low)
        if self.box_action:
            return torch.clamp(action, self.low, self.high)
        return action


def load_model(path: Path, norm_path: Optional[Path], algo: str = "") -> "tuple[BaseAlgorithm, Optional[VecNormalize]]":
    """A saved SB3 model and its VecNormalize statistics, without an env: exporting needs neither
    the env nor its simulator (the statistics are read from the pickle, not attached to an env)."""
    if not path.is_file():
        raise UserError(f"model not found: {path}")
    algo = algo or detect_algo(path)
    if algo not in ALGORITHMS:
        raise unknown_choice("algorithm", algo, ALGORITHMS)
    try:
        model = ALGORITHMS[algo].algo_class.load(path, device="cpu")
    except Exception as exc:  # a damaged or foreign file fails in many ways; all are the user's to fix
        raise UserError(f"cannot load {path}: {type(exc).__name__}: {exc}") from None
    if norm_path is None:
        return model, None
    if not norm_path.is_file():
        raise UserError(f"normalisation file not found: {norm_path}")
    try:
        with open(norm_path, "rb") as handle:
            norm = pickle.load(handle)
    except Exception as exc:
        raise UserError(f"cannot read normalisation statistics {norm_path}: {type(exc).__name__}: {exc}") from None
    if not isinstance(norm, VecNormalize) or np.shape(norm.obs_rms.mean) != model.observation_space.shape:
        shape = model.observation_space.shape
        raise UserError(f"{norm_path} holds no VecNormalize statistics for observations of shape {shape}")
    return model, norm


def sb3_actions(model: BaseAlgorithm, norm: Optional[VecNormalize], states: np.ndarray) -> np.ndarray:
    """What SB3 does with raw ``states``: normalise them as VecNormalize does, then ``predict``."""
    observations = norm.normalize_obs(states) if norm is not None and norm.norm_obs else states
    actions, _ = model.predict(observations, deterministic=True)
    return np.asarray(actions)


def max_action_difference(session, model: BaseAlgorithm, norm: Optional[VecNormalize], states: np.ndarray) -> float:
    """The largest |action| difference between an ONNX graph (an onnxruntime session) and SB3's
    ``predict`` through ``norm`` on raw ``states``: the export's check."""
    expected = sb3_actions(model, norm, states).astype(np.float64)
    got = session.run(None, {session.get_inputs()[0].name: states.astype(np.float32)})[0]
    return float(np.max(np.abs(got.astype(np.float64) - expected)))


def states_from_statistics(model: BaseAlgorithm, norm: Optional[VecNormalize], count: int, seed: int = 0) -> np.ndarray:
    """Observations for the check when no env is named: Gaussian around the normalisation
    statistics (the states the policy was trained on, to their second moment), else the
    observation space's own samples."""
    space = model.observation_space
    if norm is not None and norm.norm_obs:
        rng = np.random.default_rng(seed)
        draws = rng.normal(norm.obs_rms.mean, np.sqrt(norm.obs_rms.var), size=(count, *space.shape))
        return draws.astype(np.float32)
    space.seed(seed)
    return np.stack([space.sample() for _ in range(count)]).astype(np.float32)


def onnx_session(path: Path):
    """An onnxruntime session on one thread: the setting a controller's loop runs in."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def us_per_action(session, states: np.ndarray, repeats: int = 2000) -> float:
    """Median microseconds of one action at batch 1 through the ONNX graph."""
    name = session.get_inputs()[0].name
    timings = []
    for i in range(repeats):
        observation = states[i % len(states)][None]
        start = time.perf_counter()
        session.run(None, {name: observation})
        timings.append(time.perf_counter() - start)
    return float(np.median(timings) * 1e6)


@contextlib.contextmanager
def quiet_export() -> Iterator[None]:
    """What tracing a policy needs, for the length of an export: no argument checks in
    torch.distributions (they branch on tensor values, which a graph cannot), and no warnings or
    log lines from the exporter in the user's terminal (its errors still reach them, as one line)."""
    validate = torch.distributions.Distribution._validate_args
    torch.distributions.Distribution.set_default_validate_args(False)
    loggers = [logging.getLogger(name) for name in ("torch", "torch.onnx", "torch.export", "torch.fx")]
    levels = [logger.level for logger in loggers]
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            for logger in loggers:
                logger.setLevel(logging.ERROR)
            yield
    finally:
        torch.distributions.Distribution.set_default_validate_args(validate)
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise UserError(f"--onnx needs the export extra ({exc.name} is missing): pip install 'dpd[export]'") from None


def export_onnx(
    model: BaseAlgorithm, norm: Optional[VecNormalize], out: Path, states: np.ndarray, state_source: str
) -> ExportCheck:
    """Write ``model`` (behind ``norm``) to ``out`` as ONNX, checked on raw ``states`` against SB3."""
    _require_onnx()
    module = DeployablePolicy(model, norm)
    if out.suffix != ".onnx":
        raise UserError(f"--onnx takes a file name ending in .onnx, got {out}")
    if not out.parent.is_dir():
        raise UserError(f"folder not found for {out}: create {out.parent} first")
    partial = out.with_name(f".{out.name}.partial")
    example = torch.as_tensor(states[:2], dtype=torch.float32)
    try:
        with quiet_export(), torch.no_grad():
            torch.onnx.export(
                module,
                (example,),
                str(partial),
                input_names=["observation"],
                output_names=["action"],
                dynamic_shapes=({0: torch.export.Dim("batch")},),
                opset_version=OPSET,
                external_data=False,
                verbose=False,
            )
        session = onnx_session(partial)
        difference = max_action_difference(session, model, norm, states)
        if not difference <= TOLERANCE:  # NaN fails too
            raise ExportCheckFailed(
                f"the ONNX graph's actions differ from SB3's by up to {difference:.3g} (> {TOLERANCE:g}) on {len(states)} "
                f"states from {state_source}; nothing written"
            )
        timing = us_per_action(session, states)
        partial.replace(out)
    except (UserError, ExportCheckFailed):
        raise
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc}") from None
    except Exception as exc:  # torch's exporter refuses what it cannot trace in many ways
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise UserError(f"cannot export this {type(model.policy).__name__} to ONNX: {type(exc).__name__}: {first}") from None
    finally:
        partial.unlink(missing_ok=True)
    return ExportCheck(len(states), state_source, difference, timing)


def export_source(
    source: Path,
    out: Path,
    learner: Optional[str] = None,
    norm: Optional[Path] = None,
    env_id: Optional[str] = None,
    gym_packages: str = "",
    states: int = CHECK_STATES,
) -> ExportCheck:
    """Export a learner of a dpd run (``source`` a run dir; ``learner`` as ``dpd export --zoo``
    picks it) or a plain SB3 zip (with ``norm``, its VecNormalize pickle) to ``out``.

    The check's states are raw observations of the policy's own deterministic episodes where the
    env is known (a run's, or ``env_id``), else drawn from its normalisation statistics."""
    if states <= 0:
        raise UserError(f"--states must be positive, got {states}")
    if source.is_dir():
        _, spec, files = learner_files(source, learner)
        model_path, norm = files / MODEL_FILE, norm or files / NORM_FILE
        env_id, env_kwargs = env_id or spec["env_id"], spec.get("env_kwargs", {})
        gym_packages = gym_packages or spec.get("gym_packages", "")
        view = ObservationViewConfig(**spec["view"]) if spec.get("view") else None  # a student that saw less
    else:
        view = None
        if learner is not None:
            raise UserError("--learner picks a learner of a run; a model zip holds one")
        model_path, env_kwargs = source, {}
        norm = norm if norm is not None else (source.with_name(NORM_FILE) if source.with_name(NORM_FILE).is_file() else None)
    if env_id:
        check_env_id(env_id, comma_list(gym_packages))
        saved = load_saved_learner(
            "model", model_path, str(norm or ""), "", env_id, 0, dict(env_kwargs), UNTRAINED, gym_packages, view=view
        )
        where = f"deterministic episodes on {env_id}"
        if view is not None:
            where += f" as the student saw them (student.obs: the kept entries of its last {view.stack} observations)"
        try:
            raw = rollout_states(saved, states).seen
            return export_onnx(saved.model, saved.env, out, raw, where)
        finally:
            saved.close()
    model, statistics = load_model(model_path, norm)
    where = "its normalisation statistics (name --env for env states)" if statistics is not None else "its observation space"
    return export_onnx(model, statistics, out, states_from_statistics(model, statistics, states), where)
