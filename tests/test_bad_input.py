"""Bad input to every command ends in exit code 2, one line on stderr (``dpd: error: ...``), no
traceback, and nothing written.

Each case is (command line, fragment of the error line). In the command line, ``{tmp}`` is the
test's empty directory (also the working directory, so default run dirs land there too), and
``{file}``, ``{list}``, ... name the files ``inputs`` puts there first.
"""

import errno
import importlib.util
import os
from pathlib import Path
from typing import Dict, List

import pytest

from tests.conftest import TINY, expect_cli_error

TRAIN = ["train", "--env", TINY, "--no-progress", "--total-steps", "512", "--run-dir", "{tmp}/run"]
TRAIN_ANY_STEPS = ["train", "--env", TINY, "--no-progress", "--run-dir", "{tmp}/run"]  # flags win over --set
DISTILL = ["distill", "--env", TINY, "--no-progress", "--total-steps", "512", "--run-dir", "{tmp}/run"]
DISTILL_MISSING = [*DISTILL, "--teacher", "{tmp}/none.zip"]
FIDELITY = ["fidelity", "{tmp}/teacher.zip", "{tmp}/student.zip", "--env", TINY]
KD = ["kd", "--method", "hinton", "--dataset", "wine", "--epochs", "1", "--run-dir", "{tmp}/run"]
BENCH = ["bench", "--envs", TINY, "--algos", "ppo", "--methods", "sb3", "--seeds", "0", "--total-steps", "512"]
BENCH_OUT = [*BENCH, "--no-progress", "--out", "{tmp}/out"]

# Files the cases read; none of them is a run a command may write to.
INPUTS = {
    "file": "just a file\n",
    "list.yaml": "- env: Hopper-v5\n- peers: 3\n",
    "scalar.yaml": "42\n",
    "bad.yaml": "distill: {alpha: [\n",
    "keys.yaml": "distill:\n  alhpa: 1.0\n",
    "nan.yaml": "distill:\n  alpha: .nan\n",
    "corrupt/manifest.json": "{not json",
    "listed/manifest.json": "[]",
    "noconfig/manifest.json": '{"progress": {}}',
    "badconfig/manifest.json": '{"config": "HalfCheetah", "progress": {}}',
    "badkey/manifest.json": '{"config": {"peers": "many"}, "progress": {"run_steps": 0, "checkpoint": null}}',
}
BOX2D = importlib.util.find_spec("Box2D") is not None

