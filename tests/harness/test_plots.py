"""harness.plots on hand-made tables: every plot a run has data for, degenerate runs, marks, and numbers that
match the table. Figures are inspected through their artists, never their pixels."""

from __future__ import annotations

import io
import math
import re

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgb

from harness import plots, results
from harness.plots import Plot

MODELS = ("mlp", "lenet5")
PHASES = ("forward", "forward_backward", "train_step")
BATCHES = (1, 32, 128)
FRAMEWORKS = ("reference", "torch", "tensorflow")
SPEED = {"reference": 1.0, "torch": 0.5, "tensorflow": 2.0}  # time factors: torch the fastest
PHASE_COST = {"forward": 1.0, "backward": 2.0, "forward_backward": 3.0, "train_step": 3.5}

RUN = {
    "run_id": "20261202-120000-synthetic",
    "suite": {"name": "synthetic", "models": list(MODELS)},
    "environment": {"cpu": {"model": "Test CPU 9000", "logical_cores": 8},
                    "packages": {"numpy": "2.0.0", "torch": "2.5.0", "tensorflow": "2.18.0"}, "gpus": []},
    "peak_gflops": {"cpu": 200.0},
}


def cell(model="mlp", framework="torch", device="cpu", dtype="float32", mode="eager", batch_size=32,
         phase="forward", threads=2, status="ok", median_s=None, **extra) -> dict:
    """One row of harness.results.load: a timed cell with a 10% CI, throughput and GFLOP/s that agree."""
    if median_s is None:
        size = 1 + MODELS.index(model) if model in MODELS else 1
        median_s = 1e-4 * (1 + batch_size) * size * SPEED.get(framework, 1.0) * PHASE_COST[phase]
    key = f"{model}.{framework}.{device}.{dtype}.{mode}.b{batch_size}.{phase}.t{threads}"
    row = {name: None for name in results.COLUMNS}
    row.update(run_id=RUN["run_id"], key=key, model=model, framework=framework, device=device, dtype=dtype,
               mode=mode, batch_size=batch_size, phase=phase, threads=threads, status=status, reason="")
    if status == "ok":
        flops = 2e6 * batch_size
        row.update(verified=True, n=10, median_s=median_s, ci_low_s=0.9 * median_s, ci_high_s=1.1 * median_s,
                   noisy=False, samples_per_s=batch_size / median_s, flops=flops,
                   gflops_per_s=flops / median_s / 1e9, peak_share=flops / median_s / 1e9 / 200.0)
    row.update(extra)
    return row


def frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(results.COLUMNS)).astype(results._COLUMN_DTYPES)


def check_rows(dtype="float32", frameworks=FRAMEWORKS, fail=None, exact=None) -> pd.DataFrame:
    """load_checks rows: per model and framework, five tensors; fail/exact = (model, framework, tensor)."""
    tensors = [("output", "forward"), ("loss", "forward"), ("grad:fc1.weight", "gradient"),
               ("grad:input", "gradient"), ("sgd:fc1.weight", "update")]
    rows = []
    for model in MODELS:
        for k, framework in enumerate(frameworks):
            for j, (tensor, stage) in enumerate(tensors):
                which = (model, framework, tensor)
                tol = 1e-5 if stage == "forward" else 2e-5
                error = 0.0 if which == exact else (3e-4 if which == fail else 1e-7 * (1 + j + k))
                rows.append({"run_id": RUN["run_id"], "model": model, "framework": framework, "device": "cpu",
                             "dtype": dtype, "mode": "eager",
                             "check_status": "fail" if fail and which[:2] == fail[:2] else "pass",
                             "first_divergence": tensor if which == fail else None, "tensor": tensor,
                             "stage": stage, "layer": None, "shape": (3, 4), "max_abs": error, "normwise": error,
                             "atol": 1e-6, "rtol": 1e-5, "normwise_tol": tol, "passed": error <= tol, "note": ""})
    return pd.DataFrame(rows, columns=list(results.CHECK_COLUMNS)).astype(results._CHECK_DTYPES)


