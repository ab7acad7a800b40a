"""Self-contained HTML reports: one page per prediction or comparison.

:func:`build_report` writes one HTML file that opens offline (no network
request: the 3D viewer's JavaScript, every script and all data are inline,
and a Content-Security-Policy forbids loading anything else) plus static PNG
versions of its plots beside it (matplotlib, Agg). :func:`build_index` writes
an index page that links many such pages (``distfold evaluate``).

A page shows

- the C-alpha traces in an interactive 3D viewer (3Dmol.js, vendored in
  ``report/assets/``; see its README for version, origin and licence): model
  and reference in two colours, the model coloured by confidence or by
  per-residue lDDT on demand, hover labels per residue;
- distance-map heatmaps (predicted or model, true, difference) drawn on
  ``<canvas>`` from the embedded matrices, with hover read-out;
- confidence and lDDT along the sequence (inline SVG);
- secondary structure along the sequence when given (inline SVG, one track per
  source: the prediction's H/E/C, the reference's DSSP), :func:`_ss_svg`;
- the metric table: every scalar of ``metrics`` (nested dicts flattened with
  dotted keys), each cell carrying its exact value in ``data-value`` (the
  same text ``json.dumps`` writes for ``--json``).

After drawing, the page's own script writes a JSON self-check into
``<pre id="selftest">`` (hidden): viewer canvas size and how many pixels
differ from the background (by colour), heatmap pixels drawn, the table's
values, resources fetched and any script error. Tests read it with
``chromium --headless --dump-dom``.

Plain string templates; no templating dependency.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from distfold.errors import InputError
from distfold.fileio import atomic_write

ASSETS = Path(__file__).with_name("assets")
VIEWER_FILE = "3Dmol-min.js"
#: The page's own script, in ``assets/``.
PAGE_SCRIPT = "report.js"

#: Model / reference colours in the viewer and the PNGs.
MODEL_COLOUR = "#e6550d"
REFERENCE_COLOUR = "#3182bd"
#: Confidence bands (0-100) and colours, the convention of AlphaFold's pLDDT pages.
CONFIDENCE_BANDS = ((90.0, "#0053d6"), (70.0, "#65cbf3"), (50.0, "#ffdb13"), (-math.inf, "#ff7d45"))
#: Bytes of a quantised map: 0..254 values, 255 = missing.
_MISSING = 255


@dataclass
class ReportFiles:
    """What :func:`build_report` / :func:`build_index` wrote."""

    html: Path
    pngs: list[Path] = field(default_factory=list)

    @property
    def size_bytes(self) -> int:
        return self.html.stat().st_size


def viewer_version() -> str:
    """Version of the vendored 3Dmol.js."""
    return (ASSETS / "VERSION").read_text().strip()


def _page_js() -> str:
    """The page's own script (``assets/report.js``), inlined into every report."""
    path = ASSETS / PAGE_SCRIPT
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:  # a broken installation, not user input
        raise InputError(f"{path}: the report's script is missing from the installation ({exc})") from None


def _viewer_js() -> str:
    """The vendored viewer, prefixed with its upstream banner (version, authors)."""
    path = ASSETS / VIEWER_FILE
    try:
        js = (ASSETS / (VIEWER_FILE + ".LICENSE.txt")).read_text(encoding="utf-8") + path.read_text(encoding="utf-8")
    except OSError as exc:  # a broken installation, not user input
        raise InputError(f"{path}: the report's 3D viewer is missing from the installation ({exc})") from None
    if "</script" in js.lower():  # pragma: no cover - guards a future update of the vendored file
        raise InputError(f"{path}: contains '</script' and cannot be inlined")
    return js


# ---------------------------------------------------------------- validation


def _coords(name: str, x, n: int | None) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != 3:
        raise InputError(f"{name}: expected (L, 3) coordinates, got shape {a.shape}")
    if n is not None and len(a) != n:
        raise InputError(f"{name}: {len(a)} residues, but the sequence has {n}")
    if not np.all(np.isfinite(a)):
        raise InputError(f"{name}: coordinates contain NaN or infinity")
    return a


def _matrix(name: str, d, n: int) -> np.ndarray:
    a = np.asarray(d, dtype=np.float64)
    if a.shape != (n, n):
        raise InputError(f"{name}: expected a ({n}, {n}) distance matrix, got shape {a.shape}")
    return a


def _per_residue(name: str, v, n: int) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64).reshape(-1)
    if len(a) != n:
        raise InputError(f"{name}: {len(a)} values, but the sequence has {n} residues")
    return a


def _distances(x: np.ndarray) -> np.ndarray:
    from distfold.structure.metrics import distance_matrix

    return distance_matrix(x)


# ---------------------------------------------------------------- metrics table


