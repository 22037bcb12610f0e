"""Per-environment default hyperparameters, merged under the user's config.

MuJoCo tasks use SB3's own defaults plus VecNormalize: the baseline configuration of the DPD
paper, so a DPD run and a plain SB3 run differ only in distillation. The tiny env gets a
short rollout and a larger learning rate so that tests learn in a few thousand steps.
"""

import copy
from typing import Any, Dict

from dpd.envs.factory import TINY_ENV_ID

_TINY_OFF_POLICY = {
    "learning_starts": 200,
    "batch_size": 64,
    "learning_rate": 3e-3,
    "gamma": 0.95,
    "buffer_size": 10_000,
    "policy_kwargs": {"net_arch": [32, 32]},
}

ENV_DEFAULTS: Dict[str, Dict[str, Dict[str, Any]]] = {
    TINY_ENV_ID: {
        "ppo": {
            "n_steps": 256,
            "batch_size": 64,
            "n_epochs": 10,
            "learning_rate": 1e-3,
            "gamma": 0.95,
            "gae_lambda": 0.9,
            "policy_kwargs": {"net_arch": [32, 32]},
        },
        "a2c": {"n_steps": 16, "learning_rate": 3e-3, "gamma": 0.95, "policy_kwargs": {"net_arch": [32, 32]}},
        "sac": _TINY_OFF_POLICY,
        "td3": _TINY_OFF_POLICY,
        "ddpg": _TINY_OFF_POLICY,
    },
}


def env_defaults(env_id: str, algo: str) -> Dict[str, Any]:
    """Algorithm hyperparameters recommended for ``env_id`` (empty: SB3's defaults)."""
    return copy.deepcopy(ENV_DEFAULTS.get(env_id, {}).get(algo, {}))