def full_run(threads=(2,), models=MODELS, batches=BATCHES, phases=PHASES) -> pd.DataFrame:
    return frame([cell(m, f, batch_size=b, phase=p, threads=t) for m in models for f in FRAMEWORKS for b in batches
                  for p in phases for t in threads])


def small_run(threads=(2,)) -> pd.DataFrame:
    """One model, two batch sizes, two phases: every kind of plot, quickly drawn."""
    return full_run(threads, models=("mlp",), batches=(1, 32), phases=("forward", "train_step"))


@pytest.fixture(scope="module")
def full() -> list[Plot]:
    """The plots of a full run with a thread sweep, built once: tests only read them."""
    return plots.plots(full_run(threads=(1, 2)), check_rows(), RUN)


def by_name(found: list[Plot]) -> dict[str, Plot]:
    return {p.name: p for p in found}


def axes_of(plot: Plot) -> list:
    """The visible panels (not colorbars or secondary axes, which have no title)."""
    return [ax for ax in plot.figure.axes if ax.get_visible() and ax.get_title(loc="center") + ax.get_title(loc="left")]


def bars(plot: Plot) -> dict[str, object]:
    """The bars of the figure by the key of the cell each draws."""
    return {p.get_gid(): p for ax in plot.figure.axes for p in ax.patches if p.get_gid()}


def heatmap_texts(plot: Plot) -> dict[str, str]:
    return {t.get_gid(): t.get_text() for ax in plot.figure.axes for t in ax.texts if t.get_gid()}


def render(plot: Plot) -> None:
    for kind in ("png", "svg"):
        buf = io.BytesIO()
        plot.figure.savefig(buf, format=kind, dpi=50)
        assert buf.getvalue(), f"{plot.name}: empty {kind}"


# ------------------------------------------------------------------------------------------------
# which plots a run gets


def test_a_full_run_gets_every_plot_with_title_caption_and_units(full):
    found = full
    names = [p.name for p in found]
    assert names == ["relative", "phases_mlp", "phases_lenet5", "scaling_forward", "scaling_forward_backward",
                     "scaling_train_step", "threads", "efficiency", "equivalence_float32"]
    units = {"phases": "ms", "scaling": "samples/s", "efficiency": "GFLOP/s", "threads": "(x)",
             "equivalence": "||ref||"}
    for plot in found:
        assert re.fullmatch(r"[a-z0-9_]+", plot.name)
        assert plot.title and plot.caption.strip()
        assert plot.figure.get_suptitle() == plot.title
        footer = " ".join(t.get_text() for t in plot.figure.texts)
        assert "20261202-120000-synthetic" in footer and "Test CPU 9000, 8 logical cores" in footer
        assert "torch 2.5.0" in footer and "tensorflow 2.18.0" in footer
        unit = next((u for prefix, u in units.items() if plot.name.startswith(prefix)), None)
        if unit:
            labels = [ax.get_ylabel() for ax in plot.figure.axes]
            assert any(unit in label for label in labels), (plot.name, labels)
        assert plot.figure.legends or plot.name == "relative", plot.name
        assert plot.figure.get_figwidth() <= 16


def test_the_heatmap_colorbar_says_what_it_measures(full):
    relative = by_name(full)["relative"]
    assert any(ax.get_ylabel() == "time / fastest" for ax in relative.figure.axes)


def test_phases_plot_has_a_panel_per_device_and_batch_size_and_at_most_three_batch_rows():
    rows = [cell("mlp", f, device=d, batch_size=b) for f in ("torch", "tensorflow") for d in ("cpu", "cuda:0")
            for b in (1, 2, 4, 8, 16, 32)]
    plot = plots.plot_phases(frame(rows), RUN, "mlp")
    titles = sorted(ax.get_title() for ax in axes_of(plot))
    assert titles == sorted(f"{d} · batch {b}" for d in ("cpu", "cuda:0") for b in (1, 8, 32))
    assert "smallest, a middle and the largest" in plot.caption


