import csv

import numpy as np
import pytest

from dpd.bench.report import (
    METHOD_ORDER,
    _iqm_curve,
    markdown_table,
    method_sort_key,
    plot_curves,
    summarize,
    write_csv,
)
from dpd.bench.stats import bootstrap_interval, iqm

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_iqm_is_the_mean_of_the_middle_half():
    # Sorted: -100, 1, 2, 3, 4, 5, 6, 100; two trimmed from each end leaves 2, 3, 4, 5.
    assert iqm([1, 2, 3, 4, 100, -100, 5, 6]) == pytest.approx(3.5)
    assert iqm(range(8)) == pytest.approx((2 + 3 + 4 + 5) / 4)
    assert iqm([10, 0, 1, 2, 3]) == pytest.approx(2.0)  # int(0.25 * 5) = 1 trimmed per end
    assert iqm([1.0, 2.0, 6.0]) == pytest.approx(3.0)  # too few values to trim: the mean


def test_bootstrap_interval_covers_the_true_mean_at_about_the_stated_rate():
    rng = np.random.default_rng(0)
    trials, covered = 200, 0
    for trial in range(trials):
        draws = rng.normal(loc=5.0, scale=2.0, size=30)
        low, high = bootstrap_interval([draws], statistic=np.mean, resamples=500, seed=trial)
        covered += low <= 5.0 <= high
    assert 0.88 <= covered / trials <= 0.99


def test_stratified_resampling_keeps_the_strata_sizes():
    # 20 values in [-1, 1] and 5 in [99, 101]. Resampled within strata, every resample still has
    # 20 + 5 values from the same ranges, so its mean lies in [(20*-1 + 5*99)/25, (20*1 + 5*101)/25].
    low_stratum, high_stratum = np.linspace(-1, 1, 20), 100 + np.linspace(-1, 1, 5)
    low, high = bootstrap_interval([low_stratum, high_stratum], statistic=np.mean)
    assert 19.0 <= low < high <= 21.0
    # Pooled into one stratum, the number of high values per resample varies, and so does the mean.
    pooled_low, pooled_high = bootstrap_interval([np.concatenate([low_stratum, high_stratum])], np.mean)
    assert pooled_low < 19.0 - 5 and pooled_high > 21.0 + 5


def test_bootstrap_interval_is_reproducible_from_its_seed():
    values = [np.arange(10.0)]
    assert bootstrap_interval(values, np.mean, seed=3) == bootstrap_interval(values, np.mean, seed=3)
    assert bootstrap_interval(values, np.mean, seed=3) != bootstrap_interval(values, np.mean, seed=4)


@pytest.mark.parametrize(
    "strata, statistic, point",
    [
        ([[3.0]], iqm, 3.0),
        ([[2.0, 2.0, 2.0]], iqm, 2.0),
        ([[0.0, 0.0, 0.0], [10.0, 10.0, 10.0]], np.mean, 5.0),
        ([[1.0], [5.0]], np.mean, 3.0),
    ],
)
def test_degenerate_samples_give_the_point_value(recwarn, strata, statistic, point):
    assert bootstrap_interval(strata, statistic) == (point, point)
    assert not recwarn.list


def test_a_one_value_stratum_is_held_fixed():
    # Means of {1,1}, {1,2}, {2,2} with 5.
    low, high = bootstrap_interval([[1.0, 2.0], [5.0]], np.mean)
    assert 7 / 3 <= low <= high <= 3.0


@pytest.mark.parametrize("strata", [[], [[1.0, 2.0], []]])
def test_empty_samples_are_refused(strata):
    with pytest.raises(ValueError):
        bootstrap_interval(strata)


def failed_row(method, seed, env="HalfCheetah-v5"):
    """As the runner writes it: the run's settings, no scores."""
    return {
        "env": env,
        "algo": "ppo",
        "method": method,
        "seed": seed,
        "total_steps": 200000,
        "status": "failed",
        "error": "boom",
    }


def row(method, seed, score, best_peer=None, env="HalfCheetah-v5", curve=None):
    peers = best_peer is not None
    ok = {key: value for key, value in failed_row(method, seed, env).items() if key != "error"}
    return {
        **ok,
        "status": "ok",
        "score": score,
        "peer_scores": [score, best_peer] if peers else [score],
        "best_peer": best_peer,
        "deployable": score,  # as if the peer with the better training return scored the mean
        "gradient_updates": 1000 * len([score, best_peer] if peers else [score]),
        "seconds": 90.0,
        "curve": curve if curve is not None else [[100000, score / 2], [200000, score]],
    }


