"""Turn benchmark result rows into per-method statistics, a markdown table, a CSV and learning curves.

A result row is a dict written by the runner, one per (env, algo, method, seed)::

    {"env": "HalfCheetah-v5", "algo": "ppo", "method": "dpd", "seed": 0, "total_steps": 200000,
     "status": "ok", "score": 1234.5, "peer_scores": [1200.0, 1269.0], "best_peer": 1269.0,
     "seconds": 81.2, "curve": [[20000, -300.1], [40000, 12.0]]}

``score`` of a multi-peer run is the mean over its peers, so that it is compared with a single
SB3 learner on the same total environment steps; ``best_peer`` (None for single learners) is a
selection effect and only fair against the best of the independent peers. A ``dpd-distilled``
row's score is its student's (one policy), and its ``best_peer`` the best peer of the group that
taught it. Rows whose status is not "ok" are left out of the statistics and listed as failed runs.
"""

import csv
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from dpd.bench.grid import METHODS
from dpd.bench.stats import bootstrap_interval, iqm, probability_of_improvement, probability_of_improvement_interval

Row = Mapping[str, Any]
SectionKey = Tuple[str, str, int]  # env, algo, total_steps: only runs on the same budget are compared

METHOD_ORDER = tuple(METHODS)
REFERENCE_METHODS = ("sb3", "independent")
# The single learners a group's P(improvement) may be taken against: the one whose gradient
# updates are closest to the group's (sb3 for share.updates=equal, sb3-utd for per_peer).
SINGLE_LEARNERS = ("sb3", "sb3-utd")
CSV_COLUMNS = (
    "env",
    "algo",
    "method",
    "seed",
    "total_steps",
    "status",
    "score",
    "best_peer",
    "deployable",
    "peer_scores",
    "training_returns",
    "gradient_updates",
    "seconds",
)

EXPLANATION = (
    "The score of a multi-peer run is the mean over its peers, so it is compared with one SB3 "
    "learner on the same total environment steps. The best peer is a selection effect (the best "
    "of several peers is an optimistic pick); it is shown for comparison with the best of the "
    "independent peers, not with sb3 (for dpd-distilled, whose score is its student's, it is the best "
    "peer of the group that taught the student). The deployable peer is the one a user would keep, picked by "
    "its training returns only, so its evaluation score has no selection bias. IQM is the "
    "interquartile mean over seeds; intervals are 95% stratified bootstrap intervals over seeds; "
    "P(> sb3) is the probability that a run of the method scores above a run of one SB3 learner at "
    "about the same gradient updates (sb3, or sb3-utd where named), with its 95% bootstrap interval "
    "(Agarwal et al. 2021)."
)


@dataclass(frozen=True)
class MethodSummary:
    """Statistics over the successful seeds of one method on one (env, algo, budget)."""

    env: str
    algo: str
    method: str
    seeds: int
    mean: float
    iqm: float
    ci_low: float  # 95% bootstrap interval of the IQM over seeds
    ci_high: float
    best_peer_iqm: Optional[float]  # None for single-learner methods
    total_steps: int
    # The peer a user would keep, picked by training returns only (runs before it was recorded: None).
    deployable_iqm: Optional[float] = None
    updates: Optional[float] = None  # mean RL gradient updates per run, all learners together
    minutes: Optional[float] = None  # mean wall-clock minutes per run
    # P(a run of this method scores above a run of ``improvement_over``), with its 95% bootstrap interval.
    improvement: Optional[Tuple[float, float, float]] = None
    improvement_over: Optional[str] = None  # the single learner at the nearest gradient updates
    # The same for the deployable peer's scores (groups with a deployable peer on every run).
    deployable_improvement: Optional[Tuple[float, float, float]] = None


def method_sort_key(method: str) -> Tuple[int, str]:
    """Known methods in METHOD_ORDER, unknown ones after them alphabetically."""
    if method in METHOD_ORDER:
        return METHOD_ORDER.index(method), ""
    return len(METHOD_ORDER), method


def _is_ok(row: Row) -> bool:
    return row.get("status") == "ok"