def test_contenders_name_their_mode_always_and_the_dtype_only_when_it_varies():
    rows = [cell("mlp", "torch", mode=m, dtype=d) for m in ("eager", "compile") for d in ("float32", "float64")]
    rows += [cell("mlp", "tensorflow", mode="xla", dtype="float64")]
    plot = plots.plot_phases(frame(rows), RUN, "mlp")
    labels = [t.get_text() for t in plot.figure.legends[0].get_texts()]
    assert labels[:5] == ["torch eager · float32", "torch eager · float64", "torch compile · float32",
                          "torch compile · float64", "tensorflow xla · float64"]


def test_framework_colours_are_fixed_across_plots(full):
    for plot in full:
        legend = plot.figure.legends[0] if plot.figure.legends else None
        for handle, text in zip(legend.legend_handles, legend.get_texts(), strict=True) if legend else ():
            if text.get_text() in FRAMEWORKS:
                color = handle.get_facecolor() if hasattr(handle, "get_height") else handle.get_color()
                assert _rgb(color) == pytest.approx(_rgb(plots.framework_color(text.get_text()))), plot.name
    assert plots.framework_color("myplugin") == plots.framework_color("myplugin")


def _rgb(color) -> tuple:
    return to_rgb(color)


# ------------------------------------------------------------------------------------------------
# degenerate runs


def degenerate_runs() -> dict[str, tuple]:
    """Legal runs that lack something: (df, checks, run, the plot names expected or None for 'any')."""
    df, checks = small_run(), check_rows()
    no_checks = checks.iloc[0:0]
    failed = frame([cell(m, f, status="error", batch_size=b) for m in MODELS for f in FRAMEWORKS for b in BATCHES])
    without_scaling = {"relative", "phases_mlp", "efficiency", "equivalence_float32"}
    return {
        "empty": (frame([]), no_checks, RUN, set()),
        "all_failed": (failed, no_checks, RUN, set()),
        "single_cell": (frame([cell()]), checks, RUN, without_scaling),
        "one_framework": (df[df["framework"] == "torch"], checks[checks["framework"] == "torch"], RUN, None),
        "one_batch": (df[df["batch_size"] == 32], checks, RUN, without_scaling),
        "no_peak": (df, checks, {**RUN, "peak_gflops": {}}, None),
        "nan_ci": (df.assign(ci_low_s=np.nan, ci_high_s=np.nan), checks, RUN, None),
        "no_flops": (df.assign(flops=np.nan, gflops_per_s=np.nan), checks, RUN,
                     {"relative", "phases_mlp", "scaling_forward", "scaling_train_step", "equivalence_float32"}),
        "checks_only": (frame([cell(status="skipped")]), checks, RUN, {"equivalence_float32"}),
        "no_forward": (frame([cell(phase=p) for p in ("backward", "train_step")]), no_checks, RUN,
                       {"relative", "phases_mlp", "efficiency"}),
    }


@pytest.mark.parametrize("case", list(degenerate_runs()))
def test_degenerate_runs_do_not_raise(case):
    df, checks, run, expected = degenerate_runs()[case]
    found = plots.plots(df, checks, run)
    if case in ("single_cell", "nan_ci"):
        for plot in found:
            plot.figure.draw_without_rendering()  # the layout, ticks and text: what fails on odd data
    if expected is not None:
        assert {p.name for p in found} == expected
    for plot in found:
        assert plot.title and plot.caption


def test_no_checks_means_no_equivalence_plot():
    empty = pd.DataFrame(columns=list(results.CHECK_COLUMNS)).astype(results._CHECK_DTYPES)
    names = {p.name for p in plots.plots(small_run(), empty, RUN)}
    assert not any(n.startswith("equivalence") for n in names)
    assert "relative" in names


def test_one_thread_count_means_no_thread_plot():
    assert plots.plot_threads(full_run(threads=(4,)), RUN) is None