def benchmark_rows():
    """IQMs by hand (4 seeds: one trimmed per end): sb3 100, dpd 120, independent 80, dpd-hard 100."""
    rows = [row("sb3", seed, score) for seed, score in enumerate([90.0, 100.0, 100.0, 110.0])]
    rows += [row("dpd", seed, s, best_peer=130.0) for seed, s in enumerate([110.0, 120.0, 120.0, 1000.0])]
    rows += [row("independent", seed, s, best_peer=100.0) for seed, s in enumerate([70.0, 80.0, 80.0, 90.0])]
    rows += [row("dpd-hard", seed, s, best_peer=105.0) for seed, s in enumerate([90.0, 100.0, 100.0, 110.0])]
    rows.append(failed_row("dpd", 4))
    rows += [row("sb3", seed, 3000.0 + seed, env="Hopper-v5") for seed in range(3)]
    return rows


def test_summarize_uses_only_successful_runs():
    ordered = summarize(benchmark_rows())
    summaries = {(s.env, s.method): s for s in ordered}
    dpd = summaries[("HalfCheetah-v5", "dpd")]
    assert dpd.seeds == 4
    assert dpd.iqm == pytest.approx(120.0)
    assert dpd.mean == pytest.approx(337.5)
    assert dpd.best_peer_iqm == pytest.approx(130.0)
    assert 110.0 <= dpd.ci_low <= dpd.iqm <= dpd.ci_high <= 1000.0
    assert summaries[("HalfCheetah-v5", "sb3")].best_peer_iqm is None
    assert summaries[("Hopper-v5", "sb3")].iqm == pytest.approx(3001.0)
    methods = [s.method for s in ordered if s.env == "HalfCheetah-v5"]
    assert methods == ["sb3", "dpd", "independent", "dpd-hard"]


def test_unknown_methods_come_after_known_ones_alphabetically():
    assert sorted(["zeta", "dpd-none", "alpha", "sb3"], key=method_sort_key) == ["sb3", "dpd-none", "alpha", "zeta"]
    assert sorted(reversed(METHOD_ORDER), key=method_sort_key) == [
        "sb3",
        "sb3-utd",
        "dpd",
        "independent",
        "dpd-hard",
        "dpd-none",
        "shared",
        "shared-guided",
        "shared-distill",
        "piekd",
        "shared-dpd",
        "shared-per-peer",
        "shared-dpd-per-peer",
        "guided",
        "shared-guided-per-peer",
        "dpd-distilled",
    ]