def flatten_metrics(metrics: Mapping[str, Any] | None, prefix: str = "") -> list[tuple[str, Any]]:
    """Scalar entries of a (nested) metrics dict as (dotted key, value), in
    insertion order. Lists and arrays (per-residue values) are left out: they
    are plotted, not tabulated."""
    rows: list[tuple[str, Any]] = []
    for key, value in (metrics or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            rows.extend(flatten_metrics(value, prefix=name + "."))
        elif isinstance(value, np.generic):
            rows.append((name, value.item()))
        elif value is None or isinstance(value, (bool, int, float, str)):
            rows.append((name, value))
    return rows


def json_value(value: Any) -> str:
    """The text ``json.dumps`` writes for a scalar (what ``--json`` prints)."""
    return json.dumps(value)


def format_value(value: Any) -> str:
    """Human display of a metric: 4 significant digits (1 decimal from 1000 on)."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return "n/a" if math.isnan(value) else str(value)
        return f"{value:.1f}" if abs(value) >= 1000 else f"{value:.4g}"
    return str(value)


def _table_html(metrics: Mapping[str, Any] | None) -> str:
    rows = flatten_metrics(metrics)
    if not rows:
        return '<p class="muted">No metrics.</p>'
    out = ['<table id="metrics"><thead><tr><th>metric</th><th>value</th></tr></thead><tbody>']
    for key, value in rows:
        exact = json_value(value)
        cls = "val num" if isinstance(value, (int, float)) and not isinstance(value, bool) else "val"
        out.append(
            f'<tr><td class="key">{html.escape(key)}</td>'
            f'<td class="{cls}" data-key="{html.escape(key, quote=True)}" data-value="{html.escape(exact, quote=True)}"'
            f' title="{html.escape(exact, quote=True)}">{html.escape(format_value(value))}</td></tr>'
        )
    out.append("</tbody></table>")
    return "\n".join(out)


# ---------------------------------------------------------------- heatmap data


def _colormap_lut(name: str) -> list[str]:
    from matplotlib import colormaps

    cmap = colormaps[name]
    return ["#%02x%02x%02x" % tuple(int(round(c * 255)) for c in cmap(i / 254.0)[:3]) for i in range(255)]


def _quantise_upper(d: np.ndarray, vmin: float, vmax: float) -> str:
    """Upper triangle (i < j, row-major, ``np.triu_indices(L, 1)`` order) as
    base64 bytes: round((v - vmin) / (vmax - vmin) * 254), clipped; 255 = missing."""
    i, j = np.triu_indices(len(d), 1)
    v = d[i, j]
    span = vmax - vmin if vmax > vmin else 1.0
    with np.errstate(invalid="ignore"):
        q = np.clip(np.rint((v - vmin) / span * 254.0), 0, 254)
    q = np.where(np.isfinite(v), q, _MISSING).astype(np.uint8)
    return base64.b64encode(q.tobytes()).decode("ascii")


def _distance_scale(*mats: np.ndarray) -> float:
    finite = [m[np.isfinite(m)] for m in mats if m is not None]
    finite = [f for f in finite if f.size]
    vmax = max((float(f.max()) for f in finite), default=1.0)
    return max(1.0, math.ceil(vmax))


def _diff_scale(diff: np.ndarray) -> float:
    i, j = np.triu_indices(len(diff), 1)
    v = np.abs(diff[i, j])
    v = v[np.isfinite(v)]
    if not v.size:
        return 2.0
    return float(max(2.0, math.ceil(np.percentile(v, 99))))


# ---------------------------------------------------------------- per-residue SVG


def _per_residue_svg(series: list[tuple[str, np.ndarray, str]], labels: Sequence[str]) -> str:
    """Line plot 0-100 along the sequence; NaN breaks a line."""
    n = len(labels)
    w, h, left, right, top, bottom = 900, 220, 44, 12, 12, 34
    pw, ph = w - left - right, h - top - bottom

    def xpos(k: float) -> float:
        return left + (k / max(n - 1, 1)) * pw

    def ypos(v: float) -> float:
        return top + (1.0 - v / 100.0) * ph

    parts = [f'<svg id="per-residue" viewBox="0 0 {w} {h}" width="100%" preserveAspectRatio="xMidYMid meet" '
             f'role="img" aria-label="per-residue confidence and lDDT">']
    for band_lo, band_hi, colour in ((90, 100, "#0053d6"), (70, 90, "#65cbf3"), (50, 70, "#ffdb13"), (0, 50, "#ff7d45")):
        parts.append(f'<rect x="{left}" y="{ypos(band_hi):.1f}" width="{pw}" height="{ypos(band_lo) - ypos(band_hi):.1f}" '
                     f'fill="{colour}" opacity="0.08"/>')
    for v in (0, 25, 50, 75, 100):
        y = ypos(v)
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{v}</text>')
    step = next(m * 10 ** e for e in range(8) for m in (1, 2, 5) if n / (m * 10 ** e) <= 10)
    try:  # ticks at round residue numbers when labels are numbers
        nums = [int(re.match(r"-?\d+", lab).group()) for lab in labels]
        ticks = [k for k, v in enumerate(nums) if v % step == 0]
    except (AttributeError, ValueError):
        ticks = [0] + list(range(step - 1, n, step))
    for k in ticks:
        x = xpos(k)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top + ph}" y2="{top + ph + 4}" stroke="#666"/>')
        parts.append(f'<text x="{x:.1f}" y="{top + ph + 16}" text-anchor="middle" class="tick">{html.escape(labels[k])}</text>')
    parts.append(f'<text x="{left + pw / 2}" y="{h - 2}" text-anchor="middle" class="tick">residue</text>')
    parts.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#666"/>')
    for name, values, colour in series:
        segs, cur = [], []
        for k, v in enumerate(values):
            if np.isfinite(v):
                cur.append(f"{xpos(k):.1f},{ypos(float(np.clip(v, 0, 100))):.1f}")
            elif cur:
                segs.append(cur)
                cur = []
        if cur:
            segs.append(cur)
        for seg in segs:
            if len(seg) == 1:
                x, y = seg[0].split(",")
                parts.append(f'<circle cx="{x}" cy="{y}" r="1.5" fill="{colour}" data-series="{html.escape(name)}"/>')
            else:
                parts.append(f'<polyline points="{" ".join(seg)}" fill="none" stroke="{colour}" stroke-width="1.5" '
                             f'data-series="{html.escape(name)}"/>')
    parts.append("</svg>")
    legend = " ".join(f'<span class="swatch" style="background:{c}"></span>{html.escape(nm)}' for nm, _, c in series)
    return "\n".join(parts) + f'<div class="legend">{legend}</div>'


#: Colours of the secondary-structure tracks: helix, strand, coil, no label.
SS_COLOURS = {"H": "#d62728", "E": "#f2b701", "C": "#c7c7c7", "-": "#ffffff"}


def _ss_svg(tracks: Mapping[str, str], labels: Sequence[str]) -> str:
    """Secondary structure along the sequence: one row per track (name -> one H/E/C/-
    character per residue), each run of one state a coloured box; the characters are kept
    in ``data-ss`` so the page can be checked."""
    from distfold.structure.secondary import segments

    n = len(labels)
    w, row_h, left, right, top = 900, 18, 110, 12, 6
    pw = w - left - right
    h = top + row_h * len(tracks) + 26

    def xpos(k: float) -> float:
        return left + k / max(n, 1) * pw

    parts = [f'<svg id="secondary-structure" viewBox="0 0 {w} {h}" width="100%" '
             f'preserveAspectRatio="xMidYMid meet" role="img" aria-label="secondary structure along the sequence">']
    for r, (name, ss) in enumerate(tracks.items()):
        y = top + r * row_h
        parts.append(f'<g class="ss-track" data-name="{html.escape(name, quote=True)}" '
                     f'data-ss="{html.escape(ss, quote=True)}">')
        parts.append(f'<text x="{left - 6}" y="{y + row_h * 0.65:.1f}" text-anchor="end" class="tick">'
                     f'{html.escape(name)}</text>')
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{y + row_h / 2:.1f}" y2="{y + row_h / 2:.1f}" '
                     f'stroke="#999"/>')
        for seg in segments(ss, "HE"):
            parts.append(f'<rect x="{xpos(seg.start):.1f}" y="{y + 3}" width="{xpos(seg.end) - xpos(seg.start):.1f}" '
                         f'height="{row_h - 6}" fill="{SS_COLOURS[seg.state]}" data-state="{seg.state}">'
                         f'<title>{seg.state} {html.escape(labels[seg.start])}-{html.escape(labels[seg.end - 1])}'
                         f'</title></rect>')
        parts.append("</g>")
    y_axis = top + row_h * len(tracks)
    step = next(m * 10 ** e for e in range(8) for m in (1, 2, 5) if n / (m * 10 ** e) <= 10)
    for k in [0] + list(range(step - 1, n, step)):
        x = xpos(k + 0.5)
        parts.append(f'<text x="{x:.1f}" y="{y_axis + 14}" text-anchor="middle" class="tick">'
                     f'{html.escape(labels[k])}</text>')
    parts.append("</svg>")
    legend = " ".join(f'<span class="swatch" style="background:{SS_COLOURS[s]};border:1px solid #999"></span>{t}'
                      for s, t in (("H", "helix"), ("E", "strand"), ("C", "coil")))
    return "\n".join(parts) + f'<div class="legend">{legend}</div>'


# ---------------------------------------------------------------- PNGs


def _save_fig(fig, path: Path) -> None:
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=110, bbox_inches="tight")


def _write_pngs(stem: Path, maps: list[tuple[str, np.ndarray, str, float, float]],
                series: list[tuple[str, np.ndarray, str]], model: np.ndarray, reference: np.ndarray | None,
                title: str, model_bonds: list[int], reference_bonds: list[int]) -> list[Path]:
    # A bare Figure renders through Agg without pyplot: no global backend switch.
    from matplotlib.figure import Figure

    written: list[Path] = []
    if maps:
        fig = Figure(figsize=(4.6 * len(maps), 4.2), layout="constrained")
        for k, (label, mat, cmap, vmin, vmax) in enumerate(maps):
            ax = fig.add_subplot(1, len(maps), k + 1)
            n = len(mat)
            im = ax.imshow(np.ma.masked_invalid(mat), cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest",
                           origin="upper", extent=(0.5, n + 0.5, n + 0.5, 0.5))
            ax.set_title(label, fontsize=10)
            ax.set_xlabel("residue j")
            ax.set_ylabel("residue i")
            fig.colorbar(im, ax=ax, shrink=0.8, label="Å")
        fig.suptitle(title, fontsize=10)
        path = stem.with_name(stem.name + ".distances.png")
        _save_fig(fig, path)
        written.append(path)
    if series:
        fig = Figure(figsize=(9, 3), layout="constrained")
        ax = fig.add_subplot(1, 1, 1)
        x = np.arange(1, len(series[0][1]) + 1)
        for name, values, colour in series:
            ax.plot(x, values, color=colour, lw=1.2, label=name)
        ax.set_ylim(0, 100)
        ax.set_xlim(1, max(len(x), 2))
        ax.set_xlabel("residue")
        ax.set_ylabel("0-100")
        ax.legend(loc="lower right", fontsize=8)
        ax.set_title(title, fontsize=10)
        path = stem.with_name(stem.name + ".per_residue.png")
        _save_fig(fig, path)
        written.append(path)
    # A static projection of the traces onto the principal plane of the reference (or model).
    fig = Figure(figsize=(6, 5), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    base = reference if reference is not None else model
    centre = base.mean(0)
    _, _, vt = np.linalg.svd(base - centre, full_matrices=False)
    traces = [("model", model, model_bonds, MODEL_COLOUR)]
    if reference is not None:
        traces.insert(0, ("reference", reference, reference_bonds, REFERENCE_COLOUR))
    for label, xyz, bonds, colour in traces:
        p = (xyz - centre) @ vt[:2].T
        # one line per bonded stretch: chain breaks stay visible
        cuts = sorted(set(range(len(xyz) - 1)) - set(bonds))
        for k, seg in enumerate(np.split(p, [c + 1 for c in cuts])):
            ax.plot(seg[:, 0], seg[:, 1], color=colour, lw=1.0, marker="o" if len(seg) == 1 else None, ms=2,
                    label=label if k == 0 else None)
    ax.set_aspect("equal")
    ax.set_xlabel("principal axis 1 (Å)")
    ax.set_ylabel("principal axis 2 (Å)")
    ax.legend(loc="best", fontsize=8)
    ax.set_title(title, fontsize=10)
    path = stem.with_name(stem.name + ".traces.png")
    _save_fig(fig, path)
    written.append(path)
    return written


# ---------------------------------------------------------------- page


def _script_json(obj: Any) -> str:
    """JSON safe to place inside <script type="application/json">."""
    text = json.dumps(obj, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _nan_to_none(values: np.ndarray | None, digits: int) -> list | None:
    if values is None:
        return None
    return [round(float(v), digits) if np.isfinite(v) else None for v in values]


def _bonds(coords: np.ndarray, residue_ids: Sequence | None, max_ca_ca: float) -> list[int]:
    """Indices i that are bonded to i + 1 in the trace: consecutive residue
    numbers (when given) and a C-alpha distance below max_ca_ca Å."""
    if len(coords) < 2:
        return []
    step = np.linalg.norm(np.diff(coords, axis=0), axis=1)
    ok = step < max_ca_ca
    if residue_ids is not None:
        nums = np.array([int(r[0]) if isinstance(r, (tuple, list)) else int(r) for r in residue_ids])
        ok &= np.diff(nums) <= 1
    return [int(i) for i in np.flatnonzero(ok)]


def build_report(
    path: str | os.PathLike,
    *,
    sequence: str,
    model_coords,
    reference_coords=None,
    predicted_distances=None,
    true_distances=None,
    confidence=None,
    lddt_per_residue=None,
    metrics: Mapping[str, Any] | None = None,
    title: str | None = None,
    info: Mapping[str, Any] | None = None,
    residue_ids: Sequence | None = None,
    predicted_label: str | None = None,
    write_png: bool = True,
    secondary_structure: Mapping[str, str] | None = None,
) -> ReportFiles:
    """Write one self-contained HTML page (and PNGs beside it).

    path: the .html file (written atomically; parent folders created).
    sequence: one letter per residue, length L.
    model_coords: (L, 3) Å, already superposed onto the reference (when given).
    reference_coords: (L, 3) Å, residue i matched to model residue i, or None
        (a predict page: model only).
    predicted_distances: (L, L) Å, the predicted matrix (predict) or None for
        the model's own C-alpha distances (compare). NaN = missing.
    true_distances: (L, L) Å or None for the reference's distances (if any).
    confidence: (L,) 0-100 per-residue confidence (e.g. the B-factor column), or None.
    lddt_per_residue: (L,) C-alpha lDDT per residue in [0, 1] (as
        :func:`distfold.structure.metrics.lddt` returns; NaN = unscored), or None.
    metrics: the same dict the command prints under ``--json``; scalars are
        tabulated (nested dicts with dotted keys), lists are not.
    title: page heading; info: extra (label -> text) lines under it.
    residue_ids: (L,) residue numbers or (number, insertion code) for labels
        and chain breaks in the viewer; default 1..L.
    predicted_label: name of the first map ("predicted" when
        predicted_distances is given, else "model").
    write_png: also write ``<stem>.distances.png``, ``<stem>.per_residue.png``
        and ``<stem>.traces.png`` beside the page.
    secondary_structure: tracks to draw along the sequence, name -> one ``H``/``E``/``C``
        (or ``-``, no label) per residue, e.g. ``{"predicted": ..., "reference DSSP": ...}``;
        None or empty: no such section.

    Returns the paths written. Raises :class:`InputError` on inconsistent input
    (nothing is written then).
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a directory; give the report page a file name (e.g. report.html)")
    if not isinstance(sequence, str) or not sequence:
        raise InputError("sequence: expected a non-empty string of one-letter residue codes")
    n = len(sequence)
    model = _coords("model coordinates", model_coords, n)
    reference = None if reference_coords is None else _coords("reference coordinates", reference_coords, n)
    if predicted_distances is None:
        pred_d = _distances(model)
        label_pred = predicted_label or "model"
    else:
        pred_d = _matrix("predicted distances", predicted_distances, n)
        label_pred = predicted_label or "predicted"
    if true_distances is not None:
        true_d = _matrix("true distances", true_distances, n)
    else:
        true_d = None if reference is None else _distances(reference)
    conf = None if confidence is None else _per_residue("confidence", confidence, n)
    plddt = None if lddt_per_residue is None else _per_residue("per-residue lDDT", lddt_per_residue, n)
    if plddt is not None and np.nanmax(np.abs(plddt), initial=0.0) > 1.0 + 1e-9:
        raise InputError("per-residue lDDT: expected values in [0, 1] (pass fractions, not percent)")
    if residue_ids is not None and len(residue_ids) != n:
        raise InputError(f"residue ids: {len(residue_ids)} given, but the sequence has {n} residues")
    labels = ([f"{r[0]}{r[1] if len(r) > 1 else ''}".strip() if isinstance(r, (tuple, list)) else str(r)
               for r in residue_ids] if residue_ids is not None else [str(k + 1) for k in range(n)])
    title = title or ("Comparison" if reference is not None else "Prediction")
    ss_tracks = {}
    for name, ss in (secondary_structure or {}).items():
        from distfold.structure.secondary import check_ss

        ss = check_ss(ss, name=f"secondary structure {name!r}")
        if len(ss) != n:
            raise InputError(f"secondary structure {name!r}: {len(ss)} characters, but the sequence has {n} residues")
        ss_tracks[str(name)] = ss

    # Heatmaps: predicted/model and true share one distance scale.
    dmax = _distance_scale(pred_d, true_d)
    dist_lut = _colormap_lut("viridis")
    maps_js = [{"id": "map-pred", "label": f"{label_pred} distances", "data": _quantise_upper(pred_d, 0.0, dmax),
                "vmin": 0.0, "vmax": dmax, "lut": "dist"}]
    png_maps = [(f"{label_pred} distances", pred_d, "viridis", 0.0, dmax)]
    if true_d is not None:
        diff = pred_d - true_d
        dclip = _diff_scale(diff)
        maps_js.append({"id": "map-true", "label": "true distances", "data": _quantise_upper(true_d, 0.0, dmax),
                        "vmin": 0.0, "vmax": dmax, "lut": "dist"})
        maps_js.append({"id": "map-diff", "label": f"difference ({label_pred} − true)",
                        "data": _quantise_upper(diff, -dclip, dclip), "vmin": -dclip, "vmax": dclip, "lut": "diff"})
        png_maps += [("true distances", true_d, "viridis", 0.0, dmax),
                     (f"{label_pred} − true", diff, "RdBu_r", -dclip, dclip)]

    series = []
    if conf is not None:
        series.append(("confidence", conf, "#1f77b4"))
    if plddt is not None:
        series.append(("lDDT × 100", plddt * 100.0, "#2ca02c"))

    data = {
        "n": n,
        "sequence": sequence,
        "labels": labels,
        "model": [[round(float(c), 3) for c in xyz] for xyz in model],
        "reference": None if reference is None else [[round(float(c), 3) for c in xyz] for xyz in reference],
        # A model is one chain by construction (its own steps may be long); a
        # reference has real chain breaks where residues are missing.
        "modelBonds": _bonds(model, residue_ids, math.inf),
        "referenceBonds": [] if reference is None else _bonds(reference, residue_ids, 4.6),
        "confidence": _nan_to_none(conf, 2),
        "lddt": _nan_to_none(None if plddt is None else plddt * 100.0, 2),
        "maps": maps_js,
        "luts": {"dist": dist_lut, "diff": _colormap_lut("RdBu_r")},
        "colours": {"model": MODEL_COLOUR, "reference": REFERENCE_COLOUR,
                    "bands": [[lo if math.isfinite(lo) else -1, c] for lo, c in CONFIDENCE_BANDS]},
    }

    info_rows = dict(info or {})
    info_rows.setdefault("residues", str(n))
    from distfold import __version__

    footer = (f"distfold {html.escape(__version__)} · "
              f"{_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} · "
              f"3D viewer: 3Dmol.js {html.escape(viewer_version())} (BSD-3-Clause, embedded)")
    colour_options = ['<option value="single">model / reference colours</option>']
    if conf is not None:
        colour_options.append('<option value="confidence">model by confidence</option>')
    if plddt is not None:
        colour_options.append('<option value="lddt">model by lDDT</option>')
    default_colour = "single" if reference is not None or conf is None else "confidence"
    page = _PAGE.format(
        title=html.escape(title),
        info="".join(f"<div><span class=\"muted\">{html.escape(str(k))}:</span> {html.escape(str(v))}</div>"
                     for k, v in info_rows.items()),
        csp=_CSP,
        css=_CSS,
        viewer_js=_viewer_js(),
        data=_script_json(data),
        colour_options="".join(colour_options),
        default_colour=default_colour,
        reference_toggle=('<label><input type="checkbox" id="show-ref" checked> show reference</label>'
                          if reference is not None else ""),
        legend=(f'<span class="model-swatch"><span class="swatch" style="background:{MODEL_COLOUR}"></span></span>model '
                + (f'<span class="swatch" style="background:{REFERENCE_COLOUR}"></span>reference' if reference is not None
                   else "")),
        per_residue=(_per_residue_svg(series, labels) if series
                     else '<p class="muted">No per-residue confidence or lDDT for this record.</p>'),
        table=_table_html(metrics),
        secondary=(f"<h2>Secondary structure</h2>\n{_ss_svg(ss_tracks, labels)}" if ss_tracks else ""),
        sequence=html.escape(sequence),
        footer=footer,
        licence=html.escape((ASSETS / "LICENSE").read_text(encoding="utf-8")),
        page_js=_page_js(),
    )
    pngs = (_write_pngs(path.with_suffix(""), png_maps, series, model, reference, title, data["modelBonds"],
                        data["referenceBonds"]) if write_png else [])
    with atomic_write(path, "w", encoding="utf-8") as fh:
        fh.write(page)
    return ReportFiles(path, pngs)


def comparison_report(html_path: str | os.PathLike, model_chain, ref_chain, result: Mapping[str, Any], *,
                      by_number: bool = False, predicted_distances=None, lddt_per_residue=None,
                      title: str | None = None, info: Mapping[str, Any] | None = None,
                      write_png: bool = True, secondary_structure: Mapping[str, str] | None = None) -> ReportFiles:
    """The page of one comparison (``distfold compare``, ``distfold evaluate``).

    model_chain, ref_chain: :class:`distfold.structure.io.Chain`.
    result: the dict ``distfold compare --json`` prints for this pair
        (:func:`distfold.structure.compare.compare_structures`); its scalars make the
        table, its ``lddt_per_residue`` (one per reference residue) the lDDT plot.
    The page covers the corresponding residues (the same correspondence as the
    scores: sequence alignment, residue numbers when ``by_number``, or the structural
    alignment when ``result["align"]`` is "structure"). The model
    is superposed onto the reference by Kabsch on those C-alphas (the RMSD
    superposition, a proper rotation). The model's B-factor column is shown as
    confidence when it holds values in 0-100 that are not all equal (distfold
    writes its predicted lDDT there).
    predicted_distances: optional (L_model, L_model) Å predicted matrix of the
        model's residues, shown instead of the model's own distances.
    lddt_per_residue: optional (L_ref,) in [0, 1], used instead of ``result``'s.
    secondary_structure: optional tracks over the reference's residues (name -> one
        character per residue of ``ref_chain``), drawn for the corresponding residues.
    """
    from distfold.geometry.superpose import apply, kabsch
    from distfold.structure.compare import result_correspondence

    corr = result_correspondence(model_chain, ref_chain, result, by_number)
    mi, ri = corr.model_index, corr.ref_index
    if len(ri) == 0:
        raise InputError("no residue of the model corresponds to the reference; no report written")
    x, y = model_chain.ca[mi], ref_chain.ca[ri]
    r, t = kabsch(x, y)
    x_sup = apply(x, r, t)
    per_res = result.get("lddt_per_residue") if lddt_per_residue is None else list(lddt_per_residue)
    plddt = None
    if per_res is not None and len(per_res) == len(ref_chain):
        plddt = np.array([np.nan if v is None else v for v in per_res], dtype=np.float64)[ri]
    conf = None
    bf = model_chain.bfactors
    if bf is not None and len(bf) == len(model_chain):
        b = np.asarray(bf, dtype=np.float64)[mi]
        if np.all((b >= 0) & (b <= 100)) and np.ptp(b) > 0:
            conf = b
    pred_d = None
    if predicted_distances is not None:
        full = np.asarray(predicted_distances, dtype=np.float64)
        if full.shape != (len(model_chain), len(model_chain)):
            raise InputError(f"predicted distances: expected ({len(model_chain)}, {len(model_chain)}) for the "
                             f"model's residues, got shape {full.shape}")
        pred_d = full[np.ix_(mi, mi)]
    how = {"residue_number": "residue number", "structure": "structural alignment, TM-align's algorithm"}.get(
        corr.method, "sequence alignment")
    rows = {
        "model": f"{Path(model_chain.source).name} chain {model_chain.chain_id}, {len(model_chain)} residues",
        "reference": f"{Path(ref_chain.source).name} chain {ref_chain.chain_id}, {len(ref_chain)} residues",
        "shown": f"{len(ri)} corresponding residues (by {how}, identity {corr.seq_identity:.3f})",
        "superposition": "Kabsch on the corresponding C-alphas (the RMSD superposition)",
    }
    if conf is not None:
        rows["confidence"] = "the model's B-factor column (0-100)"
    rows.update(info or {})
    return build_report(html_path, sequence="".join(ref_chain.sequence[k] for k in ri), model_coords=x_sup,
                        reference_coords=y, predicted_distances=pred_d, confidence=conf, lddt_per_residue=plddt,
                        metrics=result, residue_ids=[ref_chain.residue_ids[k] for k in ri],
                        predicted_label="predicted" if pred_d is not None else "model",
                        title=title or f"{Path(model_chain.source).name} vs {Path(ref_chain.source).name}",
                        info=rows, write_png=write_png,
                        secondary_structure={k: "".join(v[q] for q in ri) for k, v in (secondary_structure or {}).items()
                                             if len(v) == len(ref_chain)})


def compare_files_report(html_path: str | os.PathLike, model: str | os.PathLike, reference: str | os.PathLike,
                         result: Mapping[str, Any], chain: str | None = None, ref_chain: str | None = None,
                         by_number: bool = False, **kwargs) -> ReportFiles:
    """:func:`comparison_report` for two structure files (the arguments of ``distfold compare``)."""
    from distfold.structure.io import read_chain

    return comparison_report(html_path, read_chain(model, chain), read_chain(reference, ref_chain), result,
                             by_number=by_number, **kwargs)


def prediction_report(files: Mapping[str, str | os.PathLike], record_id: str,
                      html_path: str | os.PathLike | None = None, write_png: bool = True) -> ReportFiles:
    """The page of one ``distfold predict`` record, from its files (see
    :mod:`distfold.pipeline.predict`): ``files["structure"]`` (confidence in the
    B-factor column), ``files["distmat"]`` (``<id>.distmat.npy``) and
    ``files["scores"]`` (``<id>.scores.json``), as the batch's summary names them.
    Written to ``<id>.html`` beside the scores file unless ``html_path``; the table
    holds every scalar of the scores file (the sequence is shown below it instead)."""
    from distfold.structure.io import read_chain

    paths = {key: Path(files[key]) for key in ("structure", "distmat", "scores")}
    for key in ("structure", "distmat", "scores"):
        if not paths[key].is_file():
            raise InputError(f"{paths[key]}: missing; cannot write the report of record {record_id!r}")
    try:
        scores = json.loads(paths["scores"].read_text(encoding="utf-8"))
    except ValueError as exc:
        raise InputError(f"{paths['scores']}: not valid JSON ({exc})") from None
    chain = read_chain(paths["structure"])
    sequence = scores.get("sequence") or chain.sequence
    if len(chain) != len(sequence):
        raise InputError(f"{paths['structure']}: {len(chain)} residues, but the scores file's sequence has "
                         f"{len(sequence)}")
    conf = scores.get("confidence")
    confidence = (np.array([np.nan if c is None else c for c in conf], dtype=np.float64) if conf is not None
                  else None)
    distances = np.load(paths["distmat"], allow_pickle=False)
    metrics = {k: v for k, v in scores.items() if k not in ("sequence", "ss")}
    ss = scores.get("ss")
    info = {"record": record_id, "structure": paths["structure"].name}
    if scores.get("description"):
        info["description"] = scores["description"]
    return build_report(html_path or paths["scores"].parent / f"{record_id}.html", sequence=sequence,
                        model_coords=chain.ca,
                        predicted_distances=distances, confidence=confidence, metrics=metrics,
                        title=f"Prediction: {record_id}", info=info, write_png=write_png,
                        secondary_structure={"predicted": ss} if isinstance(ss, str) else None)


def write_prediction_reports(summary: Mapping[str, Any], log=None) -> dict[str, str]:
    """Pages for every record of a ``run_predict`` summary that has files
    (status ok or skipped; each record names its files, relative to
    ``summary["outdir"]``). Returns {record id: page file name, or
    "error: <message>" where the page could not be written}."""
    out: dict[str, str] = {}
    for rec in summary.get("records", []):
        if rec.get("status") not in ("ok", "skipped"):
            continue
        try:
            files = prediction_report({k: Path(summary["outdir"]) / name for k, name in rec["files"].items()},
                                      rec["id"])
        except InputError as exc:
            out[rec["id"]] = f"error: {exc}"
            if log:
                log(f"{rec['id']}  report FAILED: {exc}")
            continue
        out[rec["id"]] = files.html.name
        if log:
            log(f"{rec['id']}  report {files.html} ({files.size_bytes / 1e6:.1f} MB)")
    return out


#: Index columns of an evaluation (those present are shown).
EVALUATION_COLUMNS = ("length", "n_observed", "model.lddt", "model.tm_score", "model.rmsd", "model.gdt_ts",
                      "model.mae", "model.confidence", "model.hand_right", "prior.lddt", "prior.tm_score")


def write_evaluation_reports(report_dir: str | os.PathLike, metrics: Mapping[str, Any], log=None) -> ReportFiles:
    """Pages for every chain of a ``distfold evaluate`` run and an index linking them.

    Reads what evaluate wrote in ``report_dir``: ``structures/<id>.pdb`` (the
    model, confidence in the B-factor column) and ``structures/<id>.ref.pdb``
    (the observed reference residues, numbered by full-sequence position, so
    residues correspond by number). Each page's table is that chain's row of
    ``metrics.json`` (``metrics["chains"]``); its lDDT plot is the per-residue
    C-alpha lDDT of the model's coordinates. Writes ``pages/<id>.html`` (PNGs
    beside them) and ``index.html``; returns the index (``pngs`` empty).
    """
    from distfold.structure.metrics import distance_matrix, lddt
    from distfold.structure.io import read_chain

    report_dir = Path(report_dir)
    rows = []
    for chain in metrics.get("chains", []):
        cid = str(chain["id"])
        model_path = report_dir / "structures" / f"{cid}.pdb"
        ref_path = report_dir / "structures" / f"{cid}.ref.pdb"
        href = None
        try:
            m, r = read_chain(model_path), read_chain(ref_path)
            from distfold.structure.alignment import correspond

            corr = correspond(m, r, by_number=True)
            per_res = np.full(len(r), np.nan)
            if len(corr.ref_index):
                _, pr = lddt(distance_matrix(m.ca[corr.model_index]), distance_matrix(r.ca[corr.ref_index]))
                per_res[corr.ref_index] = pr
            ss = chain.get("ss") or {}
            tracks = {}  # over the reference's residues, numbered by full-sequence position
            for name, key in (("predicted", "model"), ("reference DSSP", "reference")):
                full = ss.get(key)
                if isinstance(full, str):
                    tracks[name] = "".join(full[num - 1] if 0 < num <= len(full) else "-"
                                           for num, *_ in r.residue_ids)
            shown = {k: ({k2: v2 for k2, v2 in v.items() if k2 not in ("model", "reference")} if k == "ss" else v)
                     for k, v in chain.items()}
            files = comparison_report(report_dir / "pages" / f"{cid}.html", m, r, shown, by_number=True,
                                      lddt_per_residue=per_res, title=f"{cid}: model vs reference",
                                      info={"lDDT plot": "per-residue C-alpha lDDT of the model's coordinates"},
                                      secondary_structure=tracks)
            href = f"pages/{files.html.name}"
            if log:
                log(f"{cid}  report {files.html}")
        except InputError as exc:
            if log:
                log(f"{cid}  report FAILED: {exc}")
        rows.append({"name": cid, "href": href, **chain})
    for f in metrics.get("failed") or []:  # chains evaluate could not score: listed, no page
        rows.append({"name": str(f.get("id")), "href": None, "length": f.get("length"), "error": f.get("error")})
    present = {k for row in rows for k, _ in flatten_metrics(row)}
    columns = [c for c in (*EVALUATION_COLUMNS, "error") if c in present]
    ds = metrics.get("dataset") or {}
    info = {"dataset": ds.get("path"), "split": ds.get("split"), "chains": len(rows),
            "model": (metrics.get("model") or {}).get("name")}
    links = [name for name in ("metrics.json", "per_chain.tsv", *((metrics.get("plots") or {}).values()))
             if name and (report_dir / name).is_file()]
    return build_index(report_dir / "index.html", rows, title=f"distfold evaluate: {ds.get('split', '')} split",
                       columns=columns, info={k: v for k, v in info.items() if v is not None}, links=links)


def build_index(path: str | os.PathLike, rows: Iterable[Mapping[str, Any]], *, title: str = "distfold evaluation",
                columns: Sequence[str] | None = None, info: Mapping[str, Any] | None = None,
                links: Sequence[str] = ()) -> ReportFiles:
    """Write an index page linking one report per record.

    rows: dicts with ``name`` (shown), ``href`` (link to the page, relative to
        the index; None = no page) and scalar metrics (shown in ``columns``, by
        default every scalar key of the first row except name/href; dotted keys
        reach into nested dicts).
    links: other files to link (relative paths), e.g. summary plots.
    """
    path = Path(path)
    rows = [dict(r) for r in rows]
    if columns is None:
        columns = [k for k, v in flatten_metrics(rows[0] if rows else {}) if k not in ("name", "href")]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ["record", *columns])
    body = []
    for r in rows:
        flat = dict(flatten_metrics(r))
        name = html.escape(str(r.get("name", "")))
        href = r.get("href")
        cell = f'<a href="{html.escape(str(href), quote=True)}">{name}</a>' if href else name
        tds = "".join(
            f'<td class="val" data-key="{html.escape(c, quote=True)}" data-value="{html.escape(json_value(flat.get(c)), quote=True)}">'
            f"{html.escape(format_value(flat[c]) if c in flat else '–')}</td>" for c in columns)
        body.append(f"<tr><td>{cell}</td>{tds}</tr>")
    info_html = "".join(f"<div><span class=\"muted\">{html.escape(str(k))}:</span> {html.escape(str(v))}</div>"
                        for k, v in (info or {}).items())
    if links:
        info_html += '<div><span class="muted">files:</span> ' + " · ".join(
            f'<a href="{html.escape(str(u), quote=True)}">{html.escape(str(u))}</a>' for u in links) + "</div>"
    page = _INDEX.format(title=html.escape(title), csp=_CSP, css=_CSS, info=info_html, head=head,
                         body="\n".join(body), n=len(rows))
    with atomic_write(path, "w", encoding="utf-8") as fh:
        fh.write(page)
    return ReportFiles(path)


