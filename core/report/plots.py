"""PNG plots of ``distfold evaluate`` (matplotlib, Agg canvas; no pyplot state).

Every function writes one PNG atomically and returns its path. Inputs are
plain numpy arrays and dicts, so the plots can be redrawn from metrics.json.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from concurrent.futures import Future
from typing import Any, Callable, Sequence

import numpy as np

from distfold.fileio import atomic_write

#: Separation bins (inclusive lower edges) for the error-by-separation plot.
SEPARATION_EDGES = (1, 2, 3, 4, 5, 6, 9, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
COLOURS = {"model": "tab:blue", "prior": "tab:orange"}


def _figure(width: float, height: float):
    """A figure of ``width`` x ``height`` inches at 100 dpi with no layout engine: each plot
    places its axes at fixed margins in inches (:func:`_margins`). Constrained layout
    measured every tick label and title at two layout passes per drawing, about half of
    each plot's time (a whole evaluation's five plots: 3.5 s with it, 1.8 s without)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _margins(fig, left: float, right: float, bottom: float, top: float, gap: float = 0.0, panels: int = 1) -> None:
    """Subplot margins of ``fig`` in inches, and ``gap`` inches between its ``panels`` side by side."""
    w, h = fig.get_size_inches()
    width = (w - left - right - gap * (panels - 1)) / panels
    fig.subplots_adjust(left=left / w, right=1 - right / w, bottom=bottom / h, top=1 - top / h,
                        wspace=gap / width if panels > 1 else 0.0)


def _save(fig, path: str | os.PathLike) -> Path:
    path = Path(path)
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png")
    return path


def distance_maps(path, panels: Sequence[dict[str, Any]]) -> Path:
    """Predicted (left) vs true (right) distance maps, one row per chain.

    panels: dicts with ``title``, ``pred`` (L, L) Å, ``true`` (L, L) Å (NaN masked).
    """
    n = max(1, len(panels))
    row_h = 3.6
    fig = _figure(8.0, row_h * n)
    # per row, in inches: two square maps of SIDE under their titles, a colour bar at 80 % of
    # their height, room for the tick labels and axis labels at left, below and right
    side, top, left, gap, bar_gap, bar_w = 2.6, 0.45, 0.75, 0.85, 0.3, 0.13
    for r, panel in enumerate(panels):
        true = np.asarray(panel["true"], dtype=float)
        pred = np.asarray(panel["pred"], dtype=float)
        vmax = float(np.nanpercentile(true, 99)) if np.isfinite(true).any() else float(np.nanmax(pred))
        y = (row_h * (n - r) - top - side) / fig.get_figheight()
        x0 = left / 8.0
        x1 = (left + side + gap) / 8.0
        for x, mat, label, loc in ((x0, pred, f"{panel['title']}\npredicted", "left"),
                                   (x1, true, "\ntrue (masked residues blank)", "center")):
            ax = fig.add_axes((x, y, side / 8.0, side / fig.get_figheight()))
            im = ax.imshow(np.ma.masked_invalid(mat), cmap="viridis_r", vmin=0, vmax=vmax, interpolation="nearest")
            ax.set_title(label, fontsize=9, loc=loc)
            ax.set_xlabel("residue j")
            ax.set_ylabel("residue i")
        cax = fig.add_axes(((left + 2 * side + gap + bar_gap) / 8.0, y + 0.1 * side / fig.get_figheight(),
                            bar_w / 8.0, 0.8 * side / fig.get_figheight()))
        fig.colorbar(im, cax=cax, label="C-alpha distance (Å)")
    return _save(fig, path)


def error_histogram(path, edges: np.ndarray, counts: dict[str, np.ndarray], mae: dict[str, float],
                    n_pairs: dict[str, int]) -> Path:
    """Histogram of signed distance errors (predicted - true, Å) per method.

    edges: (B + 1,) bin edges; counts: method -> (B,) pair counts (errors clipped
    into the outer bins); mae, n_pairs: per method, for the legend.
    """
    fig = _figure(6.5, 4.0)
    _margins(fig, left=0.7, right=0.15, bottom=0.55, top=0.15)
    ax = fig.subplots()
    edges = np.asarray(edges, dtype=float)
    widths = np.diff(edges)
    for name, c in counts.items():
        c = np.asarray(c, dtype=float)
        if c.sum() == 0:
            continue
        density = c / (c.sum() * widths)
        ax.stairs(density, edges, lw=1.5, color=COLOURS.get(name),
                  label=f"{name} (MAE {mae[name]:.2f} Å, {n_pairs[name]:,} pairs)")
    ax.set_xlabel(f"predicted - true distance (Å), pairs i < j; clipped to ±{edges[-1]:g}")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    return _save(fig, path)


