"""One table from several ``dpd bench --out`` folders, e.g. a baseline grid and setting sweeps.

A sweep runs one method with ``--set`` overrides into its own ``--out`` (``dpd bench`` refuses to
mix settings in one folder). This script reads every folder's ``results.jsonl``, names each row's
method after its overrides (``dpd every=1 steps=16``) and prints ``dpd bench``'s markdown table,
so every variant is compared with the same ``sb3`` and ``independent`` runs::

    python benchmarks/sweep_table.py results/bench-quick results/sweep/* --envs HalfCheetah-v5 --plots figures/
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List

from dpd.bench.report import markdown_table, plot_curves


def labelled(row: Dict[str, Any]) -> Dict[str, Any]:
    """The row with its overrides folded into its method's name."""
    overrides = [text.replace("distill.", "") for text in row.get("overrides") or []]
    return dict(row, method=" ".join([row["method"], *overrides]))


def read_rows(folders: List[Path], envs: List[str]) -> List[Dict[str, Any]]:
    rows = []
    for folder in folders:
        results = folder / "results.jsonl"
        if not results.is_file():
            raise SystemExit(f"{results} does not exist: run `dpd bench --out {folder}` first")
        for line in results.read_text().splitlines():
            row = json.loads(line)
            if not envs or row["env"] in envs:
                rows.append(labelled(row))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path, help="dpd bench --out folders")
    parser.add_argument("--envs", default="", help="comma-separated envs to keep (default: all)")
    parser.add_argument("--plots", type=Path, help="also write dpd bench's learning-curve PNGs of every variant here")
    args = parser.parse_args()
    envs = [env for env in args.envs.split(",") if env]
    rows = read_rows(args.folders, envs)
    print(markdown_table(rows, command="python " + " ".join(sys.argv)))
    for path in plot_curves(rows, args.plots) if args.plots else []:
        print(f"curves: {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
