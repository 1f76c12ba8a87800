"""What the command line prints, as text: `bench list`'s catalogue, `bench check`'s rows, summary and
CSV, and the table that ends `bench run`. Lines are returned, never printed (harness.cli prints);
`style(text, status)` lets the caller colour a status word."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable

from .. import results
from ..fmt import num, si

__all__ = ["catalogue_lines", "CHECK_HEADER", "check_lines", "check_summary_lines", "checks_csv", "run_table"]

Style = Callable[[str, str], str]  # (text, status) -> text as shown


def _plain(text: str, status: str) -> str:
    return text


def catalogue_lines(models: list[dict], frameworks: list[dict]) -> list[str]:
    """`bench list`: the models with their sizes, then each framework's availability and modes."""
    lines = [f"Models ({len(models)})",
             f"  {'name':<20} {'params':>8} {'FLOPs/sample':>12}  {'input':<8} {'loss':<32} summary"]
    for m in models:
        shape = "x".join(map(str, m["input_shape"]))
        lines.append(f"  {m['name']:<20} {m['params']:>8,} {si(m['flops_per_sample']):>12}  "
                     f"{shape:<8} {m['loss']:<32} {m['summary']}")
    lines += ["", f"Frameworks ({sum(f['available'] for f in frameworks)} of {len(frameworks)} available)"]
    for f in frameworks:
        if f["available"]:
            state = f"available   {f['version'] or '?':<12} modes: {', '.join(f['modes'])}"
        else:
            state = f"unavailable {f['reason']}"
        lines.append(f"  {f['name']:<12} {state}")
    return lines


CHECK_HEADER = (f"{'model':<20} {'framework':<11} {'device':<7} {'dtype':<8} {'mode':<9} {'status':<6} "
                f"{'worst tensor':<24} {'normwise':>8} {'determ.':>8} {'time':>6}  first divergence")


def check_lines(r, verbose: bool, style: Style = _plain) -> list[str]:
    """One checked cell (harness.checks.CheckResult): its row, then its failing tensors (every
    tensor when verbose)."""
    worst = r.worst
    worst_name = worst.tensor if worst else "-"
    normwise = num(worst.normwise, ".1e") if worst else "-"
    determ = {True: "bitwise", False: num(r.nondeterminism, ".1e"), None: "-"}[r.deterministic]
    status = style(f"{r.status:<6}", r.status)
    tail = r.first_divergence or ""
    if r.status == "skip" or r.status == "error":
        worst_name, normwise, tail = "-", "-", r.reason
    lines = [f"{r.model:<20} {r.framework:<11} {r.device:<7} {r.dtype:<8} {r.mode:<9} {status} "
             f"{worst_name:<24} {normwise:>8} {determ:>8} {r.seconds:>5.1f}s  {tail}"]
    for t in r.tensors if verbose else r.failures:
        mark = "ok  " if t.passed else "FAIL"
        note = f"  {t.note}" if t.note else ""
        lines.append(f"      {mark} {t.tensor:<28} shape {str(t.shape):<16} max|a-b| {num(t.max_abs, '.1e'):>8} "
                     f"(atol {num(t.atol, '.1e')} + rtol {t.rtol:g}*|b|)  normwise {num(t.normwise, '.1e'):>8} "
                     f"(<= {t.normwise_tol:g}){note}")
    return lines


def check_summary_lines(checked, style: Style = _plain) -> list[str]:
    """The counts of `bench check`, the reasons for skips, and every failure with its first divergence."""
    counts = {s: sum(r.status == s for r in checked) for s in ("pass", "fail", "error", "skip")}
    lines = ["", ", ".join(f"{n} {s}" for s, n in counts.items()) + f" of {len(checked)} cells"]
    skipped: dict[str, list[str]] = {}
    for r in checked:
        if r.status == "skip":
            skipped.setdefault(r.reason, []).append(f"{r.model}/{r.framework}/{r.device}/{r.dtype}/{r.mode}")
    lines += [f"skipped {len(cells)}: {reason}" for reason, cells in skipped.items()]
    for r in checked:
        if r.status in ("fail", "error"):
            where = f" first divergence: {r.first_divergence}" if r.first_divergence else ""
            lines.append(style(f"{r.status.upper()}: {r.model}/{r.framework}/{r.device}/{r.dtype}/{r.mode}"
                               f"{where} {r.reason}", r.status))
    return lines


