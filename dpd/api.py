"""dpd from Python, in the manner of an SB3 model: build, ``learn``, ``evaluate``, ``save``, ``load``.

A ``Peers`` (a peer group) or a ``Student`` (taught by a trained SB3 model) trains into a run
directory, the one ``dpd train`` writes, through the same calls as the command line
(``dpd.agents.new_run`` and ``open_run``). So ``dpd eval``, ``dpd train --resume`` and TensorBoard
work on it, and ``load`` reopens a directory the command line wrote. Settings are the config's
keys (``dpd config``), given as keyword arguments: ``distill={"weighting": "soft"}``,
``share="on"``, ``algo_kwargs={"learning_rate": 1e-4}``, ``backend="process"``.
"""

import copy
import os
import shutil
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback

from dpd.agents import ALGORITHMS, EvalResult, check_config, evaluate_run, new_run, open_run
from dpd.config import build_config
from dpd.errors import UserError
from dpd.rundir import MANIFEST, RunDirectory

PathLike = Union[str, Path]
CallbackArg = Union[None, BaseCallback, Sequence[Optional[BaseCallback]]]


class _Run:
    """What a peer group and a student share: a run directory and how it is trained and read."""

    def __init__(self, layer: Dict[str, Any], settings: Dict[str, Any], run_dir: Optional[PathLike]) -> None:
        self._layer = layer
        self._settings = settings
        self.run_dir: Optional[Path] = Path(run_dir) if run_dir is not None else None
        self.results: List[EvalResult] = []  # final evaluations of the last ``learn``
        if layer:  # as SB3's constructors do: a bad algorithm, env id or setting fails here, not at learn()
            check_config(build_config({**layer, "total_steps": 1_000_000}, settings))  # the budget comes with learn()

    def learn(self, total_timesteps: int, callback: CallbackArg = None, progress_bar: bool = False) -> "_Run":
        """Train for ``total_timesteps`` env steps of all learners together (a new run), or on to
        the run's budget (a loaded one: ``total_timesteps`` must then equal that budget).

        ``callback``: one SB3 callback, copied for each learner, or a sequence with one callback
        (or None) per learner; a callback that returns False from ``on_step`` stops its learner.
        On the ``process`` and Ray backends callbacks are pickled to the learner's process."""
        if self.run_dir is not None and (self.run_dir / MANIFEST).is_file():
            trainer = open_run(self.run_dir)
            budget = trainer.cfg.total_steps
            if total_timesteps != budget:
                trainer.close()
                raise UserError(f"run {self.run_dir} trains to {budget} env steps; learn(total_timesteps={budget}) resumes it")
        else:
            cfg = build_config({**self._layer, "total_steps": total_timesteps}, self._settings)
            self.run_dir = self.run_dir or _fresh_run_dir(cfg.algo, cfg.env)
            trainer = new_run(self.run_dir, cfg)
        try:
            names = [learner.spec.name for learner in trainer.group.learners]
            self.results = trainer.train(progress_bar, _per_learner(callback, names))
        finally:
            trainer.close()
        return self

    def evaluate(self, n_eval_episodes: int = 10) -> List[EvalResult]:
        """Deterministic returns of each learner from the latest checkpoint (what ``dpd eval`` prints)."""
        return evaluate_run(self._trained_dir(), n_eval_episodes)

    @property
    def models(self) -> List[BaseAlgorithm]:
        """Each learner as a plain SB3 model, from the latest checkpoint (its VecNormalize
        statistics are beside it: ``vecnormalize.pkl``)."""
        run = RunDirectory.open(self._trained_dir())
        checkpoint = run.checkpoint_dir
        assert checkpoint is not None
        device = run.manifest["config"].get("device", "cpu")  # the device the run trained on
        return [
            ALGORITHMS[learner["algo"]].algo_class.load(checkpoint / learner["name"] / "model.zip", device=device)
            for learner in run.manifest["learners"]
        ]

    def save(self, path: PathLike) -> Path:
        """A copy of the whole run directory at ``path`` (which must not exist)."""
        target = Path(path)
        if target.exists():
            raise UserError(f"{target} already exists; save into a new path")
        shutil.copytree(self._trained_dir(), target)
        return target

    def _trained_dir(self) -> Path:
        trained = self.run_dir is not None and (self.run_dir / MANIFEST).is_file()
        if self.run_dir is None or not trained or RunDirectory.open(self.run_dir).checkpoint_dir is None:
            raise UserError("nothing trained yet: call learn() first (or load() a run directory)")
        return self.run_dir


def _given(**values: Any) -> Dict[str, Any]:
    """The arguments a caller gave (not None): the config's declarations supply the rest."""
    return {key: value for key, value in values.items() if value is not None}


class Peers(_Run):
    """Two or more SB3 learners of one task that learn from each other.

    >>> peers = Peers("ppo", "Hopper-v5", peers=2, distill={"weighting": "soft"}, seed=0, run_dir="runs/hop")
    >>> peers.learn(total_timesteps=1_000_000)
    >>> best = peers.models[0]  # a plain SB3 PPO model
    """

    def __init__(
        self,
        algo: Optional[str] = None,
        env: Optional[str] = None,
        peers: Optional[int] = None,
        seed: Optional[int] = None,
        run_dir: Optional[PathLike] = None,
        **settings: Any,
    ) -> None:
        """Arguments left at None take the config's defaults (``dpd config``), as ``dpd train``'s flags do."""
        super().__init__(_given(algo=algo, env=env, peers=peers, seed=seed), settings, run_dir)

    @classmethod
    def load(cls, run_dir: PathLike) -> "Peers":
        """A run directory written by ``learn`` or ``dpd train``: evaluate it, read its models,
        or ``learn`` on to its budget."""
        return _loaded(cls, run_dir)


