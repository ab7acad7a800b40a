"""``distfold compare``: score model structures against reference structures."""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path

import click

from distfold.cli.common import echo_json, log
from distfold.errors import DistfoldError

STRUCTURE_RE = re.compile(r"\.(pdb|ent|cif|mmcif)(\.gz)?$", re.IGNORECASE)
PROGRESS_MIN_PAIRS = 10

LABELS = {
    "rmsd": ("RMSD", "{:.3f} Å"),
    "tm_score": ("TM-score", "{:.4f}"),
    "tm_score_mirror": ("TM-score of mirror image", "{:.4f}"),
    "gdt_ts": ("GDT-TS", "{:.2f}"),
    "gdt_ha": ("GDT-HA", "{:.2f}"),
    "lddt": ("lDDT (C-alpha)", "{:.4f}"),
    "coverage": ("Coverage of the reference", "{:.3f}"),
    "distance_mae": ("Distance MAE", "{:.3f} Å"),
    "distance_rmse": ("Distance RMSE", "{:.3f} Å"),
    "distance_pearson": ("Distance Pearson r", "{:.4f}"),
    "contact_precision_l5": ("C-alpha contact precision L/5", "{:.4f}"),
}

#: Columns of the tab-separated table (TM-align -outfmt 2 spirit: header line starting with #).
TSV_COLUMNS = ("model", "reference", "status", "model_chain", "ref_chain", "model_length", "ref_length",
               "n_aligned", "seq_identity", "coverage", "align", "pairing_status", "rmsd", "tm_score", "tm_score_mirror", "gdt_ts", "gdt_ha", "lddt",
               "distance_mae", "distance_rmse", "distance_pearson", "contact_precision_l5", "error")


def stem(path: Path) -> str:
    """File name without .gz and the structure suffix: ``x.pdb.gz`` -> ``x``."""
    return STRUCTURE_RE.sub("", path.name)


def structure_files(folder: Path) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and not p.name.startswith(".") and STRUCTURE_RE.search(p.name):
            out.setdefault(stem(p), []).append(p)
    return out