def _sections(rows: Sequence[Row]) -> Dict[SectionKey, List[Row]]:
    """Rows grouped by (env, algo, total_steps), sorted so the output does not depend on run order."""
    grouped: Dict[SectionKey, List[Row]] = defaultdict(list)
    for row in rows:
        grouped[(row["env"], row["algo"], int(row["total_steps"]))].append(row)
    return dict(sorted(grouped.items()))


def _by_method(rows: Sequence[Row]) -> Dict[str, List[Row]]:
    """Successful rows grouped by method, in METHOD_ORDER."""
    grouped: Dict[str, List[Row]] = defaultdict(list)
    for row in rows:
        if _is_ok(row):
            grouped[row["method"]].append(row)
    return {method: grouped[method] for method in sorted(grouped, key=method_sort_key)}


def _mean_of(rows: Sequence[Row], field: str) -> Optional[float]:
    values = [row[field] for row in rows if row.get(field) is not None]
    return float(np.mean(values)) if values else None


def _improvement(scores: np.ndarray, reference: Sequence[Row]) -> Tuple[float, float, float]:
    other = [row["score"] for row in reference]
    return (probability_of_improvement(scores, other), *probability_of_improvement_interval(scores, other))


def equal_update_learner(method: str, rows: Sequence[Row], by_method: Dict[str, List[Row]]) -> Optional[str]:
    """The single SB3 learner (of those run) whose gradient updates are nearest the method's, in
    ratio: its baseline at equal updates. ``sb3`` where updates are unknown; None for the single
    learners themselves."""
    if method in SINGLE_LEARNERS:
        return None
    candidates = [learner for learner in SINGLE_LEARNERS if by_method.get(learner)]
    updates = _mean_of(rows, "gradient_updates")
    counted = {learner: _mean_of(by_method[learner], "gradient_updates") for learner in candidates}
    counted = {learner: count for learner, count in counted.items() if count}
    if updates and counted:
        return min(counted, key=lambda learner: abs(np.log(counted[learner] / updates)))
    return "sb3" if "sb3" in candidates else None


def _summarize_method(
    key: SectionKey, method: str, rows: Sequence[Row], by_method: Optional[Dict[str, List[Row]]] = None
) -> MethodSummary:
    scores = np.array([row["score"] for row in rows], dtype=np.float64)
    best_peers = [row["best_peer"] for row in rows if row.get("best_peer") is not None]
    deployable = [row["deployable"] for row in rows if row.get("deployable") is not None]
    ci_low, ci_high = bootstrap_interval([scores])
    env, algo, total_steps = key
    seconds = _mean_of(rows, "seconds")
    by_method = by_method or {}
    baseline = equal_update_learner(method, rows, by_method)
    return MethodSummary(
        env=env,
        algo=algo,
        method=method,
        seeds=len(rows),
        mean=float(scores.mean()),
        iqm=iqm(scores),
        ci_low=ci_low,
        ci_high=ci_high,
        best_peer_iqm=iqm(best_peers) if best_peers else None,
        total_steps=total_steps,
        deployable_iqm=iqm(deployable) if len(deployable) == len(rows) else None,
        updates=_mean_of(rows, "gradient_updates"),
        minutes=None if seconds is None else seconds / 60.0,
        improvement=_improvement(scores, by_method[baseline]) if baseline else None,
        improvement_over=baseline,
        deployable_improvement=(
            _improvement(np.array(deployable), by_method[baseline])
            if baseline and best_peers and len(deployable) == len(rows)
            else None
        ),
    )


def summarize(rows: Sequence[Row]) -> List[MethodSummary]:
    """One summary per (env, algo, total_steps, method) over the successful seeds."""
    summaries = []
    for key, section_rows in _sections(rows).items():
        by_method = _by_method(section_rows)
        summaries += [_summarize_method(key, method, method_rows, by_method) for method, method_rows in by_method.items()]
    return summaries


def _format_return(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.1f}"


def _format_improvement(summary: MethodSummary) -> str:
    """``P [low, high]``, naming the baseline where it is not plain ``sb3``."""
    if summary.improvement is None:
        return "-"
    probability, low, high = summary.improvement
    against = "" if summary.improvement_over == "sb3" else f" over {summary.improvement_over}"
    return f"{probability:.2f} [{low:.2f}, {high:.2f}]{against}"