class Student(_Run):
    """One SB3 learner taught by a trained SB3 model (``teacher``: its zip, from dpd, plain SB3
    or the RL zoo), in one of the teacher-student modes (``dpd distill``).

    >>> student = Student("runs/hop/checkpoints/.../peer0/model.zip", "Hopper-v5", mode="kickstart")
    >>> student.learn(total_timesteps=200_000)
    """

    def __init__(
        self,
        teacher: PathLike,
        env: str,
        algo: Optional[str] = None,
        mode: Optional[str] = None,
        seed: Optional[int] = None,
        run_dir: Optional[PathLike] = None,
        **settings: Any,
    ) -> None:
        """``mode``: one of ``dpd distill --mode``'s. Arguments left at None take the config's
        defaults (``dpd config``; ``teacher.mode`` for ``mode``), as ``dpd distill`` without the flag."""
        teacher_settings = {"path": str(teacher), **_given(mode=mode), **settings.pop("teacher", {})}
        super().__init__(
            {**_given(algo=algo, seed=seed), "env": env, "peers": 1}, {**settings, "teacher": teacher_settings}, run_dir
        )

    @classmethod
    def load(cls, run_dir: PathLike) -> "Student":
        """A run directory written by ``learn`` or ``dpd distill``."""
        return _loaded(cls, run_dir)


def supervised_kd(
    method: str, dataset: str = "digits", run_dir: Optional[PathLike] = None, **settings: Any
) -> Tuple[Any, Path]:
    """One supervised distillation run, as ``dpd kd`` makes it: train (or load, ``teacher_path``)
    a teacher on ``dataset``, distill it into a student with ``method`` (``dpd kd --help`` lists
    them), measure accuracy and fidelity. Returns the report (``KDReport``, also in
    ``RUN_DIR/results.json``) and the run directory.

    ``settings``: ``KDConfig``'s fields (``epochs``, ``student_net=(16,)``, ``teacher_net``,
    ``seed``, ...) and ``options``, a mapping of the methods' hyperparameters (``KDOptions``).

    >>> report, run_dir = supervised_kd("hinton", epochs=20, options={"temperature": 4.0})
    >>> report.fidelity.student_accuracy
    """
    from dataclasses import fields

    from dpd.errors import unknown_choice
    from dpd.kd.experiment import run_kd
    from dpd.kd.options import KDConfig, KDOptions

    valid = {f.name for f in fields(KDConfig)} - {"method", "dataset", "run_dir"}
    option_names = {f.name for f in fields(KDOptions)}
    for key in settings:
        if key not in valid:
            raise unknown_choice("kd setting", key, valid)
    options = settings.pop("options", {})
    if not isinstance(options, KDOptions):
        for key in options:
            if key not in option_names:
                raise unknown_choice("kd option", key, option_names)
        options = KDOptions(**options)
    config = KDConfig(
        method=method, dataset=dataset, run_dir=None if run_dir is None else str(run_dir), options=options, **settings
    )
    return run_kd(config)


def _loaded(cls: type, run_dir: PathLike) -> Any:
    RunDirectory.open(Path(run_dir))  # a user error where it is not a run directory
    run = cls.__new__(cls)
    _Run.__init__(run, {}, {}, run_dir)
    return run


def _per_learner(callback: CallbackArg, learners: Sequence[str]) -> List[Optional[BaseCallback]]:
    """One callback per learner: copies of a single one (a callback binds to one model), each
    writing its learner's own files (``_own_files``), or the given sequence."""
    if callback is None or isinstance(callback, BaseCallback):
        return [_own_files(copy.deepcopy(callback), name) for name in learners]
    callbacks = list(callback)
    if len(callbacks) != len(learners):
        raise UserError(
            f"callback: give one SB3 callback for all learners or one per learner ({len(learners)}), got {len(callbacks)}"
        )
    return callbacks


def _own_files(callback: Optional[BaseCallback], learner: str) -> Optional[BaseCallback]:
    """A copy of the user's callback for ``learner``, with the files it writes made that
    learner's own: SB3's ``CheckpointCallback`` names its zips ``<name_prefix>_<learner>_...``,
    ``EvalCallback`` writes its best model and evaluations under ``<path>/<learner>``. Without
    this, the learners' copies would overwrite each other's files."""
    if callback is None:
        return None
    if isinstance(getattr(callback, "name_prefix", None), str):
        callback.name_prefix = f"{callback.name_prefix}_{learner}"  # type: ignore[attr-defined]
    for attribute in ("best_model_save_path", "log_path"):
        path = getattr(callback, attribute, None)
        if isinstance(path, str):
            setattr(callback, attribute, os.path.join(path, learner))
    return callback


def _fresh_run_dir(algo: str, env: str) -> Path:
    """``runs/<algo>-<env>-<time>``, as ``make demo`` names its runs."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{algo.replace(',', '+')}-{env.replace('/', '_')}-{stamp}"
