"""The lock file (``requirements.lock``): exact pins that satisfy ``pyproject.toml``, and the
versions this suite runs on (``make setup`` installs them)."""

from importlib import metadata
from pathlib import Path
from typing import Dict

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
tomllib = pytest.importorskip("tomllib")  # Python 3.11+


def locked() -> Dict[str, Version]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, sep, version = line.partition("==")
        assert sep and name.strip() and "+" not in version, f"not an exact public pin: {line!r}"
        pins[canonicalize_name(name)] = Version(version)
    return pins


def test_the_lock_pins_every_requirement_within_its_range():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"], *project["optional-dependencies"]["test"], *project["optional-dependencies"]["ray"]]
    pins = locked()
    for text in wanted:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not locked"
        assert requirement.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} outside {requirement}"
    assert {"torch", "numpy", "gymnasium", "mujoco", "stable-baselines3"} <= set(pins)


def test_the_suite_runs_on_the_locked_versions():
    """What ``make setup`` installed; a local build label (torch's +cpu) is the same release."""
    differing = {}
    for name, version in locked().items():
        installed = Version(metadata.version(name))
        if Version(installed.public) != version:
            differing[name] = f"{installed} installed, {version} locked"
    assert differing == {}, "run make setup (or make lock, if pyproject.toml changed)"