def separation_bins(max_sep: int) -> list[tuple[int, int]]:
    """[lo, hi] inclusive separation bins covering 1 .. max_sep."""
    edges = [e for e in SEPARATION_EDGES if e <= max_sep] + [max_sep + 1]
    return [(lo, hi - 1) for lo, hi in zip(edges[:-1], edges[1:]) if hi - 1 >= lo]


def error_by_separation(path, sums: dict[str, np.ndarray], counts: np.ndarray) -> Path:
    """MAE (Å) against sequence separation |i - j| (binned) per method.

    sums: method -> (S,) sum of |error| at separation s; counts: (S,) pairs at s.
    """
    fig = _figure(6.5, 4.0)
    _margins(fig, left=0.7, right=0.15, bottom=0.55, top=0.15)
    ax = fig.subplots()
    counts = np.asarray(counts, dtype=float)
    bins = separation_bins(len(counts) - 1)
    centres = [0.5 * (lo + hi) for lo, hi in bins]
    for name, s in sums.items():
        s = np.asarray(s, dtype=float)
        mae = [s[lo:hi + 1].sum() / counts[lo:hi + 1].sum() if counts[lo:hi + 1].sum() else np.nan
               for lo, hi in bins]
        ax.plot(centres, mae, marker="o", ms=3, color=COLOURS.get(name), label=name)
    ax.set_xscale("log")
    ax.set_xlabel("sequence separation |i - j| (binned)")
    ax.set_ylabel("distance MAE (Å)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def calibration(path, predicted: np.ndarray, observed: np.ndarray, table: Sequence[dict[str, Any]]) -> Path:
    """Per-residue confidence (predicted lDDT) against observed lDDT of the
    predicted distances, both 0-100: a sample of residues and the binned means."""
    fig = _figure(5.0, 5.0)
    _margins(fig, left=0.7, right=0.2, bottom=0.55, top=0.15)
    ax = fig.subplots()
    p = np.asarray(predicted, dtype=float)
    o = np.asarray(observed, dtype=float)
    ok = np.isfinite(p) & np.isfinite(o)
    p, o = p[ok], o[ok]
    if len(p) > 5000:
        pick = np.random.default_rng(0).choice(len(p), 5000, replace=False)
        ps, os_ = p[pick], o[pick]
    else:
        ps, os_ = p, o
    ax.scatter(ps, os_, s=3, alpha=0.25, color="tab:gray", label=f"residues ({len(p):,})")
    rows = [r for r in table if r["n"]]
    ax.plot([r["mean_predicted"] for r in rows], [r["mean_observed"] for r in rows], marker="o",
            color="tab:blue", label="binned mean")
    ax.plot([0, 100], [0, 100], ls="--", color="black", lw=1, label="perfect calibration")
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 100)
    ax.set_xlabel("confidence: predicted lDDT (0-100)")
    ax.set_ylabel("observed C-alpha lDDT of the predicted distances (0-100)")
    ax.legend(fontsize=8, loc="upper left")
    return _save(fig, path)