def test_efficiency_without_a_peak_has_no_peak_line_or_percent_axis():
    run = {**RUN, "peak_gflops": {}}
    plot = plots.plot_efficiency(full_run(), run)
    assert "No peak was measured for cpu" in plot.caption
    for ax in plot.figure.axes:
        assert not any("peak" in t.get_text() for t in ax.texts)
        assert not ax.child_axes  # no secondary '% of peak' axis
    with_peak = plots.plot_efficiency(full_run(), RUN)
    texts = [t.get_text() for ax in with_peak.figure.axes for t in ax.texts]
    assert "float32 matmul peak: 200 GFLOP/s" in texts
    assert any("% of peak" in child.get_ylabel() for ax in with_peak.figure.axes for child in ax.child_axes)


def test_a_runs_suite_may_be_a_bare_name_and_the_environment_missing():
    found = plots.plots(small_run(), check_rows(), {"suite": "quick", "peak_gflops": None})
    assert found
    assert "suite quick" in found[0].figure.texts[-1].get_text()


# ------------------------------------------------------------------------------------------------
# the numbers are the table's


def test_phases_bar_heights_are_the_medians_in_ms():
    df = full_run()
    plot = plots.plot_phases(df, RUN, "lenet5")
    drawn = bars(plot)
    expected = df[df["model"] == "lenet5"].set_index("key")["median_s"] * 1e3
    assert set(drawn) == set(expected.index)
    for key, bar in drawn.items():
        assert bar.get_height() == pytest.approx(expected[key])


def test_efficiency_bars_are_the_gflops_at_the_largest_batch():
    df = full_run()
    drawn = bars(plots.plot_efficiency(df, RUN))
    largest = df[df["batch_size"] == 128].set_index("key")["gflops_per_s"]
    assert set(drawn) == set(largest.index)
    for key, bar in drawn.items():
        assert bar.get_height() == pytest.approx(largest[key])


def test_heatmap_numbers_are_time_over_the_fastest_of_the_column():
    df = full_run()
    texts = heatmap_texts(plots.plot_relative(df, RUN))
    largest = df[df["batch_size"] == 128]
    assert set(texts) == set(largest["key"])
    for (_, _), column in largest.groupby(["model", "phase"]):
        fastest = column["median_s"].min()
        for row in column.itertuples():
            assert float(texts[row.key]) == pytest.approx(row.median_s / fastest, abs=0.005)
    assert sum(t == "1.00" for t in texts.values()) == len(MODELS) * len(PHASES)


def test_scaling_points_are_the_throughputs():
    df = full_run()
    plot = plots.plot_scaling(df, RUN, "forward")
    (mlp,) = [ax for ax in plot.figure.axes if ax.get_title() == "mlp"]
    (line,) = [ln for ln in mlp.lines if ln.get_gid() == "torch eager@cpu"]
    rows = df[(df["model"] == "mlp") & (df["framework"] == "torch") & (df["phase"] == "forward")]
    rows = rows.sort_values("batch_size")
    assert list(line.get_xdata()) == [1, 32, 128]
    assert np.allclose(line.get_ydata(), rows["samples_per_s"])
    assert mlp.get_xlabel() == "batch size (samples)" and mlp.get_yscale() == "log"


def test_thread_speed_up_is_time_at_the_fewest_threads_over_time():
    rows = [cell("mlp", f, batch_size=128, phase="forward_backward", threads=t, median_s=0.1 / t ** s)
            for f, s in (("torch", 1.0), ("tensorflow", 0.5)) for t in (1, 2, 4)]
    rows += [cell("mlp", "torch", batch_size=32, phase="forward_backward", threads=t) for t in (1, 2, 4)]
    plot = plots.plot_threads(frame(rows), RUN)
    (ax,) = axes_of(plot)
    speedup = {ln.get_gid(): list(ln.get_ydata()) for ln in ax.lines if ln.get_gid()}
    assert np.allclose(speedup["torch eager@cpu"], [1, 2, 4])
    assert np.allclose(speedup["tensorflow eager@cpu"], [1, math.sqrt(2), 2])
    assert "batch 128" in ax.get_title() and "forward_backward" in plot.caption