def _format_count(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.0f}"


def _format_ratio(summary: MethodSummary, reference: Optional[MethodSummary]) -> str:
    """IQM over the reference's IQM; only meaningful where the reference IQM is positive."""
    if reference is None or reference.iqm <= 0:
        return "-"
    return f"{summary.iqm / reference.iqm:.3f}"


def _relative_change(value: float, reference: MethodSummary) -> str:
    """Change over |reference IQM|, so the sign stays right for negative returns."""
    if reference.iqm == 0:
        return f"{value - reference.iqm:+.1f} IQM ({reference.method} IQM is 0)"
    return f"{100 * (value - reference.iqm) / abs(reference.iqm):+.1f}% IQM"


def _comparison_line(summary: MethodSummary, reference: MethodSummary) -> str:
    """Relative IQM change and whether the intervals overlap; against the baseline at equal
    updates, the deployable peer's change and P(improvement) too."""
    overlap = summary.ci_low <= reference.ci_high and reference.ci_low <= summary.ci_high
    intervals = "intervals overlap" if overlap else "intervals do not overlap"
    line = f"{summary.method} vs {reference.method}: {_relative_change(summary.iqm, reference)}, {intervals}"
    if reference.method == summary.improvement_over and summary.deployable_improvement and summary.deployable_iqm is not None:
        probability, low, high = summary.deployable_improvement
        line += (
            f"; deployable peer {_relative_change(summary.deployable_iqm, reference)}, "
            f"P(> {reference.method}) {probability:.2f} [{low:.2f}, {high:.2f}]"
        )
    return line


def _failed_line(rows: Sequence[Row]) -> str:
    failed = [row for row in rows if not _is_ok(row)]
    failed.sort(key=lambda row: (method_sort_key(row["method"]), row["seed"]))
    if not failed:
        return "Failed runs: none."
    listed = ", ".join(f"{row['method']} seed {row['seed']} ({row.get('status')})" for row in failed)
    return f"Failed runs ({len(failed)}): {listed}."


def _section_markdown(key: SectionKey, rows: Sequence[Row]) -> List[str]:
    env, algo, total_steps = key
    lines = [f"### {env} ({algo}, {total_steps} total env steps)", ""]
    by_method = _by_method(rows)
    summaries = {method: _summarize_method(key, method, method_rows, by_method) for method, method_rows in by_method.items()}
    if summaries:
        lines += [
            "| method | seeds | mean | IQM | 95% CI of IQM | IQM / sb3 | IQM / independent "
            "| P(> sb3) [95% CI] | deployable peer IQM | best peer IQM (selection effect) | gradient updates | minutes |",
            "|---|---:|---:|---:|---|---:|---:|---|---:|---:|---:|---:|",
        ]
        for summary in summaries.values():
            ratios = " | ".join(_format_ratio(summary, summaries.get(ref)) for ref in REFERENCE_METHODS)
            lines.append(
                f"| {summary.method} | {summary.seeds} | {_format_return(summary.mean)} "
                f"| {_format_return(summary.iqm)} "
                f"| [{_format_return(summary.ci_low)}, {_format_return(summary.ci_high)}] "
                f"| {ratios} | {_format_improvement(summary)} | {_format_return(summary.deployable_iqm)} "
                f"| {_format_return(summary.best_peer_iqm)} | {_format_count(summary.updates)} "
                f"| {_format_count(summary.minutes)} |"
            )
        comparisons = [
            _comparison_line(summaries[method], summaries[ref])
            for method in summaries
            if method not in REFERENCE_METHODS
            for ref in dict.fromkeys((*REFERENCE_METHODS, summaries[method].improvement_over))
            if ref in summaries
        ]
        if comparisons:
            lines += [""] + [f"- {comparison}" for comparison in comparisons]
    else:
        lines.append("No successful runs.")
    lines += ["", _failed_line(rows), ""]
    return lines


