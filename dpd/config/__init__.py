"""Run configuration: typed dataclasses, YAML files and ``--set key=value`` overrides.

Precedence, lowest first: the defaults below, the per-env defaults of ``dpd.envs.defaults`` (for
``algo_kwargs``), an RL-zoo entry (``--hyperparams FILE.yml``, turned into config values by
``dpd.zoo.zoo_layer``), a ``--config FILE.yaml``, ``--set`` overrides, explicit command-line flags.
Unknown keys and ill-typed values are user errors that name the valid keys.

This module is the one source of what each key means: every field is declared with
``setting(default, doc)``, whose ``doc`` says what it means, in which unit, and where its default
comes from. ``config_table()`` lists them; ``dpd config`` prints that list, ``dpd train --help``
points to it, and a test checks docs/CONFIGURATION.md's table against it.

Each section checks its own values in a ``check()`` method next to its fields, and
``check_values`` runs those checks for a whole run config; ``build_config`` runs it, so a config
it returns has been checked. Checks that need the learners
(algorithm names, SB3's hyperparameters, distribution kinds, backends) are in
``dpd.agents.checks``.

Distillation settings come in two forms: ``DistillSettings``, as the user writes them (keys left
at ``None`` take the learner's algorithm's default), and ``DistillConfig``, resolved for one
learner (``dpd.agents.peer_setup``), with every value set and checked.
"""

from dpd.config.documentation import config_markdown, config_table
from dpd.config.loading import (
    build_config,
    build_distill_config,
    build_distill_settings,
    check_finite,
    expand_shortcuts,
    load_yaml,
    merge,
    parse_overrides,
    parse_scalar,
)
from dpd.config.schema import (
    COMBINE_RULES,
    DATASET_PREFIX,
    DEVICES,
    GATES,
    LOG_FORMATS,
    MAX_PEERS,
    MODES,
    PER_ALGORITHM,
    SCHEDULES,
    VIEW_MODES,
    DistillConfig,
    DistillSettings,
    EvalConfig,
    GuideConfig,
    ObservationViewConfig,
    RunConfig,
    ShareConfig,
    StudentConfig,
    TeacherConfig,
    check_values,
    comma_list,
    config_keys,
    setting,
)

__all__ = [
    "COMBINE_RULES",
    "DEVICES",
    "GATES",
    "LOG_FORMATS",
    "MAX_PEERS",
    "DATASET_PREFIX",
    "MODES",
    "PER_ALGORITHM",
    "SCHEDULES",
    "VIEW_MODES",
    "DistillConfig",
    "DistillSettings",
    "EvalConfig",
    "GuideConfig",
    "ObservationViewConfig",
    "RunConfig",
    "ShareConfig",
    "StudentConfig",
    "TeacherConfig",
    "build_config",
    "build_distill_config",
    "build_distill_settings",
    "check_finite",
    "check_values",
    "comma_list",
    "config_keys",
    "config_markdown",
    "config_table",
    "expand_shortcuts",
    "load_yaml",
    "merge",
    "parse_overrides",
    "parse_scalar",
    "setting",
]
