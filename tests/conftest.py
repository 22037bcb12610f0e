"""Helpers several test files share: the tiny env and learners on it, the command line's exit
codes and error line, run manifests and TensorBoard logs, and a Ctrl-C at a chosen point."""

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from dpd import envs  # registers the tiny env
from dpd.cli import EXIT_USER_ERROR, main

if TYPE_CHECKING:
    from dpd.agents.learner import Learner

torch.set_num_threads(1)

TINY = envs.TINY_ENV_ID

# Modules whose tests share one module-scoped fixture too costly to make twice (a simulated Ray
# cluster): pytest-xdist sends each of them whole to one worker. A test class is kept whole too:
# a module groups in one class the tests that share a costly fixture (a tiny bench grid).
WHOLE_MODULES = ("tests/test_ray_cluster.py",)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """xdist's default (``load``: any test to any worker), but each of ``WHOLE_MODULES`` and each
    test class to one worker. (xdist's ``loadgroup`` would do it with a marker, but under pytest 9
    its marker no longer takes: it renames test ids through an attribute pytest 9 does not read.)"""
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class LoadKeepingModulesWhole(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module, *names = nodeid.split("::")
            if module in WHOLE_MODULES:
                return module
            return f"{module}::{names[0]}" if len(names) > 1 else nodeid

    return LoadKeepingModulesWhole(config, log)


def random_policy_return(episodes: int = 30, seed: int = 123) -> float:
    """Mean return of uniformly random actions on the tiny env."""
    import gymnasium as gym

    env = gym.make(TINY)
    env.action_space.seed(seed)
    totals = []
    for episode in range(episodes):
        env.reset(seed=seed + episode)
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total += reward
            done = terminated or truncated
        totals.append(total)
    return float(np.mean(totals))


@pytest.fixture(scope="session")
def random_return() -> float:
    return random_policy_return()


def beats_random(mean_return: float, random_return: float) -> bool:
    """Clearly better than random actions: by half the random return's size, whatever its sign."""
    return mean_return > random_return + 0.5 * abs(random_return)


def tiny_learners(
    algo: str = "ppo", peers: int = 1, total_steps: int = 2048, start: bool = False, **overrides: Any
) -> List["Learner"]:
    """Learners on the tiny env, built as a run builds them; ``start`` readies them to train."""
    from dpd.agents import build_learners
    from dpd.config import build_config

    learners = build_learners(build_config({"env": TINY, "algo": algo, "peers": peers, "total_steps": total_steps}, overrides))
    if start:
        for learner in learners:
            learner.start(None)
    return learners


def train_to_budget(learner: "Learner") -> None:
    """Train a started learner alone until its budget is spent."""
    while not learner.done:
        learner.train_iteration(0)


def expect_cli_error(args: Sequence[str], capsys: pytest.CaptureFixture) -> str:
    """Run ``dpd ARGS``, which must fail as a user error: exit code 2 and one line on stderr."""
    assert main(list(args)) == EXIT_USER_ERROR
    err = capsys.readouterr().err.strip()
    assert err.startswith("dpd: error:") and len(err.splitlines()) == 1, err
    return err


def read_manifest(run_dir: Path) -> Dict[str, Any]:
    return json.loads((Path(run_dir) / "manifest.json").read_text())


def resume(run_dir: Path) -> Dict[str, Any]:
    """``dpd train --resume`` to the end of the run's budget; the manifest it leaves."""
    assert main(["train", "--resume", str(run_dir), "--no-progress"]) == 0
    return read_manifest(run_dir)


def scalar_tags(log_dir: Path) -> EventAccumulator:
    """The TensorBoard scalars written under ``log_dir``, loaded."""
    events = EventAccumulator(str(log_dir))
    events.Reload()
    return events


def interrupt(
    monkeypatch: pytest.MonkeyPatch,
    owner: type,
    name: str,
    after_calls: Optional[int] = None,
    when: Optional[Callable[[Any], bool]] = None,
) -> Callable[[], None]:
    """Make ``owner.name`` raise KeyboardInterrupt, as Ctrl-C would, after ``after_calls`` calls or
    once ``when(self)`` holds; returns a function that restores the original."""
    original = getattr(owner, name)
    calls = [0]

    def patched(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if (after_calls is not None and calls[0] > after_calls) or (when is not None and when(self)):
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(owner, name, patched)
    return lambda: monkeypatch.setattr(owner, name, original)


def kd(argv: Sequence[str]) -> int:
    """Run ``dpd kd ARGV`` through the subcommand's own parser (user errors raise, not print)."""
    from dpd.cli import _Parser
    from dpd.kd.cli import add_kd_parser

    parser = _Parser(prog="dpd")
    add_kd_parser(parser.add_subparsers(dest="command", required=True, parser_class=_Parser))
    args = parser.parse_args(["kd", *argv])
    return args.handler(args)
