"""One table from several ``dpd bench --out`` folders, e.g. a baseline grid and setting sweeps.

A sweep runs one method with ``--set`` overrides into its own ``--out`` (``dpd bench`` refuses to
mix settings in one folder). This script reads every complete run (``result.json``) below each
folder, names each row's method after its overrides (``dpd every=1 steps=16``) and prints
``dpd bench``'s markdown table, so every variant is compared with the same ``sb3`` and
``independent`` runs::

    python benchmarks/sweep_table.py results/bench-quick results/sweep/* --envs HalfCheetah-v5 --plots figures/

``--same KEY=VALUE`` leaves an override out of the names where it does not change the runs it was
given to (``guide.batch=64`` for methods without guidance), or is given to every run alike.

``--last K`` scores each run by the mean of the last K points of its learning curve (the final
score the last of them) instead of its final score alone: a second look where single evaluations
swing (Hopper's falls move a 5-episode mean by thousands). The curve is the mean over a group's
peers, so the peer columns (deployable, best peer) are left empty then.
"""

import argparse
import sys
from pathlib import Path
from typing import Any, Dict, List, Sequence

from dpd.bench.report import markdown_table, plot_curves
from dpd.bench.results import RESULT_FILE, load_result


def labelled(row: Dict[str, Any], same: Sequence[str] = ()) -> Dict[str, Any]:
    """The row with its overrides, but those in ``same``, folded into its method's name."""
    overrides = [text.replace("distill.", "") for text in row.get("overrides") or [] if text not in same]
    return dict(row, method=" ".join([row["method"], *overrides]))


def scored_by_last(row: Dict[str, Any], points: int) -> Dict[str, Any]:
    """The row scored by the mean of its curve's last ``points`` evaluations, without peer scores."""
    values = [value for _, value in row["curve"][-points:]]
    return dict(row, score=sum(values) / len(values), best_peer=None, deployable=None)


def read_rows(folders: List[Path], envs: List[str], same: Sequence[str] = ()) -> List[Dict[str, Any]]:
    rows = []
    for folder in folders:
        results = sorted(folder.rglob(RESULT_FILE))
        if not results:
            raise SystemExit(f"no complete run below {folder}: run `dpd bench --out {folder}` first")
        for path in results:
            row = load_result(path.parent)
            if row is not None and (not envs or row["env"] in envs):
                rows.append(labelled(row, same))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path, help="dpd bench --out folders")
    parser.add_argument("--envs", default="", help="comma-separated envs to keep (default: all)")
    parser.add_argument("--plots", type=Path, help="also write dpd bench's learning-curve PNGs of every variant here")
    parser.add_argument(
        "--same", action="append", default=[], metavar="KEY=VALUE", help="an override left out of the names (repeatable)"
    )
    parser.add_argument(
        "--last", type=int, default=0, metavar="K", help="score by the mean of the last K curve points (default: final score)"
    )
    args = parser.parse_args()
    envs = [env for env in args.envs.split(",") if env]
    rows = read_rows(args.folders, envs, args.same)
    if args.last > 0:
        rows = [scored_by_last(row, args.last) for row in rows]
    print(markdown_table(rows, command="python " + " ".join(sys.argv)))
    for path in plot_curves(rows, args.plots) if args.plots else []:
        print(f"curves: {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
