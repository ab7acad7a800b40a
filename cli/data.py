"""``distfold data``: build and inspect training datasets (format: distfold.data.dataset)."""

from __future__ import annotations

from pathlib import Path

import click

from distfold.cli.common import echo_json, log, wrap_errors
from distfold.machine import usable_cores


@click.group()
def data() -> None:
    """Build and inspect training datasets."""


def _default_workers() -> int:
    return min(2, usable_cores())


@data.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(path_type=Path),
              help="Dataset directory to write.")
@click.option("--min-length", default=30, show_default=True, type=click.IntRange(min=1),
              help="Minimum number of residues with C-alpha coordinates.")
@click.option("--max-unknown", default=0.1, show_default=True, type=click.FloatRange(0, 1),
              help="Maximum share of unknown (X) residues in the sequence.")
@click.option("--identity", default=0.3, show_default=True, type=click.FloatRange(0, 1, min_open=True),
              help="Sequence identity (identical aligned positions / shorter length) that links two chains "
                   "into one family.")
@click.option("--max-evalue", default=1e-5, show_default=True, type=click.FloatRange(min=0),
              help="Also require a local-alignment E-value (BLOSUM62, 11/1) at most this for two chains to be "
                   "related; keeps short chains from joining families by chance.")
@click.option("--val-fraction", default=0.1, show_default=True, type=click.FloatRange(0, 1),
              help="Share of chains put in the val split (whole families).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the family split.")
@click.option("--workers", default=None, type=click.IntRange(min=1),
              help="Parallel processes for parsing and alignment [default: min(2, CPU count)].")
@click.option("--exclude", "exclude_file", default=None, type=click.Path(path_type=Path),
              help="Text file of ids (file stems, or stem_chain) to skip; reported as skipped.")
@click.option("--split-by-dir", is_flag=True,
              help="A chain under a folder named train or val keeps that split (families still computed).")
@click.option("--cluster", type=click.Choice(["auto", "mmseqs", "builtin"]), default="auto", show_default=True,
              help="Family search: MMseqs2 (the mmseqs binary, Debian package mmseqs2), the built-in 3-mer "
                   "prefilter + alignments, or auto (MMseqs2 when mmseqs is on PATH). Same rule either way; "
                   "the choice and MMseqs2's version go into dataset.json.")
@click.option("--json", "as_json", is_flag=True, help="Print the build summary as JSON.")
@wrap_errors
def build(inputs, out_dir, min_length, max_unknown, identity, max_evalue, val_fraction, seed, workers, exclude_file,
          split_by_dir, cluster, as_json) -> None:
    """Build a dataset from structure files or directories (PDB/mmCIF, optionally gzipped).

    One sample per protein chain, first model only; unobserved residues are masked (NaN), never
    interpolated. Files that fail to parse are reported in OUTPUT/report.tsv and skipped.
    """
    from distfold.data.build import BuildOptions, build_dataset, read_exclude

    opts = BuildOptions(min_length=min_length, max_unknown=max_unknown, identity=identity,
                        val_fraction=val_fraction, seed=seed, workers=workers or _default_workers(),
                        split_by_dir=split_by_dir, max_evalue=max_evalue, cluster=cluster,
                        exclude=read_exclude(exclude_file) if exclude_file else frozenset())
    result = build_dataset(inputs, out_dir, opts, log=lambda m: log(m, quiet=as_json))
    st = result.stats
    counts: dict[str, int] = {}
    for r in result.records:
        counts[r["split"]] = counts.get(r["split"], 0) + 1
    summary = {"path": str(out_dir), "files": st["files"], "files_failed": st["files_failed"],
               "skipped": st["skipped"], "chains": st["chains"], "splits": counts,
               "families": len({r["family"] for r in result.records}),
               "families_across_splits": st["families_across_splits"], "clustering": st["clustering"],
               "seconds": st["build_seconds"]}
    if as_json:
        echo_json(summary)
        return
    failed = [row for row in result.report if row[3] == "failed"]
    for row in failed[:10]:
        log(f"failed: {row[0]}: {row[4]}")
    if len(failed) > 10:
        log(f"... {len(failed) - 10} more failed files in {out_dir / 'report.tsv'}")
    if st["families_across_splits"]:
        log(f"warning: {st['families_across_splits']} families (identity >= {identity}) have chains in both train "
            f"and val (split taken from folders); listed in dataset.json")
    click.echo(f"{out_dir}: {st['chains']} chains ({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))}), "
               f"{summary['families']} families from {st['files']} files; {st['files_failed']} files failed, "
               f"{st['skipped']} chains/files skipped (see report.tsv); {st['build_seconds']} s")


@data.command()
@click.argument("dataset_dir", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
@wrap_errors
def info(dataset_dir, as_json) -> None:
    """Counts of a dataset by split, family and length."""
    from distfold.data.build import dataset_info
    from distfold.data.dataset import Dataset

    inf = dataset_info(Dataset(dataset_dir))
    if as_json:
        echo_json(inf)
        return
    click.echo(f"{inf['path']} (format v{inf['format_version']}, fingerprint {inf['fingerprint'][:12]})")
    bins = list(inf["splits"]["all"]["length_bins"])
    click.echo(f"{'split':<6} {'chains':>6} {'families':>8} {'singletons':>10} {'masked':>6} {'breaks':>6}  "
               + " ".join(f"{b:>7}" for b in bins) + "  largest families")
    for name, s in inf["splits"].items():
        click.echo(f"{name:<6} {s['chains']:>6} {s['families']:>8} {s['singleton_families']:>10} "
                   f"{s['chains_with_masked_residues']:>6} {s['chains_with_breaks']:>6}  "
                   + " ".join(f"{s['length_bins'][b]:>7}" for b in bins)
                   + "  " + ", ".join(map(str, s["largest_families"])))
    if inf["families_across_splits"]:
        click.echo(f"warning: {inf['families_across_splits']} families have chains in more than one split")