# ---------------------------------------------------------------- templates

#: Nothing may be fetched: inline scripts/styles, data: images, blob: workers only.
_CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data: blob:; "
        "worker-src blob:; connect-src 'none'")

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1200px;padding:12px 20px;color:#222}
h1{font-size:1.4em;margin:.2em 0}h2{font-size:1.1em;margin:1.2em 0 .4em;border-bottom:1px solid #ddd}
.muted{color:#777}.row{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}
#viewer{width:640px;height:480px;position:relative;overflow:hidden;border:1px solid #ccc;background:#fff}
.controls{margin:6px 0;font-size:.9em}.controls label,.controls select{margin-right:12px}
.map{display:inline-block;margin-right:14px;vertical-align:top;font-size:.85em;text-align:center}
.map canvas{width:300px;height:300px;image-rendering:pixelated;border:1px solid #ccc;display:block}
.cbar{height:10px;width:300px;margin-top:3px}.cbar-labels{display:flex;justify-content:space-between;width:300px}
#hover{font-family:ui-monospace,monospace;font-size:.85em;min-height:1.3em}
table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}
td.val{font-family:ui-monospace,monospace}td.num{text-align:right}
.swatch{display:inline-block;width:12px;height:12px;margin:0 4px 0 10px;vertical-align:middle;border-radius:2px}
.legend{font-size:.85em}.tick{font-size:11px;fill:#555}
#selftest{display:none}pre.seq{white-space:pre-wrap;word-break:break-all;font-size:.8em}
footer{margin-top:2em;font-size:.8em;color:#777}
"""

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · distfold</title>
<style>{css}</style>
<script>
window.__distfoldErrors = [];
window.addEventListener("error", function (e) {{ window.__distfoldErrors.push(String(e.message || e)); }});
document.addEventListener("securitypolicyviolation", function (e) {{
  window.__distfoldErrors.push("CSP blocked " + e.blockedURI + " (" + e.violatedDirective + ")"); }});
</script>
<script>{viewer_js}</script>
</head>
<body>
<h1>{title}</h1>
<div class="info">{info}</div>

<h2>Structure</h2>
<div class="controls">
<label>colour <select id="colour-mode">{colour_options}</select></label>
{reference_toggle}
<span class="legend" id="viewer-legend">{legend}</span>
</div>
<div id="viewer" data-default-colour="{default_colour}"></div>
<div class="legend muted">C-alpha traces; drag to rotate, scroll to zoom, hover a residue for its label.
Confidence colours: <span class="swatch" style="background:#0053d6"></span>&ge;90
<span class="swatch" style="background:#65cbf3"></span>70-90 <span class="swatch" style="background:#ffdb13"></span>50-70
<span class="swatch" style="background:#ff7d45"></span>&lt;50</div>

<h2>Distance maps</h2>
<div id="maps"></div>
<div id="hover" class="muted">hover a map for residue pair and distance</div>

<h2>Per-residue confidence and lDDT</h2>
{per_residue}

<h2>Scores</h2>
{table}

{secondary}

<h2>Sequence</h2>
<pre class="seq">{sequence}</pre>

<footer>{footer}
<details><summary>3Dmol.js licence</summary><pre class="seq">{licence}</pre></details></footer>
<pre id="selftest">pending</pre>
<script type="application/json" id="distfold-data">{data}</script>
<script>{page_js}</script>
</body>
</html>
"""

_INDEX = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<title>{title} · distfold</title>
<style>{css}</style>
</head>
<body>
<h1>{title}</h1>
<div class="info">{info}</div>
<p class="muted">{n} records; each name links to its report page.</p>
<table id="index"><thead><tr>{head}</tr></thead>
<tbody>
{body}
</tbody></table>
</body>
</html>
"""
