import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest
import yaml

from dpd.agents.on_policy import PPOLearner
from dpd.agents.peer_setup import PEER_DISTILL_DEFAULTS
from dpd.config import (
    DistillConfig,
    DistillSettings,
    build_config,
    check_values,
    config_keys,
    config_markdown,
    config_table,
    load_yaml,
    parse_overrides,
)
from dpd.errors import UserError
from tests.conftest import TINY


def test_overrides_nest_and_parse_numbers():
    layer = parse_overrides(
        ["distill.alpha=0.75", "distill.lr=1e-4", "algo_kwargs.policy_kwargs={net_arch: [8, 8]}", "distill.enabled=false"]
    )
    cfg = build_config(layer)
    assert cfg.distill.alpha == 0.75 and cfg.distill.lr == pytest.approx(1e-4)
    assert cfg.algo_kwargs["policy_kwargs"]["net_arch"] == [8, 8]
    assert cfg.distill.enabled is False


def test_later_layers_win():
    cfg = build_config({"peers": 3, "distill": {"alpha": 1.0, "batch": 64}}, {"distill": {"alpha": 2.0}})
    assert cfg.peers == 3 and cfg.distill.alpha == 2.0 and cfg.distill.batch == 64


def test_integral_floats_become_ints():
    assert build_config({"total_steps": 1e6}).total_steps == 1_000_000


@pytest.mark.parametrize(
    "layer, message",
    [
        ({"distil": {}}, "unknown config key 'distil'"),
        ({"distill": {"alhpa": 1}}, "valid choices: distill.alpha"),
        ({"peers": "two"}, "peers: expected an integer"),
        ({"distill": {"enabled": "yes"}}, "expected true or false"),
        ({"distill": 3}, "distill: expected a mapping"),
        ({"total_steps": 1.5}, "expected an integer"),
    ],
)
def test_bad_keys_and_values(layer, message):
    with pytest.raises(UserError, match=message):
        build_config(layer)


@pytest.mark.parametrize("given, expected", [(3, "3"), ("0,3", "0,3"), ([0, 3], "0,3"), ([1, "velocities"], "1,velocities")])
def test_a_student_drop_is_one_comma_separated_string_however_yaml_reads_it(given, expected):
    """``--set student.obs.drop=3`` is a number to YAML, ``0,3`` a string, ``[0, 3]`` a list."""
    layer = {"peers": 1, "teacher": {"path": "t.zip"}, "student": {"obs": {"drop": given}}}
    assert build_config(layer).student.obs.drop == expected
    from_flag = build_config(parse_overrides([f"student.obs.drop={expected}"]), {"peers": 1, "teacher": {"path": "t"}})
    assert from_flag.student.obs.drop == expected


def test_bad_override_syntax():
    with pytest.raises(UserError, match="key=value"):
        parse_overrides(["distill.alpha"])


@pytest.mark.parametrize(
    "content, message", [(None, "not found"), ("peers: [1, 2\n", "not valid YAML"), ("- 1\n- 2\n", "mapping")]
)
def test_yaml_file_errors(tmp_path, content, message):
    path = tmp_path / "config.yaml"
    if content is not None:  # None: no file at all
        path.write_text(content)
    with pytest.raises(UserError, match=message):
        load_yaml(path)


def test_distill_off_shorthand(tmp_path):
    config = tmp_path / "independent.yaml"
    config.write_text("peers: 2\ndistill: off\n")
    assert build_config(load_yaml(config)).distill.enabled is False
    # on by default: a later ``distill=on`` must turn the file's ``off`` back on to show it is read
    assert build_config(load_yaml(config), parse_overrides(["distill=on"])).distill.enabled is True


# ----- one source for every key: its doc, docs/CONFIGURATION.md's table, the resolved DistillConfig


def readme_configuration_table() -> List[str]:
    """The markdown table of docs/CONFIGURATION.md (the first one, under "# Configuration"), line by line."""
    lines = (Path(__file__).parents[1] / "docs" / "CONFIGURATION.md").read_text().splitlines()
    start = lines.index("# Configuration")
    first = next(k for k in range(start, len(lines)) if lines[k].startswith("| key |"))
    table = []
    for line in lines[first:]:
        if not line.startswith("|"):
            break
        table.append(line)
    return table


def test_readme_configuration_table_is_config_table():
    """docs/CONFIGURATION.md's table is ``dpd config --markdown``: the same keys, defaults and meanings."""
    rows = [line.strip("| ").split(" | ") for line in readme_configuration_table()[2:]]
    expected = list(config_table())
    assert [row[0].strip("`") for row in rows] == [key for key, _, _ in expected]
    assert [row[1] for row in rows] == [default for _, default, _ in expected]
    assert "\n".join(readme_configuration_table()) + "\n" == config_markdown(), (
        "docs/CONFIGURATION.md's configuration table is out of date: "
        "paste `dpd config --markdown` over the table in docs/CONFIGURATION.md"
    )


def test_every_key_is_documented_with_a_default():
    rows = list(config_table())
    assert [key for key, _, _ in rows] == config_keys()
    for key, default, meaning in rows:
        assert meaning and default and default != "None", key


def test_resolved_distill_config_has_the_settings_keys_and_no_open_value():
    settings = {f.name for f in dataclasses.fields(DistillSettings)}
    assert issubclass(DistillConfig, DistillSettings)  # declared once
    assert [f.name for f in dataclasses.fields(DistillConfig)] == [f.name for f in dataclasses.fields(DistillSettings)]
    assert settings == {key.split(".", 1)[1] for key in config_keys() if key.startswith("distill.")}
    with pytest.raises(TypeError, match="unset: loss, alpha, every, steps, batch, lr, buffer_size"):
        DistillConfig()  # no open value: a resolved config has every key set
    with pytest.raises(TypeError, match="unset: alpha$"):
        DistillConfig(**{**PPOLearner.distill_defaults, **PEER_DISTILL_DEFAULTS, "alpha": None})


