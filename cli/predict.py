"""``distfold predict``: structures from sequences."""

from __future__ import annotations

import os

import click

from distfold.cli.common import ComponentName, echo_json, log, wrap_errors


@click.command()
@click.argument("sequence", required=False)
@click.option("-i", "--input", "fasta", type=click.Path(dir_okay=False, allow_dash=True),
              help="FASTA file of sequences ('-' reads standard input).")
@click.option("-o", "--outdir", required=True, type=click.Path(file_okay=False),
              help="Output folder: <id>.pdb|cif, <id>.distmat.npy, <id>.contacts.tsv, <id>.scores.json per record.")
@click.option("--model", "model_dir", metavar="NAME|DIR",
              help="An installed model's name (see `distfold models`) or a checkpoint directory (default: the "
                   "shipped model, `default`).")
@click.option("--backbone", type=ComponentName("backbone"), default=None,
              help="Use the installed model built on this backbone (the one marked default among several); with "
                   "--model, the model must be built on it.")
@click.option("--head", type=ComponentName("distance_head"), default=None,
              help="Like --backbone, for the distance head.")
@click.option("--normaliser", type=ComponentName("normaliser"), default=None,
              help="Like --backbone, for the normaliser.")
@click.option("--reconstruct", type=ComponentName("reconstructor"), default="smacof", show_default=True,
              help="Reconstructor: any installed one (see `distfold plugins`).")
@click.option("--format", "fmt", type=click.Choice(["pdb", "cif"]), default="pdb", show_default=True,
              help="Structure file format.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Where the model runs (auto: CUDA when available).")
@click.option("--max-length", type=click.IntRange(min=1), default=None,
              help="Fail records longer than this (default: whatever the available memory allows).")
@click.option("--window", type=click.IntRange(min=2), default=None,
              help="Residues per prediction window for longer chains (default: the model's training crop).")
@click.option("--stride", type=click.IntRange(min=1), default=None,
              help="Residues between window starts (default: half the window).")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="CPU threads per process, for every pool (torch, BLAS, OpenMP; those loaded during the run "
                   "too). The default keeps the files "
                   "identical however a run is split over processes (torchrun); more threads can change the "
                   "last bits of float results.")
@click.option("--overwrite", is_flag=True,
              help="Redo every record (default: skip records already done with the same sequence, model, "
                   "reconstructor and options; recompute the others).")
@click.option("--html", "html", is_flag=True,
              help="Also write <id>.html per record: a self-contained page (3D model coloured by confidence, "
                   "predicted distance map, confidence along the sequence, scores) that opens offline, with "
                   "<id>.*.png plots beside it.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout; no log lines.")
@click.pass_context
@wrap_errors
def predict(ctx, sequence, fasta, outdir, model_dir, reconstruct, fmt, device, max_length, window, stride,
            threads, overwrite, html, as_json, backbone=None, head=None, normaliser=None):
    """Predict C-alpha structures from SEQUENCE (id `query`) or a FASTA file.

    Writes, per record, the structure with per-residue confidence (predicted
    lDDT, 0-100) in the B-factor column, the predicted distance matrix
    (<id>.distmat.npy, Å), the C-alpha contacts with their probabilities
    (<id>.contacts.tsv: |i-j| >= 6, P(distance < 8 Å) >= 0.05, at most 5 L
    pairs, most probable first) and <id>.scores.json (written last; it marks a
    complete record). A model that predicts secondary structure also writes it:
    ss and ss_probs in the scores, HELIX/SHEET records (mmCIF struct_conf,
    struct_sheet_range) in the structure. Records run shortest first with one log line each on
    stderr; a failing record is reported and the others continue (exit code 1
    if any failed). A record already done from the same sequence, model,
    reconstructor and options is skipped unless --overwrite, so a rerun
    resumes an interrupted batch; one done otherwise is recomputed, and the
    log says why.

    Model: --model NAME (an installed model, `distfold models`) or DIR (a
    checkpoint folder; ./NAME when a folder and a model share the name);
    --backbone/--head/--normaliser alone pick the installed model built from
    them (among several, the one marked default); the shipped model otherwise.

    Sequences: case-insensitive, whitespace ignored, the 20 standard letters
    and X; U->C, O->K, B/Z/J->X; anything else is rejected with its position.

    Data-parallel: `torchrun --nproc-per-node N -m distfold predict ...`
    shares the length-sorted records among N processes (records[rank::N]);
    each waits for the others before it exits, so a failed record in one
    share never stops another.
    """
    from distfold.errors import UsageError

    if (sequence is None) == (fasta is None):
        raise UsageError("give either a SEQUENCE argument or -i FASTA (exactly one)")
    from distfold.pipeline.models import select_model
    from distfold.pipeline.predict import cpu_threads, run_predict, wait_for_other_ranks
    from distfold.serialise import dumps
    from distfold.structure.sequence import parse_fasta, query_record

    if sequence is not None and os.path.isfile(sequence):
        raise UsageError(f"SEQUENCE {sequence!r} is a file; read a FASTA file with -i {sequence}")
    model_dir = select_model(model_dir, backbone, head, normaliser)  # a name, a folder, or None: the shipped model
    records = [query_record(sequence)] if sequence is not None else parse_fasta(fasta)
    with cpu_threads(threads):
        summary = run_predict(records, outdir, model_dir=model_dir, reconstruct=reconstruct, fmt=fmt,
                              device=device, overwrite=overwrite, max_length=max_length,
                              log=lambda m: log(m, quiet=as_json), window=window, stride=stride)
    failed = [r for r in summary["records"] if r["status"] == "failed"]
    if html:  # pages from the records' files (ok and skipped records)
        from distfold.report.html import write_prediction_reports

        pages = write_prediction_reports(summary, log=lambda m: log(m, quiet=as_json))
        for r in summary["records"]:
            if r["id"] in pages:
                r["html"] = pages[r["id"]]
    bad_pages = [r for r in summary["records"] if str(r.get("html", "")).startswith("error: ")]
    if as_json:
        if summary["world_size"] > 1:  # one line per process, so that outputs of ranks do not interleave
            click.echo(dumps(summary, indent=None))
        else:
            echo_json(summary)
    else:
        c = summary["counts"]
        share = f" (rank {summary['rank']} of {summary['world_size']})" if summary["world_size"] > 1 else ""
        click.echo(f"{c['ok']} predicted, {c['skipped']} skipped, {c['failed']} failed of "
                   f"{sum(c.values())} records{share} -> {summary['outdir']}")
        for r in failed:
            click.echo(f"failed: {r['id']}: {r['error']}")
        for r in bad_pages:
            click.echo(f"failed: {r['id']}: report: {r['html'][len('error: '):]}")
    # under torchrun, wait for the other processes: a non-zero exit would make torchrun stop them
    wait_for_other_ranks(summary["world_size"], log=lambda m: log(m, quiet=as_json),
                         prefix=f"[rank {summary['rank']}/{summary['world_size']}] ")
    if failed or bad_pages:
        ctx.exit(1)