def read_metrics_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a training log (one JSON object per line; bad lines skipped)."""
    rows = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(obj, dict):
                rows.append(obj)
    return rows


_X_KEYS = ("step", "global_step", "epoch", "samples")
_SKIP_KEYS = {"time", "wall_s", "elapsed_s", "eval_s", "seconds", "samples_per_s", "timestamp", "n_chains",
              "lr", "learning_rate", "world_size", "rank", "max_rank_weight_diff"}
_GROUP_KEYS = ("kind", "split")


def _panel(key: str) -> str:
    name = key.rsplit("/", 1)[-1]
    if "loss" in name:
        return "loss"
    if "grad" in name:
        return "gradient norm"
    if "mae" in name or "rmse" in name:
        return "distance error (Å)"
    return "score"


def training_curves(path, rows: Sequence[dict[str, Any]]) -> Path | None:
    """Every numeric series of a training log (``metrics.jsonl``: one JSON object
    per line, e.g. ``{"kind": "train", "step": 10, "loss": ...}`` and
    ``{"kind": "val", "step": 250, "mae": ..., "lddt": ..., "prior_mae": ...}``)
    against step (or epoch, or row number), one panel each for losses, gradient
    norms, distance errors and scores; series are named ``<kind>/<key>``
    (bookkeeping such as world size is left out). Returns None when no
    row has a numeric value to plot."""
    xkey = next((k for k in _X_KEYS if any(isinstance(r.get(k), (int, float)) for r in rows)), None)
    series: dict[str, tuple[list[float], list[float]]] = {}
    for n, r in enumerate(rows):
        x = r.get(xkey) if xkey else n
        if not isinstance(x, (int, float)) or isinstance(x, bool):
            continue
        group = next((r[g] for g in _GROUP_KEYS if isinstance(r.get(g), str)), "")
        prefix = f"{group}/" if group else ""
        for k, v in r.items():
            if k in _X_KEYS or k in _SKIP_KEYS or isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            if not np.isfinite(v):
                continue
            xs, ys = series.setdefault(prefix + k, ([], []))
            xs.append(float(x))
            ys.append(float(v))
    if not series:
        return None
    panels: dict[str, dict[str, tuple[list[float], list[float]]]] = {}
    for k, v in series.items():
        panels.setdefault(_panel(k), {})[k] = v
    order = [p for p in ("loss", "gradient norm", "distance error (Å)", "score") if p in panels]
    fig = _figure(4.2 * len(order) + 1.0, 4.0)
    _margins(fig, left=0.8, right=0.2, bottom=0.55, top=0.35, gap=0.8, panels=len(order))
    axes = fig.subplots(1, len(order), squeeze=False)[0]
    for ax, title in zip(axes, order):
        for k, (xs, ys) in sorted(panels[title].items()):
            style = "--" if "prior" in k else "-"
            ax.plot(xs, ys, style, marker="." if len(xs) < 50 else None, label=k)
        ax.set_title(title)
        ax.set_xlabel(xkey or "log row")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    return _save(fig, path)


def find_training_log(model_dir: str | os.PathLike) -> Path | None:
    """``metrics.jsonl`` of a checkpoint: in its folder, or in the training run's
    folder above it (``RUN/best``, ``RUN/checkpoints/step-N``)."""
    d = Path(model_dir)
    for folder in (d, d.parent, d.parent.parent):
        if (folder / "metrics.jsonl").is_file():
            return folder / "metrics.jsonl"
    return None


def training_curves_of(path, log_path: str | os.PathLike) -> Path | None:
    """:func:`training_curves` of the training log at ``log_path`` (read here: a worker
    process gets the log's path, not its rows)."""
    return training_curves(path, read_metrics_jsonl(log_path))


def evaluation_plots(report_dir: str | os.PathLike, figures: Any,
                     run: Callable[..., Future] | None = None) -> dict[str, str | None]:
    """Every plot of one ``distfold evaluate`` run into ``report_dir``, from the figures'
    data it computed (:class:`distfold.pipeline.evaluate.EvaluationFigures`): distance
    maps, error histogram, error by separation, calibration (when the model has a
    confidence) and training curves (when the checkpoint's run left a training log).
    Returns ``{plot: file name, or None when not drawn}``, as ``metrics.json`` records it.

    run: ``run(fn, *args)`` draws one plot elsewhere and returns its
    :class:`~concurrent.futures.Future` (``distfold evaluate`` passes its worker processes,
    :meth:`distfold.pipeline.evaluate_jobs.ChainJobs.call`: the plots are drawn at the same
    time, the slowest first); None draws them here, one after another. The plots are the
    same either way."""
    report_dir = Path(report_dir)
    drawing: dict[str, Any] = {}
    later = run or (lambda fn, *args: fn(*args))
    drawing["distance_maps"] = later(distance_maps, report_dir / "distance_maps.png", figures.maps)
    log_path = find_training_log(figures.model_path) if figures.model_path else None
    if log_path is not None:
        drawing["training_curves"] = later(training_curves_of, report_dir / "training_curves.png", log_path)
    drawing["error_by_separation"] = later(error_by_separation, report_dir / "error_by_separation.png",
                                           figures.separation_sums, figures.separation_counts)
    drawing["error_histogram"] = later(error_histogram, report_dir / "error_histogram.png", figures.error_edges,
                                       figures.error_counts, figures.error_mae, figures.error_n)
    if figures.calibration_predicted is not None:
        drawing["calibration"] = later(calibration, report_dir / "calibration.png", figures.calibration_predicted,
                                       figures.calibration_observed, figures.calibration_table)
    out: dict[str, str | None] = {}
    for name in ("distance_maps", "error_histogram", "error_by_separation", "calibration", "training_curves"):
        drawn = drawing.get(name)
        if run is not None and drawn is not None:
            drawn = drawn.result()
        out[name] = None if drawn is None else drawn.name
    return out