def test_thread_plot_prefers_forward_backward_and_other_plots_use_the_most_threads():
    df = full_run(threads=(1, 2))
    assert "forward_backward" in plots.plot_threads(df, RUN).title
    drawn = bars(plots.plot_phases(df, RUN, "mlp"))
    assert drawn and all(key.endswith(".t2") for key in drawn)
    assert "At 2 threads" in plots.plot_relative(df, RUN).caption


# ------------------------------------------------------------------------------------------------
# marks


def marked_run() -> pd.DataFrame:
    df = full_run()
    noisy = (df["model"] == "mlp") & (df["framework"] == "tensorflow")
    unverified = (df["model"] == "mlp") & (df["framework"] == "reference")
    df.loc[noisy, "noisy"] = True
    df.loc[unverified, "verified"] = False
    df.loc[df["framework"] == "torch", "verified"] = pd.NA  # not checked: no mark
    return df


def test_phases_plot_hatches_noisy_bars_and_flags_unverified_ones():
    df = marked_run()
    plot = plots.plot_phases(df, RUN, "mlp")
    drawn = bars(plot)
    for row in df[df["model"] == "mlp"].itertuples():
        bar = drawn[row.key]
        assert (bar.get_hatch() == "//") == (row.framework == "tensorflow")
        red = np.allclose(bar.get_edgecolor()[:3], _rgb("#d62728"))
        assert red == (row.framework == "reference")
    exclamations = [t for ax in plot.figure.axes for t in ax.texts if t.get_text() == "!"]
    assert len(exclamations) == len(BATCHES) * len(PHASES)
    labels = [t.get_text() for t in plot.figure.legends[0].get_texts()]
    assert any(label.startswith("noisy") for label in labels)
    assert any("not verified" in label for label in labels)
    assert "Hatched bars" in plot.caption and "red edge" in plot.caption


def test_unmarked_run_explains_no_marks():
    plot = plots.plot_phases(full_run(), RUN, "mlp")
    labels = [t.get_text() for t in plot.figure.legends[0].get_texts()]
    assert not any("noisy" in label or "failed" in label for label in labels)
    assert not any(bar.get_hatch() for bar in bars(plot).values())


def test_heatmap_appends_tilde_for_noisy_and_bang_for_unverified():
    df = marked_run()
    texts = heatmap_texts(plots.plot_relative(df, RUN))
    for row in df[df["batch_size"] == 128].itertuples():
        text = texts[row.key]
        assert text.endswith("~") == (row.model == "mlp" and row.framework == "tensorflow")
        assert text.endswith("!") == (row.model == "mlp" and row.framework == "reference")
        assert re.fullmatch(r"\d+\.\d\d[~!]?", text)


def test_points_are_hollow_when_noisy_and_crossed_when_unverified():
    df = marked_run()
    plot = plots.plot_scaling(df, RUN, "forward")
    (mlp,) = [ax for ax in plot.figure.axes if ax.get_title() == "mlp"]
    hollow = [ln for ln in mlp.lines if ln.get_marker() not in ("None", "x") and ln.get_markerfacecolor() == "white"]
    crosses = [ln for ln in mlp.lines if ln.get_marker() == "x"]
    assert len(hollow) == len(BATCHES)  # the tensorflow points
    assert len(crosses) == len(BATCHES)  # the reference points
    (lenet5,) = [ax for ax in plot.figure.axes if ax.get_title() == "lenet5"]
    assert not [ln for ln in lenet5.lines if ln.get_marker() == "x"]