def checks_csv(checked) -> str:
    """`bench check --format csv`: one row per tensor of each cell (one empty row for a cell without)."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["model", "framework", "device", "dtype", "mode", "status", "tensor", "stage", "layer",
                     "shape", "max_abs", "normwise", "atol", "rtol", "normwise_tol", "passed", "note",
                     "first_divergence", "deterministic", "reason"])
    for r in checked:
        for t in r.tensors or [None]:
            writer.writerow([
                r.model, r.framework, r.device, r.dtype, r.mode, r.status,
                *(("", "", "", "", "", "", "", "", "", "", "") if t is None else (
                    t.tensor, t.stage, t.layer or "", "x".join(map(str, t.shape)), t.max_abs, t.normwise,
                    t.atol, t.rtol, t.normwise_tol, t.passed, t.note)),
                r.first_divergence or "", r.deterministic, r.reason,
            ])
    return buf.getvalue()


def run_table(run: results.Run) -> str:
    """The end-of-run table: the machine, then one line per cell that ran, fastest first within each
    workload, then the cells that did not run with their reason."""
    df, meta = run.table(), run.meta
    if df.empty:
        return "no cells"
    env = meta.get("environment") or {}
    cpu = env.get("cpu") or {}
    peaks = ", ".join(f"{d} {g:.0f} GFLOP/s" for d, g in (meta.get("peak_gflops") or {}).items())
    lines = [f"machine: {cpu.get('model')}, {cpu.get('logical_cores')} cores; float32 matmul peak: {peaks or '-'}"]
    ok = df[df["status"] == "ok"].copy()
    lines.append(f"{'model':<20} {'batch':>5} {'phase':<16} {'framework':<11} {'mode':<9} {'dtype':<8} {'thr':>3} "
                 f"{'median ms':>10} {'95% CI ms':>19} {'samples/s':>11} {'GFLOP/s':>8} {'%peak':>5} {'vs best':>7}"
                 "  flags")
    group = ["model", "batch_size", "phase", "dtype", "device", "threads"]
    for _, g in ok.groupby(group, sort=False):
        best = g["median_s"].min()
        for _, r in g.sort_values("median_s").iterrows():
            flags = []
            if results.flag(r.get("noisy")) is True:
                flags.append("noisy")
            if results.flag(r.get("verified")) is False:  # a failed check shouts; one not made is said
                flags.append("UNVERIFIED" if r.get("check_status") in results.CHECK_FAULTS else "unverified")
            if results.flag(r.get("threads_verified")) is False:
                flags.append("THREADS")
            if results.flag(r.get("phase_sum_flag")) is True:
                flags.append(f"fwd+bwd={r['phase_sum_ratio']:.2f}x fb")
            lines.append(
                f"{r['model']:<20} {r['batch_size']:>5} {r['phase']:<16} {r['framework']:<11} {r['mode']:<9} "
                f"{r['dtype']:<8} {r['threads']:>3} {r['median_s'] * 1e3:>10.3f} "
                f"{f'[{r.ci_low_s * 1e3:.3f}, {r.ci_high_s * 1e3:.3f}]':>19} {r['samples_per_s']:>11,.0f} "
                f"{num(r['gflops_per_s'], '.1f'):>8} {num(100 * r['peak_share'], '.0f'):>5} "
                f"{r['median_s'] / best:>6.2f}x  {' '.join(flags)}")
    others = df[df["status"] != "ok"]
    if len(others):
        lines.append("")
        for _, r in others.iterrows():
            lines.append(f"{r['status']:<8} {r['model']}/{r['framework']}/{r['device']}/{r['dtype']}/{r['mode']}/"
                         f"b{r['batch_size']}/{r['phase']}/t{r['threads']}: {r['reason']}")
    return "\n".join(lines)
