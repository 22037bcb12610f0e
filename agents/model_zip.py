"""Reading a saved SB3 zip without loading it, so that a model of unknown origin can be loaded
by the right algorithm class (SB3's ``load`` needs the class up front)."""

import json
import zipfile
from pathlib import Path

from dpd.agents.algorithms import ALGORITHMS
from dpd.errors import UserError


def detect_algo(path: Path) -> str:
    """The algorithm of an SB3 zip, read from its saved policy class and hyperparameters."""
    try:
        with zipfile.ZipFile(path) as archive:
            data = json.loads(archive.read("data"))
        module = str(data["policy_class"]["__module__"])
    except (zipfile.BadZipFile, KeyError, ValueError, TypeError) as exc:
        raise UserError(f"{path} is not a readable SB3 model zip: {exc}") from None
    if ".sac." in module:
        return "sac"
    if ".td3." in module:  # DDPG saves TD3's policy; TD3 loads it for acting and values
        return "td3"
    if module.endswith("common.policies"):
        return "ppo" if "clip_range" in data else "a2c"
    raise UserError(f"cannot tell the algorithm of {path} (policy module {module}); name it ({', '.join(sorted(ALGORITHMS))})")
