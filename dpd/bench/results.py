"""A benchmark run's files: where it lives under ``--out``, its result row, what a failed or killed
attempt leaves.

Each run lives in ``<out>/<env>/<algo>/<method>/seed<k>/``: its TensorBoard logs, its models,
and ``result.json`` once it is complete (written last, atomically); a run that failed leaves
``error.txt``; a killed one leaves ``RUN_DIR`` to continue from.
"""

import json
import shutil
import sys
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Dict, List, Optional

from dpd.bench.grid import BenchRun
from dpd.errors import UserError

RESULT_FILE = "result.json"
ERROR_FILE = "error.txt"
Curve = List[List[float]]  # [total env steps, score] pairs
# Inside a run's directory, what a rerun continues from: a group's dpd run directory, or the
# checkpoints of a plain SB3 run (removed once it is complete).
RUN_DIR = "run"
# A dpd-distilled run's second part: its student's run directory (beside the group's ``RUN_DIR``),
# and the finished group's summary, kept for a rerun after a kill in the student's part.
STUDENT_DIR = "student"
GROUP_FILE = "group.json"


def run_dir(out: Path, run: BenchRun) -> Path:
    return out / run.key


def run_fields(run: BenchRun) -> Dict[str, Any]:
    """The run's settings as they appear in its result row (JSON types)."""
    return {**asdict(run), "overrides": list(run.overrides)}


# What every result row holds: the run's settings and its scores.
RESULT_KEYS = (*(f.name for f in fields(BenchRun)), "status", "score", "peer_scores", "curve")


def load_result(directory: Path) -> Optional[Dict[str, Any]]:
    """The run's result row, or None where it has none. A truncated or malformed ``result.json``
    (a copy cut short, an edit gone wrong) makes the run incomplete, said in one line: it is run
    again, never a traceback."""
    path = directory / RESULT_FILE
    if not path.exists():
        return None
    try:
        row = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        problem = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    else:
        if isinstance(row, dict) and all(key in row for key in RESULT_KEYS):
            return row
        problem = "not a result row" if isinstance(row, dict) else f"a JSON {type(row).__name__}, not a result row"
    print(f"dpd bench: {path} is truncated or malformed ({problem}); the run counts as incomplete", file=sys.stderr)
    return None


def completed_result(out: Path, run: BenchRun) -> Optional[Dict[str, Any]]:
    """The run's result if it is complete; one made with other settings is a user error, not a skip."""
    row = load_result(run_dir(out, run))
    if row is None:
        return None
    differing = [key for key, value in run_fields(run).items() if row.get(key) != value]
    if differing:
        changes = ", ".join(f"{key} {row.get(key)!r} there, {run_fields(run)[key]!r} now" for key in differing)
        raise UserError(f"{run_dir(out, run)} holds a run with other settings ({changes}); choose another --out")
    return row


def failure_row(run: BenchRun, directory: Path, exit_detail: str) -> Dict[str, Any]:
    error_file = directory / ERROR_FILE
    lines = error_file.read_text().strip().splitlines() if error_file.exists() else []
    error = lines[-1] if lines else f"{exit_detail} and left no error (killed?)"
    return {**run_fields(run), "status": "failed", "error": error}


def clear_incomplete(directory: Path) -> None:
    """Remove what an earlier, incomplete attempt left, except what a killed attempt leaves to
    continue from: its run directory of checkpoints and (a plain run's) TensorBoard logs. A run
    that failed (``error.txt``) starts again from scratch."""
    directory.mkdir(parents=True, exist_ok=True)
    killed = (directory / RUN_DIR).is_dir() and not (directory / ERROR_FILE).exists()
    for entry in directory.iterdir():
        if killed and entry.name in (RUN_DIR, "tb", STUDENT_DIR, GROUP_FILE):
            continue
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()