CASES = [
    # train: unknown names
    ([*TRAIN, "--env", "NoSuchEnv-v9"], "unknown env id 'NoSuchEnv-v9'; valid choices: Ant-v5"),
    ([*TRAIN, "--env", "CartPole-v1"], "has a Discrete action space; dpd needs continuous (Box) actions"),
    pytest.param(
        [*TRAIN, "--env", "CarRacing-v3"],
        "env 'CarRacing-v3' needs a package that is not installed: Box2D is not installed",
        marks=pytest.mark.skipif(BOX2D, reason="Box2D is installed here"),
    ),
    ([*TRAIN, "--algo", "dqn"], "unknown algorithm 'dqn'; valid choices: a2c, ddpg, ppo, sac, td3"),
    ([*TRAIN, "--set", "distill.loss=huber"], "unknown policy loss 'huber'; valid choices: kl, kl_reverse, mse, nll"),
    ([*TRAIN, "--set", "distill.weighting=sigmoid"], "unknown weighting 'sigmoid'"),
    ([*TRAIN, "--set", "distill.gate=eval"], "unknown distillation gate 'eval'; valid choices: none, return"),
    ([*TRAIN, "--backend", "mpi"], "unknown backend 'mpi'"),
    ([*TRAIN, "--set", "nonsense.key=1"], "unknown config key 'nonsense'"),
    ([*TRAIN, "--set", "guide=follow"], "unknown guide mode 'follow'"),
    ([*TRAIN, "--set", "backend=cloud"], "unknown backend 'cloud'"),
    ([*TRAIN, "--set", "distill.combine=mean"], "unknown combine rule 'mean'; valid choices: best, round_robin"),
    ([*TRAIN, "--algo", "ppo,dqn"], "unknown algorithm 'dqn'"),
    ([*TRAIN, "--set", "distill.alpha"], "--set expects key=value"),
    # train: the learners' and the group's settings, checked before anything is built ({{ }}: a brace)
    ([*TRAIN, "--set", "algo_kwargs.n_stepz=64"], "unknown ppo hyperparameter"),
    ([*TRAIN, "--set", "algo_kwargs.batch_size=zero"], "cannot build a ppo learner"),
    ([*TRAIN, "--algo", "sac", "--set", "algo_kwargs.n_epochs=3"], "unknown sac hyperparameter"),
    ([*TRAIN, "--set", "env_kwargs.gravity=3"], "rejected env_kwargs"),
    ([*TRAIN, "--algo", "td3", "--set", "distill.loss=nll"], "needs a stochastic policy but peer0 (td3) is deterministic"),
    ([*TRAIN, "--algo", "ppo,sac", "--set", "distill.loss=kl"], "peers mix gaussian, squashed_gaussian; use mse or nll"),
    (
        [*TRAIN, "--algo", "ppo,sac", "--set", "peer_configs=[{{}}, {{algo_kwargs: {{gamma: 0.9}}}}]"],
        "peers must share one discount",
    ),
    ([*TRAIN, "--set", "peer_configs=[{{algo: ppo, lr: 1}}]"], "unknown key in peer_configs[0] 'lr'"),
    ([*TRAIN, "--set", "peer_configs=[{{distill: {{alhpa: 1}}}}]"], "unknown config key 'peer_configs[0].distill.alhpa'"),
    ([*TRAIN, "--set", "peer_configs=[{{}}, {{}}, {{}}]"], "peer_configs has 3 entries for 2 peers"),
    ([*TRAIN, "--set", "distill.temperature=2"], "distill.temperature applies to the kl and kl_reverse losses"),
    ([*TRAIN, "--set", "distill.loss=kl", "--set", "distill.temperature=0"], "distill.temperature must be positive"),
    # train: numbers out of range, non-integer, infinite, NaN
    ([*TRAIN, "--peers", "0"], "peers must be positive, got 0"),
    ([*TRAIN, "--peers", "-3"], "peers must be positive, got -3"),
    ([*TRAIN, "--peers", "10000"], "peers must be at most 64, got 10000"),
    ([*TRAIN, "--total-steps", "0"], "total_steps must be positive, got 0"),
    ([*TRAIN, "--total-steps", "1.5"], "invalid int value: '1.5'"),
    ([*TRAIN_ANY_STEPS, "--set", "total_steps=inf"], "config key total_steps: expected an integer, got inf"),
    ([*TRAIN, "--set", "checkpoint_every=nan"], "config key checkpoint_every: expected an integer, got nan"),
    ([*TRAIN, "--set", "turn_steps=100.5"], "config key turn_steps: expected an integer, got 100.5"),
    ([*TRAIN, "--seed", "-1"], "seed must not be negative, got -1"),
    ([*TRAIN, "--set", "seed_offset=-5"], "seed_offset must not be negative, got -5"),
    ([*TRAIN, "--set", "distill.alpha=nan"], "config key distill.alpha: expected a finite number, got nan"),
    ([*TRAIN, "--set", "distill.lr=inf"], "config key distill.lr: expected a finite number, got inf"),
    ([*TRAIN, "--set", "algo_kwargs.learning_rate=nan"], "config key algo_kwargs.learning_rate: expected a finite number"),
    ([*TRAIN, "--set", "env_kwargs.reward_scale=-inf"], "config key env_kwargs.reward_scale: expected a finite number"),
    ([*TRAIN, "--set", "eval.episodes=0"], "eval.episodes must be positive, got 0"),
    ([*TRAIN, "--set", "distill.every=-2"], "distill.every must be positive, got -2"),
    ([*TRAIN, "--set", "distill.every=0"], "distill.every must be positive, got 0"),
    ([*TRAIN, "--set", "distill.start=-1"], "distill.start must not be negative"),
    ([*TRAIN, "--set", "distill.gate_episodes=0"], "distill.gate_episodes must be positive"),
    ([*TRAIN, "--total-steps", "-5"], "total_steps must be positive"),
    ([*TRAIN, "--total-steps", "many"], "invalid int value"),
    ([*TRAIN, "--set", "turn_steps=-1"], "turn_steps must not be negative, got -1"),
    # train: config files
    ([*TRAIN, "--config", "{list}"], "must hold a mapping of keys to values"),
    ([*TRAIN, "--config", "{scalar}"], "must hold a mapping of keys to values"),
    ([*TRAIN, "--config", "{bad}"], "is not valid YAML"),
    ([*TRAIN, "--config", "{keys}"], "unknown config key 'distill.alhpa'"),
    ([*TRAIN, "--config", "{nan}"], "config key distill.alpha: expected a finite number, got nan"),
    ([*TRAIN, "--config", "{tmp}/none.yaml"], "config file not found"),
    # train: where the run goes, and runs to resume
    ([*TRAIN, "--run-dir", "{file}/run"], "cannot create run dir"),
    ([*TRAIN, "--run-dir", "{file}"], "exists and is not empty"),
    (["train", "--resume", "{tmp}/nothing"], "missing manifest.json"),
    (["train", "--resume", "{corrupt}"], "is corrupt"),
    (["train", "--resume", "{listed}"], "is corrupt: missing config or progress"),
    (["train", "--resume", "{noconfig}"], "is corrupt: missing config or progress"),
    (["train", "--resume", "{badconfig}"], "is corrupt: a config must be a mapping"),
    (["train", "--resume", "{badkey}"], "is corrupt: config key peers: expected an integer, got 'many'"),
    (["train", "--resume", "{tmp}", "--env", TINY], "--resume takes the config from the run dir; drop --env"),
    # eval
    (["eval", "{tmp}/nothing"], "missing manifest.json"),
    (["eval", "{corrupt}"], "is corrupt"),
    (["eval", "{badkey}"], "is corrupt"),
    (["eval", "{tmp}", "--episodes", "0"], "--episodes must be positive, got 0"),
    (["eval", "{tmp}", "--episodes", "-2"], "--episodes must be positive, got -2"),
    # distill
    (
        [*DISTILL_MISSING, "--student-net", "0"],
        "--student-net expects positive layer sizes like 64,64, or none (a linear policy), got '0'",
    ),
    (
        [*DISTILL_MISSING, "--student-net=-4"],
        "--student-net expects positive layer sizes like 64,64, or none (a linear policy), got '-4'",
    ),
    ([*DISTILL_MISSING, "--student-net", "64,x"], "--student-net expects positive layer sizes"),
    (DISTILL_MISSING, "teacher model not found"),
    ([*DISTILL_MISSING, "--mode", "dagge"], "unknown distillation mode 'dagge'"),
    ([*DISTILL_MISSING, "--student-algo", "dqn"], "unknown algorithm 'dqn'"),
    ([*DISTILL_MISSING, "--set", "teacher.kickstart_schedule=cosine"], "unknown kickstart schedule 'cosine'"),
    ([*DISTILL_MISSING, "--set", "teacher.kickstart_lambda=nan"], "expected a finite number, got nan"),
    ([*DISTILL, "--teacher", "{file}", "--env", "NoSuchEnv-v9"], "unknown env id 'NoSuchEnv-v9'"),
    # distill: what the student sees (student.obs), checked before the teacher is looked for
    ([*DISTILL_MISSING, "--set", "student.obs.drop=4"], "index 4 is out of range for DpdPointReach-v0's 4 observations"),
    ([*DISTILL_MISSING, "--set", "student.obs.drop=1,-1"], "index -1 is out of range"),
    ([*DISTILL_MISSING, "--set", "student.obs.drop=0,1,2,3"], "the student would see nothing"),
    ([*DISTILL_MISSING, "--set", "student.obs.stack=0"], "student.obs.stack must be at least 1"),
    ([*DISTILL_MISSING, "--set", "student.obs.stack=-2"], "student.obs.stack must be at least 1"),
    ([*DISTILL_MISSING, "--set", "student.obs.delay=-1"], "student.obs.delay must not be negative"),
    ([*DISTILL_MISSING, "--set", "student.obs.noise=-0.1"], "student.obs.noise must not be negative"),
    ([*DISTILL_MISSING, "--set", "student.obs.drop=true"], "student.obs.drop: expected a comma-separated list"),
    (
        [*DISTILL_MISSING, "--env", "HalfCheetah-v5", "--set", "student.obs.drop=velocity"],
        "unknown student.obs.drop group 'velocity' for HalfCheetah-v5; its groups: positions, qpos, qvel, velocities",
    ),
    (
        [*DISTILL_MISSING, "--set", "student.obs.drop=velocities"],
        "'velocities' names a group, but dpd knows no observation layout for DpdPointReach-v0",
    ),
    (
        [*DISTILL_MISSING, "--mode", "offline", "--set", "student.obs.stack=2"],
        "student.obs works with modes bc, dagger, online, kickstart, gated, ppd; mode offline",
    ),
    ([*TRAIN, "--set", "student.obs.stack=2"], "a peer group has no student"),
    (
        [*DISTILL[:-2], "--teacher", "minari:some/data-v0", "--mode", "bc", "--set", "student.obs.noise=0.1"],
        "student.obs needs a teacher to label the full observations; minari:some/data-v0 is a recording",
    ),
    # fidelity
    ([*FIDELITY, "--tolerance", "-1"], "--tolerance must be a positive number"),
    ([*FIDELITY, "--tolerance", "nan"], "--tolerance must be a positive number"),
    ([*FIDELITY, "--episodes", "0"], "--episodes and --states must be positive"),
    ([*FIDELITY, "--states", "-5"], "--episodes and --states must be positive"),
    (FIDELITY, "teacher model not found"),
    ([*FIDELITY, "--env", "NoSuchEnv-v9"], "unknown env id 'NoSuchEnv-v9'"),
    # kd
    ([*KD, "--method", "telepathy"], "unknown kd method 'telepathy'"),
    ([*KD, "--dataset", "nosuch"], "unknown dataset 'nosuch'"),
    ([*KD, "--epochs", "0"], "--epochs must be at least 1, got 0"),
    ([*KD, "--lr", "nan"], "--lr must be a positive number, got nan"),
    ([*KD, "--lr", "inf"], "--lr must be a positive number, got inf"),
    ([*KD, "--student-net", "0"], "--student-net needs at least one positive layer width"),
    ([*KD, "--run-dir", "{file}/run"], "cannot create run dir"),
    # bench
    ([*BENCH_OUT[:2], "CartPole-v1", *BENCH_OUT[3:]], "has a Discrete action space"),
    ([*BENCH_OUT, "--envs", "NoSuchEnv-v9"], "unknown env id 'NoSuchEnv-v9'"),
    ([*BENCH_OUT, "--methods", "sb3,magic"], "unknown benchmark method 'magic'"),
    ([*BENCH_OUT, "--algos", "dqn"], "unknown algorithm 'dqn'"),
    ([*BENCH_OUT, "--preset", "huge"], "unknown preset 'huge'"),
    ([*BENCH_OUT, "--backend", "mpi"], "unknown bench backend 'mpi'"),
    ([*BENCH_OUT, "--seeds", "5-2"], "--seeds range '5-2' is reversed; write 2-5"),
    ([*BENCH_OUT, "--seeds", "0,0"], "--seeds must name distinct seeds"),
    ([*BENCH_OUT, "--seeds", "x"], "--seeds expects a list such as 0-4"),
    ([*BENCH_OUT, "--workers", "0"], "--workers must be positive, got 0"),
    ([*BENCH_OUT, "--total-steps", "0"], "total_steps must be positive, got 0"),
    ([*BENCH_OUT, "--set", "distill.alpha=nan"], "config key distill.alpha: expected a finite number, got nan"),
    ([*BENCH, "--out", "{file}"], "is a file; give a directory"),
    ([*BENCH, "--out", "{file}/out"], "cannot create results directory"),
    ([*BENCH_OUT, "--report-only"], "no complete runs of this grid"),
    # any command
    (["fly"], "invalid choice: 'fly'"),
]