@pytest.mark.parametrize(
    "layer, message",
    [
        ({"eval": {"episodes": 0}}, "eval.episodes must be positive, got 0"),
        ({"eval": {"every": -1}}, "eval.every must not be negative, got -1"),
        ({"turn_steps": -1}, "turn_steps must not be negative, got -1"),
        ({"n_envs": 0}, "n_envs must be positive, got 0"),
        ({"total_steps": 1, "peers": 2}, "must give each of the 2 peers at least one step"),
        ({"teacher": {"path": "t.zip"}}, "a teacher teaches one student; got peers=2"),
        ({"peers": 1, "teacher": {"path": "t.zip", "mode": "dagge"}}, "unknown distillation mode 'dagge'"),
        ({"peers": 1, "teacher": {"path": "t.zip", "kickstart_schedule": "cosine"}}, "unknown kickstart schedule"),
        ({"peers": 1, "teacher": {"path": "t.zip", "kickstart_half_life": 0}}, "kickstart_half_life and agreement"),
        ({"peers": 1, "backend": "process", "teacher": {"path": "t.zip"}}, "a teacher-student run trains one learner"),
        ({"guide": {"rate": 1}}, "guide.rate must be above 1"),
    ],
)
def test_core_checks_need_only_the_config(layer, message):
    with pytest.raises(UserError, match=message):
        build_config(layer)  # a config build_config returns is checked


def test_the_runs_distill_keys_are_checked_when_the_config_is_built():
    with pytest.raises(UserError, match=re.escape("distill.every must be positive, got 0 for the run")):
        build_config({"distill": {"every": 0}})
    with pytest.raises(UserError, match="unknown policy loss 'huber'"):
        build_config({"distill": {"loss": "huber"}})
    assert build_config({"distill": {"every": 3}}).distill.alpha is None  # unset keys stay for the learner's default


def test_teacher_keys_are_not_checked_without_a_teacher():
    check_values(build_config({"teacher": {"mode": "dagge"}}))


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"every": 0}, "distill.every must be positive, got 0 for peer0 (ppo)"),
        ({"alpha": -1.0}, "distill.alpha must not be negative, got -1.0 for peer0 (ppo)"),
        ({"loss": "huber"}, "unknown policy loss 'huber'"),
        ({"temperature": 2.0}, "distill.temperature applies to the kl and kl_reverse losses, not 'mse' (peer0 (ppo))"),
        ({"weighting": "sigmoid"}, "unknown weighting 'sigmoid'"),
        ({"combine": "mean"}, "unknown combine rule 'mean'; valid choices: best, round_robin"),
        ({"gate": "eval"}, "unknown distillation gate 'eval'; valid choices: none, return"),
    ],
)
def test_a_resolved_distill_config_checks_its_values(changes, message):
    ppo_peer = {**PPOLearner.distill_defaults, **PEER_DISTILL_DEFAULTS}
    DistillConfig(**ppo_peer).check("peer0 (ppo)")
    with pytest.raises(UserError, match=re.escape(message)):
        DistillConfig(**{**ppo_peer, **changes}).check("peer0 (ppo)")


def test_the_core_does_not_import_the_agents():
    code = "import sys, dpd.config; sys.exit(any(name.startswith('dpd.agents') for name in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


MIXED = {
    "env": TINY,
    "algo": "ppo,sac",
    "peers": 3,
    "total_steps": 3000,
    "distill": {"alpha": 0.6},
    "algo_kwargs": {"gamma": 0.95},
    "peer_configs": [{}, {"distill": {"every": 50}}, {"algo": "td3", "algo_kwargs": {"learning_rate": 1e-3}}],
}


@pytest.mark.parametrize(
    "layer",
    [
        MIXED,
        {"env": TINY, "algo": "sac,td3", "share": True, "guide": "best"},
        {"env": TINY, "algo": "sac,td3", "share": {"enabled": True, "updates": "per_peer"}, "distill": False},
        {"env": TINY, "peers": 2},
    ],
)
def test_resolved_config_gives_the_same_peers(layer):
    from dpd.agents import peer_setups
    from dpd.agents.peer_setup import resolved_config

    cfg = build_config(layer)
    resolved = resolved_config(cfg)
    text = yaml.safe_dump(resolved, sort_keys=False)
    assert "null" not in text
    again = build_config(yaml.safe_load(text))
    assert peer_setups(again) == peer_setups(cfg)
    assert resolved_config(again) == resolved  # a fixed point: writing it again changes nothing


def test_run_dir_config_yaml_repeats_the_run(tmp_path):
    """``dpd train --config RUN_DIR/config.yaml`` resolves to the same peers as the run."""
    from dpd.agents import new_run, peer_setups

    trainer = new_run(tmp_path / "run", build_config(MIXED))
    trainer.close()
    text = (tmp_path / "run" / "config.yaml").read_text()
    assert "null" not in text
    written = yaml.safe_load(text)
    assert written["distill"]["alpha"] == 0.6 and "every" not in written["distill"]  # the peers differ there
    assert [entry.get("distill", {}).get("every") for entry in written["peer_configs"]] == [5, 50, 100]
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    again = peer_setups(build_config(load_yaml(tmp_path / "run" / "config.yaml")))
    assert [
        {"name": setup.spec.name, "algo_kwargs": setup.algo_kwargs, "distill": dataclasses.asdict(setup.distill)}
        for setup in again
    ] == manifest["resolved_peers"]
    assert [dataclasses.asdict(setup.spec) for setup in again] == manifest["learners"]
