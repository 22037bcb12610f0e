"""What a run's numbers depend on beyond its config: the code, the packages and the CPU.

A run repeats bit for bit only with the same versions of every package (torch, MuJoCo, NumPy,
SB3, ...) on the same kind of CPU: torch picks its kernels by the instruction sets it finds
(AVX2, AVX-512, ...), and floating-point sums in another order differ in their last bits, which
training amplifies. So the run manifest records all three (``provenance()``), each gathered
failing soft: a missing ``git``, an installed (not checked-out) dpd, or a system without
``/proc/cpuinfo`` leave a field empty instead of stopping the run.
"""

import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any, Dict, List, Optional

SOURCE_ROOT = Path(__file__).resolve().parents[1]  # the checkout, where dpd runs from one (pip install -e)
CPUINFO = Path("/proc/cpuinfo")
GIT_TIMEOUT_S = 5


def _git(*args: str) -> Optional[str]:
    try:
        done = subprocess.run(
            ["git", "-C", str(SOURCE_ROOT), *args], capture_output=True, text=True, timeout=GIT_TIMEOUT_S, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def git_commit() -> Dict[str, Any]:
    """The commit of the dpd checkout this code runs from, and whether it has uncommitted changes;
    nulls for an installed dpd (whose folder may lie inside some other repository: a venv in a
    checkout) or where git is missing."""
    top = _git("rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != SOURCE_ROOT or not (SOURCE_ROOT / "dpd" / "__init__.py").is_file():
        return {"commit": None, "dirty": None}
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"commit": _git("rev-parse", "HEAD"), "dirty": None if status is None else bool(status)}


def package_versions() -> Dict[str, str]:
    """Python's version and those of the packages a run's numbers depend on most (the manifest's
    ``versions``; what every node of a Ray cluster must share, ``dpd.agents.ray_cluster``)."""
    versions = {"python": platform.python_version()}
    for name in ("dpd", "torch", "stable-baselines3", "gymnasium", "mujoco", "numpy"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def package_freeze() -> Dict[str, str]:
    """Every installed distribution and its version, by name, from the interpreter's own metadata
    (what ``pip freeze`` lists, without running pip)."""
    packages: Dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            packages[name] = dist.version
    return dict(sorted(packages.items(), key=lambda item: item[0].lower()))


def cpu_description(cpuinfo: Path = CPUINFO) -> Dict[str, Any]:
    """The CPU's model name and instruction-set flags (Linux's ``/proc/cpuinfo``); elsewhere the
    machine type ``platform`` knows and no flags."""
    model: Optional[str] = None
    flags: List[str] = []
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model is None:
            model = value.strip()
        elif key in ("flags", "Features") and not flags:  # x86 and ARM spell it differently
            flags = sorted(value.split())
    return {"model": model or platform.processor() or None, "machine": platform.machine(), "flags": flags}


def provenance() -> Dict[str, Any]:
    """The run manifest's record of the code, the packages and the CPU a run ran on."""
    return {
        "dpd": git_commit(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_description(),
        "packages": package_freeze(),
    }