@pytest.fixture
def inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Dict[str, str]:
    """The input files, and the placeholders that name them; the working directory is ``tmp_path``."""
    monkeypatch.chdir(tmp_path)
    names = {"tmp": str(tmp_path)}
    for name, text in INPUTS.items():
        path = tmp_path / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
        names[name.split("/")[0].split(".")[0]] = str(path.parent if "/" in name else path)
    return names


def snapshot(directory: Path) -> Dict[str, bytes]:
    return {str(path.relative_to(directory)): path.read_bytes() for path in sorted(directory.rglob("*")) if path.is_file()}


def listing(directory: Path) -> List[str]:
    return sorted(str(path.relative_to(directory)) for path in directory.rglob("*"))


@pytest.mark.parametrize("args, message", CASES)
def test_bad_input_is_one_line_and_writes_nothing(args, message, inputs, tmp_path, capsys):
    before, files = listing(tmp_path), snapshot(tmp_path)
    err = expect_cli_error([arg.format(**inputs) for arg in args], capsys)
    assert message in err, err
    assert "Traceback" not in err
    assert listing(tmp_path) == before and snapshot(tmp_path) == files


@pytest.mark.parametrize(
    "args, what",
    [(TRAIN, "run dir"), (KD, "run dir"), ([*BENCH, "--no-progress", "--out", "{tmp}/out"], "results directory")],
)
def test_a_read_only_filesystem_is_one_line(args, what, inputs, tmp_path, monkeypatch, capsys):
    """Every directory a command would make is on a read-only filesystem."""

    def read_only(path, *args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    monkeypatch.setattr(os, "mkdir", read_only)
    err = expect_cli_error([arg.format(**inputs) for arg in args], capsys)
    assert f"cannot create {what}" in err and "Read-only file system" in err, err
    monkeypatch.undo()
    assert not (tmp_path / "run").exists() and not (tmp_path / "out").exists()