def table_row(markdown, method):
    line = next(line for line in markdown.splitlines() if line.startswith(f"| {method} |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_markdown_table_sections_ratios_comparisons_and_failures():
    markdown = markdown_table(benchmark_rows(), date="2025-01-02", command="dpd bench --grid small")
    assert markdown.startswith("Made by `dpd bench --grid small` on 2025-01-02.")
    assert "selection effect" in markdown and "stratified bootstrap" in markdown
    cheetah, hopper = markdown.split("### HalfCheetah-v5 (ppo, 200000 total env steps)")[1].split(
        "### Hopper-v5 (ppo, 200000 total env steps)"
    )
    method, seeds, mean, iqm_cell, _, over_sb3, over_independent, *rest = table_row(cheetah, "dpd")
    improvement, deployable, best_peer, updates, minutes = rest
    assert (method, seeds, mean, iqm_cell) == ("dpd", "4", "337.5", "120.0")
    assert (over_sb3, over_independent, best_peer) == ("1.200", "1.500", "130.0")
    # P(dpd > sb3): 15.5 of the 16 pairs (110 ties 110); the interval of resampled runs lies below 1.
    assert improvement.startswith("0.97 [") and improvement.endswith(", 1.00]")
    assert (deployable, updates, minutes) == ("120.0", "2000", "2")
    assert table_row(cheetah, "independent")[7].startswith("0.03 [")  # 0.5 of 16 pairs: its 90 ties sb3's 90
    assert table_row(cheetah, "dpd-hard")[7].startswith("0.50 [")  # the same scores as sb3
    assert table_row(cheetah, "sb3")[5:8] == ["1.000", "1.250", "-"]
    assert "dpd vs sb3: +20.0% IQM" in cheetah
    # dpd's resampled IQMs are at least 110, independent's at most 90.
    assert "dpd vs independent: +50.0% IQM, intervals do not overlap" in cheetah
    assert "dpd-hard vs sb3: +0.0% IQM, intervals overlap" in cheetah  # same scores, same intervals
    assert "independent vs" not in cheetah and "sb3 vs" not in cheetah
    assert "Failed runs (1): dpd seed 4 (failed)." in cheetah
    # Hopper has no reference besides sb3 itself and no failures.
    _, seeds, mean, iqm_cell, _, over_sb3, over_independent, _, _, best_peer, *_ = table_row(hopper, "sb3")
    assert [seeds, mean, iqm_cell, over_sb3, over_independent, best_peer] == ["3", "3001.0", "3001.0", "1.000", "-", "-"]
    assert " vs " not in hopper and "Failed runs: none." in hopper


def test_groups_are_compared_with_the_single_learner_at_their_gradient_updates():
    def run(method, seed, score, updates):
        return {**row(method, seed, score, best_peer=None if method.startswith("sb3") else score), "gradient_updates": updates}

    rows = [run("sb3", seed, score, 1000) for seed, score in enumerate([100.0, 110.0, 120.0])]
    rows += [run("sb3-utd", seed, score, 2000) for seed, score in enumerate([200.0, 210.0, 220.0])]
    rows += [run("shared", seed, score, 1000) for seed, score in enumerate([130.0, 140.0, 150.0])]  # above sb3
    rows += [run("shared-guided-per-peer", seed, score, 1990) for seed, score in enumerate([150.0, 160.0, 170.0])]
    for group_run in rows[-3:]:
        group_run["deployable"] = group_run["score"] + 60.0  # 210, 220, 230
    summaries = {s.method: s for s in summarize(rows)}
    assert (summaries["shared"].improvement_over, summaries["shared"].improvement[0]) == ("sb3", 1.0)
    per_peer = summaries["shared-guided-per-peer"]
    assert (per_peer.improvement_over, per_peer.improvement[0]) == ("sb3-utd", 0.0)  # above sb3, below sb3-utd
    assert summaries["sb3-utd"].improvement is None and summaries["sb3"].improvement is None
    markdown = markdown_table(rows)
    assert table_row(markdown, "shared-guided-per-peer")[7].endswith("over sb3-utd")
    assert table_row(markdown, "shared")[7] == "1.00 [1.00, 1.00]"
    assert "shared-guided-per-peer vs sb3-utd: -23.8% IQM" in markdown and "shared vs sb3-utd" not in markdown
    # The deployable peer against the same baseline: 7 of 9 pairs above (one tie counts half each).
    assert "; deployable peer +4.8% IQM, P(> sb3-utd) 0.78 [" in markdown
    assert "shared-guided-per-peer vs sb3: +45.5% IQM, intervals do not overlap\n" in markdown  # not its baseline
    # Without sb3-utd, every group is compared with sb3.
    alone = {s.method: s for s in summarize([r for r in rows if r["method"] != "sb3-utd"])}
    assert alone["shared-guided-per-peer"].improvement_over == "sb3"


def test_markdown_table_without_provenance_and_with_only_failures():
    markdown = markdown_table([failed_row("dpd", 0)])
    assert not markdown.startswith("Made")
    assert "No successful runs." in markdown and "Failed runs (1): dpd seed 0 (failed)." in markdown


def test_write_csv(tmp_path):
    path = tmp_path / "results.csv"
    write_csv(benchmark_rows(), path)
    with open(path, newline="") as file:
        lines = list(csv.reader(file))
    assert lines[0] == [
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
    ]
    assert len(lines) == 1 + len(benchmark_rows())
    assert lines[1] == ["HalfCheetah-v5", "ppo", "sb3", "0", "200000", "ok", "90.0", "", "90.0", "90.0", "", "1000", "90.0"]
    assert lines[5][2] == "dpd" and lines[5][7:10] == ["130.0", "110.0", "110.0;130.0"]
    failed = next(line for line in lines if line[5] == "failed")
    assert failed[6] == "" and failed[2:4] == ["dpd", "4"]


def test_iqm_curve_uses_the_x_points_every_seed_has():
    rows = [row("sb3", 0, 0.0, curve=[[1, 0.0], [2, 2.0], [3, 4.0]]), row("sb3", 1, 0.0, curve=[[2, 4.0], [3, 6.0]])]
    xs, mean, low, high = _iqm_curve(rows)
    np.testing.assert_array_equal(xs, [2, 3])
    np.testing.assert_allclose(mean, [3.0, 5.0])
    # Two seeds per point: a quarter of resamples draw the lower value twice, a quarter the higher,
    # so the 95% band runs from one to the other.
    np.testing.assert_allclose(low, [2.0, 4.0])
    np.testing.assert_allclose(high, [4.0, 6.0])


def test_a_curve_shows_the_iqm_the_tables_report_not_the_mean():
    rows = [row("sb3", seed, 0.0, curve=[[1, value]]) for seed, value in enumerate([0.0, 1.0, 2.0, 100.0])]
    _, middle, _, _ = _iqm_curve(rows)
    np.testing.assert_allclose(middle, [1.5])  # the outlier seeds trimmed; the mean would be 25.75


def test_plot_curves_writes_one_png_and_one_svg_per_env(tmp_path):
    paths = plot_curves(benchmark_rows(), tmp_path / "plots")
    names = ["curves_HalfCheetah-v5_ppo", "curves_Hopper-v5_ppo"]
    assert [path.name for path in paths] == [f"{name}.{suffix}" for name in names for suffix in ("png", "svg")]
    for path in paths[::2]:
        assert path.read_bytes().startswith(PNG_SIGNATURE) and path.stat().st_size > 1000
    for path in paths[1::2]:
        assert b"<svg" in path.read_bytes()[:1000] and b"IQM over seeds" in path.read_bytes()


def test_a_method_has_one_colour_in_every_report():
    from dpd.bench.grid import METHODS
    from dpd.bench.report import method_color

    colours = [method_color(method) for method in METHODS]
    assert len(set(colours)) == len(colours)  # every known method its own
    assert method_color("sb3") == "#1f77b4"  # whatever else a report holds
    assert method_color("no-such-method") == "#666666"


def test_sweep_table_names_variants_by_their_overrides_except_the_same_ones(tmp_path):
    """benchmarks/sweep_table.py over result.json files: runs that differ only in a ``--same``
    override are one method; another override makes a variant of its own."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    settings = {"peers": 2, "eval_every": 1000, "eval_episodes": 1, "final_episodes": 1}
    for method, seed, overrides in [
        ("sb3", 0, ["n_envs=8"]),
        ("sb3", 1, ["n_envs=8", "guide.batch=64"]),
        ("dpd", 0, ["n_envs=8", "distill.every=1"]),
    ]:
        directory = tmp_path / method / f"seed{seed}"
        directory.mkdir(parents=True)
        (directory / "result.json").write_text(json.dumps({**row(method, seed, 100.0), **settings, "overrides": overrides}))
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "sweep_table.py"
    same = ["--same", "n_envs=8", "--same", "guide.batch=64"]
    table = subprocess.run([sys.executable, str(script), str(tmp_path), *same], capture_output=True, text=True, check=True)
    assert "| sb3 | 2 |" in table.stdout and "| dpd every=1 | 1 |" in table.stdout, table.stdout
    last = subprocess.run([sys.executable, str(script), str(tmp_path), *same, "--last", "2"], capture_output=True, text=True)
    assert "| sb3 | 2 | 75.0 | 75.0 |" in last.stdout, last.stdout  # (50 + 100) / 2, not the final 100


def test_distill_grid_reads_ratios_at_steps_and_the_steps_to_a_threshold():
    """benchmarks/distill_grid.py's report on constructed curves: the ratio of the last evaluation
    at or before a step, the first evaluation at or above a threshold, and 'not reached'."""
    import importlib.util
    import math
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "distill_grid.py"
    spec = importlib.util.spec_from_file_location("distill_grid", path)
    grid = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(grid)
    curve = [(2500, 0.5), (5000, 0.96), (7500, 0.94), (10000, 0.995)]
    assert grid.ratio_at(curve, 6000) == 0.96 and math.isnan(grid.ratio_at(curve, 1000))
    assert math.isnan(grid.ratio_at(curve, 25000))  # past the run's end
    assert grid.steps_to(curve, 0.95) == 5000 and grid.steps_to(curve, 0.99) == 10000
    assert math.isinf(grid.steps_to(curve, 1.01))
    assert grid.reach([5000.0, 7000.0]) == "6.0k" and grid.reach([5000.0, math.inf]) == "not reached (1/2)"
    assert grid.net_arch("none") == [] and grid.net_arch("16,16") == [16, 16]