def markdown_table(rows: Sequence[Row], date: Optional[str] = None, command: Optional[str] = None) -> str:
    """A markdown report: one table per (env, algo, budget) with comparisons and failed runs."""
    lines: List[str] = []
    if command or date:
        made_by = f" by `{command}`" if command else ""
        made_on = f" on {date}" if date else ""
        lines += [f"Made{made_by}{made_on}.", ""]
    lines += [EXPLANATION, ""]
    for key, section_rows in _sections(rows).items():
        lines += _section_markdown(key, section_rows)
    return "\n".join(lines).rstrip("\n") + "\n"


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ";".join(str(item) for item in value)
    return value


def write_csv(rows: Sequence[Row], path: Path) -> None:
    """One line per run (failed ones included), without the learning curve."""
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(CSV_COLUMNS)
        for row in rows:
            writer.writerow([_csv_value(row.get(column)) for column in CSV_COLUMNS])


def _iqm_curve(rows: Sequence[Row]) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """x, the IQM over seeds (the tables' statistic) and its 95% bootstrap band, on the x points
    every seed evaluated at."""
    curves = [{int(x): float(y) for x, y in row["curve"]} for row in rows]
    xs = np.array(sorted(set.intersection(*(set(curve) for curve in curves))), dtype=np.int64)
    values = np.array([[curve[x] for curve in curves] for x in xs], dtype=np.float64)
    values = values.reshape(len(xs), len(curves))  # keeps two dimensions when no x point is shared
    bands = np.array([bootstrap_interval([seeds]) for seeds in values], dtype=np.float64).reshape(len(xs), 2)
    return xs, np.array([iqm(seeds) for seeds in values]), bands[:, 0], bands[:, 1]


def method_color(method: str) -> str:
    """The same colour for a method in every figure of every report: its place among all known
    methods in matplotlib's tab10 palette, then Dark2's; grey for an unknown method."""
    from matplotlib import colormaps, colors

    index = method_sort_key(method)[0]
    if index >= len(METHOD_ORDER):
        return "#666666"
    return colors.to_hex(colormaps["tab10"](index) if index < 10 else colormaps["Dark2"]((index - 10) % 8))


def _plot_name(key: SectionKey, keys: Sequence[SectionKey]) -> str:
    """``curves_{env}_{algo}.png``, with the budget added only where one env and algo ran several."""
    env, algo, total_steps = key
    several_budgets = sum(1 for other in keys if other[:2] == (env, algo)) > 1
    stem = f"curves_{env}_{algo}" + (f"_{total_steps}steps" if several_budgets else "")
    return re.sub(r"[^A-Za-z0-9._-]", "_", stem) + ".png"  # env ids like ALE/Pong-v5 (an .svg beside it)


def plot_curves(rows: Sequence[Row], out_dir: Path) -> List[Path]:
    """One figure of learning curves per (env, algo), as PNG and SVG: the IQM over seeds (what
    the tables report) with its 95% stratified bootstrap band, one colour per method everywhere."""
    import matplotlib

    matplotlib.use("Agg")  # no display on benchmark machines
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sections = _sections(rows)
    written = []
    for key, section_rows in sections.items():
        with_curves = {
            method: [row for row in method_rows if row.get("curve")]
            for method, method_rows in _by_method(section_rows).items()
        }
        with_curves = {method: method_rows for method, method_rows in with_curves.items() if method_rows}
        if not with_curves:
            continue
        figure, axes = plt.subplots(figsize=(7, 4.5))
        for method, method_rows in with_curves.items():
            xs, middle, low, high = _iqm_curve(method_rows)
            color = method_color(method)
            axes.plot(xs, middle, color=color, label=f"{method} ({len(method_rows)} seeds)")
            axes.fill_between(xs, low, high, color=color, alpha=0.2)
        env, algo, _ = key
        axes.set_xlabel("total environment steps")
        axes.set_ylabel("evaluation return (mean over peers)")
        axes.set_title(f"{env} ({algo}): IQM over seeds, band: 95% bootstrap CI", fontsize=10)
        axes.legend()
        figure.tight_layout()
        path = out_dir / _plot_name(key, list(sections))
        figure.savefig(path, dpi=120)
        figure.savefig(path.with_suffix(".svg"))
        plt.close(figure)
        written += [path, path.with_suffix(".svg")]
    return written