def _clean(value):
    """JSON/TSV-safe: NaN -> None, numpy scalars -> Python."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return _clean(value.item())
    return value


def _score(model: Path, reference: Path, chain, ref_chain, by_number, keep_going: bool = False,
           align: str = "sequence", force_pairing: bool = False) -> dict:
    """One pair's result; a bad input (a meaningless pairing included) becomes status
    "error". With ``keep_going`` (folder mode) any failure does, so that one pair
    cannot stop the others."""
    from distfold.structure.compare import compare_files

    try:
        res = compare_files(model, reference, chain, ref_chain, by_number, align, force_pairing)
    except DistfoldError as exc:
        return {"status": "error", "error": str(exc), "model": str(model), "reference": str(reference)}
    except Exception as exc:  # noqa: BLE001 - folder mode reports and goes on
        if not keep_going:
            raise
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return {"status": "error", "error": f"internal error ({type(exc).__name__}: {msg}); please report it",
                "model": str(model), "reference": str(reference)}
    out = {k: _clean(v) for k, v in res.items()}
    out["pairing"] = {k: _clean(v) for k, v in res["pairing"].items()}
    out["pairing_status"] = out["pairing"]["status"]
    return out


def _tsv_value(v) -> str:
    if v is None:
        return "NA"
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v).replace("\t", " ").replace("\n", " ")


def _row_text(r: dict, c: str) -> str:
    if c == "error":
        return _tsv_value(r.get("error", "")) if r.get("error") else ""
    if c not in r:
        return "NA"
    return _tsv_value(r[c])


def tsv_table(rows: list[dict]) -> str:
    lines = ["#" + "\t".join(TSV_COLUMNS)]
    lines += ["\t".join(_row_text(r, c) for c in TSV_COLUMNS) for r in rows]
    return "\n".join(lines) + "\n"


def _chain_label(chain_id: str) -> str:
    return chain_id if chain_id.strip() else repr(chain_id)


HOW = {"residue_number": "residue number", "alignment": "sequence alignment",
       "structure": "structural alignment (TM-align's algorithm, sequence-independent)"}


def readable(res: dict) -> str:
    how = HOW.get(res["correspondence"], res["correspondence"])
    pairing = res.get("pairing") or {}
    lines = [
        f"Model      {res['model']}  chain {_chain_label(res['model_chain'])}  {res['model_length']} residues",
        f"Reference  {res['reference']}  chain {_chain_label(res['ref_chain'])}  {res['ref_length']} residues",
        f"Aligned    {res['n_aligned']} residues by {how}, sequence identity {res['seq_identity']:.3f}, "
        f"{res['coverage']:.1%} of the reference",
    ]
    if pairing.get("status", "ok") != "ok":
        lines.append(f"Pairing    {pairing['status']}: {pairing['reason']}")
    lines.append("")
    width = max(len(label) for label, _ in LABELS.values())
    for key, (label, fmt) in LABELS.items():
        v = res.get(key)
        lines.append(f"{label:<{width}}  {'NA' if v is None else fmt.format(v)}")
    if res.get("align") == "structure":
        lines += ["", "TM-score and GDT are normalised by the reference length, on the residue pairs of",
                  "the structural alignment (TM-align's answer); lDDT counts reference residues the",
                  "model lacks as not preserved; contacts are C-alpha < 8 Å, |i-j| >= 24, top L/5."]
    else:
        lines += ["", "TM-score and GDT are normalised by the reference length, with the residue",
                  "correspondence fixed (TM-score program, not TM-align: --align structure for that);",
                  "lDDT counts reference residues the model lacks as not preserved; contacts are",
                  "C-alpha < 8 Å, |i-j| >= 24, top L/5 by model distance."]
    return "\n".join(lines)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("reference", type=click.Path(path_type=Path))
@click.option("--chain", default=None, help="Model chain id (default: the first protein chain).")
@click.option("--ref-chain", default=None, help="Reference chain id (default: the first protein chain).")
@click.option("--by-number", is_flag=True,
              help="Pair residues by residue number instead of global sequence alignment (also the way to score "
                   "a model without a sequence whose numbering you know matches).")
@click.option("--align", "align", type=click.Choice(["sequence", "structure"]), default="sequence",
              show_default=True,
              help="sequence: residues paired by sequence (the TM-score program's fixed correspondence; for models "
                   "of the same protein). structure: TM-align's sequence-independent structural alignment of the "
                   "C-alpha traces (homologues, different constructs, models without a sequence).")
@click.option("--force-pairing", is_flag=True,
              help="Score even a pairing judged meaningless (a chain without a sequence paired by number without "
                   "--by-number, or a sequence alignment no better than chance); it is still reported as such.")
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False),
              help="Write the tab-separated table to this file.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (status 'ok' or 'error').")
@click.option("--html", "html", type=click.Path(path_type=Path),
              help="Also write a self-contained report page (superposed traces in a 3D viewer, distance maps, "
                   "per-residue lDDT, the scores of --json) that opens offline, with PNG plots beside it. "
                   "With two folders: a folder, one page per pair plus index.html.")
def compare(model: Path, reference: Path, chain, ref_chain, by_number, align, force_pairing, output, as_json,
            html) -> None:
    """Score MODEL against REFERENCE (PDB or mmCIF, plain or .gz), on C-alpha atoms.

    Metrics: RMSD (Å, optimal proper superposition), TM-score (normalised by the
    reference length, residue correspondence fixed), TM-score of the model's mirror
    image, GDT-TS, GDT-HA, C-alpha lDDT (reference residues the model lacks count as
    not preserved) and the coverage of the reference, distance-map MAE / RMSE /
    Pearson, and C-alpha contact precision (< 8 Å, |i-j| >= 24, top L/5).

    Residue pairing: by sequence alignment (default), by residue number
    (--by-number) or by structural alignment (--align structure). A weak pairing
    (low identity, little of the reference paired, an alignment score close to
    chance) is scored with a warning on stderr and under "pairing" in --json; a
    meaningless one (a chain without a sequence and no --by-number, or an alignment
    no better than shuffled sequences) is refused with exit code 1 unless
    --force-pairing.

    With two folders, files are paired by name (the suffixes .pdb, .cif, .ent,
    .mmcif and .gz stripped) and one tab-separated row is written per pair; a pair
    that fails gets status 'error' and the others go on. Exit code 1 when an input
    cannot be scored (in folder mode: when no pair could be scored).
    """
    if model.is_dir() != reference.is_dir() and model.exists() and reference.exists():
        raise click.UsageError("give two structure files or two folders, not one of each")
    if model.is_dir() and reference.is_dir():
        sys.exit(_compare_folders(model, reference, chain, ref_chain, by_number, output, as_json, html, align,
                                  force_pairing))
    res = _score(model, reference, chain, ref_chain, by_number, align=align, force_pairing=force_pairing)
    if res.get("warning"):
        click.echo(f"Warning: {res['warning']}", err=True)
    if output is not None:
        _write(output, tsv_table([res]))
    if html is not None and res["status"] == "ok":
        _report(html, model, reference, res, chain, ref_chain, by_number, as_json)
    if as_json:
        echo_json(res)
    elif res["status"] == "ok":
        click.echo(readable(res))
    if res["status"] != "ok":
        if not as_json:
            click.echo(f"Error: {res['error']}", err=True)
        sys.exit(1)


def _write(path: Path, text: str) -> None:
    from distfold.errors import InputError
    from distfold.fileio import atomic_write

    try:
        with atomic_write(path, "w") as fh:
            fh.write(text)
    except OSError as exc:
        raise click.ClickException(str(InputError(f"{path}: cannot write ({exc.strerror or exc})")))


def _report(html: Path, model: Path, reference: Path, res: dict, chain, ref_chain, by_number, as_json) -> str:
    """Write the report page of one scored pair; returns its path."""
    from distfold.errors import InputError
    from distfold.report.html import compare_files_report

    try:
        files = compare_files_report(html, model, reference, res, chain, ref_chain, by_number)
    except OSError as exc:
        raise click.ClickException(str(InputError(f"{html}: cannot write ({exc.strerror or exc})")))
    except DistfoldError as exc:
        raise click.ClickException(str(exc))
    log(f"wrote {files.html} ({files.size_bytes / 1e6:.1f} MB) and {len(files.pngs)} PNG plots", as_json)
    return str(files.html)


def _compare_folders(model_dir: Path, ref_dir: Path, chain, ref_chain, by_number, output, as_json,
                     html=None, align: str = "sequence", force_pairing: bool = False) -> int:
    models, refs = structure_files(model_dir), structure_files(ref_dir)
    results: dict[str, dict] = {}
    pairs = []
    for name in sorted(set(models) | set(refs)):
        m, r = models.get(name, []), refs.get(name, [])
        first_m, first_r = (str(m[0]) if m else ""), (str(r[0]) if r else "")
        if len(m) > 1 or len(r) > 1:
            dup = m if len(m) > 1 else r
            results[name] = {"model": first_m, "reference": first_r, "status": "error",
                             "error": f"{len(dup)} files named {name!r}: {', '.join(p.name for p in dup)}"}
        elif not m or not r:
            missing = "reference" if m else "model"
            results[name] = {"model": first_m, "reference": first_r, "status": "unpaired",
                             "error": f"no {missing} file named {name!r}"}
        else:
            pairs.append((name, m[0], r[0]))
    if not pairs:
        raise click.ClickException(f"no structure files with the same name in {model_dir} and {ref_dir}")
    if not as_json and len(pairs) >= PROGRESS_MIN_PAIRS:
        with click.progressbar(pairs, label="Comparing", file=sys.stderr, show_pos=True) as bar:
            for name, m, r in bar:
                results[name] = _score(m, r, chain, ref_chain, by_number, keep_going=True, align=align,
                                   force_pairing=force_pairing)
    else:
        for name, m, r in pairs:
            results[name] = _score(m, r, chain, ref_chain, by_number, keep_going=True, align=align,
                                   force_pairing=force_pairing)
    ordered = [results[name] for name in sorted(results)]
    n_ok = sum(r["status"] == "ok" for r in ordered)
    n_err = sum(r["status"] == "error" for r in ordered)
    n_unpaired = sum(r["status"] == "unpaired" for r in ordered)
    if as_json:
        echo_json({"status": "ok" if n_ok else "error", "n_pairs": len(pairs), "n_ok": n_ok, "n_error": n_err,
                   "n_unpaired": n_unpaired, "rows": ordered})
    else:
        table = tsv_table(ordered)
        if output is None:
            click.echo(table, nl=False)
        log(f"{n_ok} of {len(pairs)} pairs scored, {n_err} failed, {n_unpaired} without a partner")
        for r in ordered:
            if r["status"] != "ok":
                log(f"  {r['status']}: {Path(r['model'] or r['reference']).name}: {r.get('error', '')}")
    for r in ordered:  # weak pairings are said on stderr in every mode, as for a single pair
        if r.get("warning"):
            click.echo(f"Warning: {Path(r['model']).name}: {r['warning']}", err=True)
    if output is not None:
        _write(output, tsv_table(ordered))
        log(f"wrote {output}", as_json)
    if html is not None:  # one page per scored pair, linked from an index
        from distfold.report.html import build_index

        index_rows = []
        for name in sorted(results):
            r = results[name]
            href = None
            if r["status"] == "ok":
                try:
                    _report(html / f"{name}.html", Path(r["model"]), Path(r["reference"]), r, chain, ref_chain,
                            by_number, as_json)
                    href = f"{name}.html"
                except click.ClickException as exc:  # one page that fails does not stop the others
                    log(f"  report of {name} not written: {exc.message}", as_json)
            index_rows.append({"name": name, "href": href, "status": r["status"],
                               **{k: r.get(k) for k in LABELS}})
        index = build_index(html / "index.html", index_rows, title=f"distfold compare: {model_dir} vs {ref_dir}")
        log(f"wrote {index.html}", as_json)
    return 0 if n_ok else 1