def test_equivalence_draws_failures_in_red_and_exact_zeros_at_a_floor():
    checks = check_rows(fail=("lenet5", "torch", "grad:input"), exact=("mlp", "reference", "loss"))
    plot = plots.plot_equivalence(checks, RUN, "float32")
    panels = {ax.get_title(): ax for ax in axes_of(plot)}
    assert set(panels) == set(MODELS)
    lenet5 = panels["lenet5"]
    crosses = [ln for ln in lenet5.lines if ln.get_marker() == "x"]
    assert len(crosses) == 1 and crosses[0].get_ydata()[0] == pytest.approx(3e-4)
    red = [t.get_text() for t in lenet5.get_xticklabels() if np.allclose(_rgb(t.get_color()), _rgb("#d62728"))]
    assert red == ["grad:input"]
    assert [t.get_text() for t in lenet5.get_xticklabels()] == ["output", "loss", "grad:fc1.weight", "grad:input",
                                                                "sgd:fc1.weight"]
    assert lenet5.get_yscale() == "log"
    floors = [ln for ln in panels["mlp"].lines if ln.get_marker() == "v"]
    assert len(floors) == 1 and 0 < floors[0].get_ydata()[0] < 1e-7
    labels = [t.get_text() for t in plot.figure.legends[0].get_texts()]
    assert any(label.startswith("exact") for label in labels)
    assert any("tolerance" in label for label in labels)
    assert "first diverges at grad:input" in plot.caption


def test_equivalence_plot_per_dtype():
    checks = pd.concat([check_rows("float32"), check_rows("float64")], ignore_index=True)
    names = [p.name for p in plots.plots(small_run(), checks, RUN)]
    assert names[-2:] == ["equivalence_float32", "equivalence_float64"]


# ------------------------------------------------------------------------------------------------
# output


def test_a_run_folder_loaded_by_harness_results_plots(tmp_path):
    run_dir = tmp_path / "20261202-120000-tiny"
    results.write_run(run_dir, {**RUN, "suite": {"name": "tiny", "models": ["mlp"]}})
    for framework, factor in (("reference", 2.0), ("torch", 1.0)):
        for batch in (1, 32):
            c = {"model": "mlp", "framework": framework, "device": "cpu", "dtype": "float32", "mode": "eager",
                 "batch_size": batch, "phase": "forward", "threads": 2}
            samples = [factor * batch * 1e-5 * (1 + 0.01 * i) for i in range(5)]
            check = {"status": "pass", "worst_normwise": 1e-7, "first_divergence": None,
                     "tensors": [{"tensor": "output", "stage": "forward", "normwise": 1e-7, "normwise_tol": 1e-5,
                                  "passed": True}]}
            results.write_cell(run_dir, f"mlp.{framework}.b{batch}", {
                "cell": c, "status": "ok", "samples_s": samples, "verified": True, "check": check, "flops": 1e6})
    df, checks, run = results.load(run_dir), results.load_checks(run_dir), results.read_run(run_dir)
    found = by_name(plots.plots(df, checks, run))
    assert set(found) == {"relative", "phases_mlp", "scaling_forward", "efficiency", "equivalence_float32"}
    assert "run 20261202-120000-tiny · suite tiny" in found["relative"].figure.texts[-1].get_text()
    median_ms = df.set_index("key").at["mlp.torch.b32", "median_s"] * 1e3
    assert bars(found["phases_mlp"])["mlp.torch.b32"].get_height() == pytest.approx(median_ms)


def test_every_figure_saves_to_png_and_svg():
    df = small_run(threads=(1, 2))
    df.loc[df["framework"] == "torch", "noisy"] = True
    df.loc[df["framework"] == "reference", "verified"] = False
    found = plots.plots(df, check_rows(fail=("mlp", "torch", "loss"), exact=("mlp", "reference", "output")), RUN)
    assert len(found) == 7
    for plot in found:
        render(plot)


def test_plot_names_are_validated():
    with pytest.raises(ValueError, match="file-name stem"):
        Plot("Bad Name", "t", "c", None)


def test_importing_harness_does_not_import_plots():
    import subprocess
    import sys

    code = "import sys, harness, harness.results; print('harness.plots' in sys.modules, 'matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
