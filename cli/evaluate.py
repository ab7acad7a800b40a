"""``distfold evaluate``: score a model on a dataset split, beside the separation prior."""

from __future__ import annotations

import click

from distfold.cli.common import ComponentName, echo_json, log, wrap_errors


@click.command()
@click.argument("dataset_dir", type=click.Path(file_okay=False))
@click.option("--model", "model_dir", metavar="NAME|DIR",
              help="An installed model's name (see `distfold models`) or a checkpoint directory (default: the "
                   "shipped model).")
@click.option("--split", default="val", show_default=True, help="Dataset split to score.")
@click.option("--reconstruct", type=ComponentName("reconstructor"), default="smacof", show_default=True,
              help="Reconstructor: any installed one (see `distfold plugins`).")
@click.option("--max-length", type=click.IntRange(min=1), default=None,
              help="Only chains with at most this many residues.")
@click.option("--no-prior", is_flag=True, help="Do not fit and score the separation prior.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Where the model runs.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="CPU threads for the model, reconstruction and scoring (1: the same numbers as predict's default).")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Processes for the reconstructions and scores of the chains, each with --threads threads, "
                   "beside the model's (default: one per core, at most 4; 1: all in one process). The "
                   "numbers are the same for any count.")
@click.option("-o", "--outdir", "report_dir", required=True, type=click.Path(file_okay=False),
              help="Report folder: metrics.json, per_chain.tsv, PNG plots, structures/.")
@click.option("--html", "html", is_flag=True,
              help="Also write index.html linking one self-contained report page per chain (pages/<id>.html: "
                   "superposed traces in a 3D viewer, distance maps, per-residue confidence and lDDT, the "
                   "chain's scores from metrics.json).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout; no log lines.")
@click.pass_context
@wrap_errors
def evaluate(ctx, dataset_dir, model_dir, split, reconstruct, max_length, no_prior, device, threads, workers,
             report_dir, html, as_json):
    """Score a model on DATASET_DIR's split (default val) beside the separation prior.

    Before reconstruction: distance MAE, RMSE, Pearson, C-alpha lDDT, C-alpha
    contact precision. After it: RMSD, TM-score, GDT-TS and handedness
    (tm_score > tm_score of the mirror image), residue-matched as in
    `distfold compare`. Masked residues are excluded. The prior is fitted on
    the dataset's train split. Contact precision of the top L/5, L/2 and L
    pairs by range (short 6-11, medium 12-23, long 24+), for model and prior;
    where the dataset has DSSP labels, Q3, per-class precision/recall and SOV
    of the model's secondary structure beside two baselines fitted on the train
    split (majority class, one-hot window classifier). Writes metrics.json
    (mean and median, by length bin), per_chain.tsv, plots (distance maps, error histogram, error by
    separation, calibration, training curves) and structures/<id>.pdb with
    structures/<id>.ref.pdb. A chain that cannot be evaluated (e.g. too long
    for the available memory) is reported and left out; the exit code is then 1.
    """
    from distfold.pipeline.evaluate import evaluate as run
    from distfold.pipeline.evaluate_jobs import default_workers
    from distfold.pipeline.models import select_model
    from distfold.pipeline.predict import cpu_threads
    from distfold.report.plots import evaluation_plots

    model_dir = select_model(model_dir)  # an installed model's name, a folder, or None (the shipped model)
    with cpu_threads(threads):
        metrics = run(dataset_dir, report_dir, model_dir=model_dir, split=split, reconstruct=reconstruct,
                      max_length=max_length, device=device, with_prior=not no_prior, log=lambda m: log(m, as_json),
                      plot=evaluation_plots, workers=workers or default_workers(), worker_threads=threads)
    if html:
        from distfold.report.html import write_evaluation_reports

        index = write_evaluation_reports(report_dir, metrics, log=lambda m: log(m, as_json))
        log(f"index of the report pages: {index.html}", as_json)
    if as_json:
        echo_json({k: v for k, v in metrics.items() if k != "chains"})
    else:
        click.echo(format_table(metrics))
        for f in metrics["failed"]:
            click.echo(f"failed: {f['id']} (L={f['length']}): {f['error']}")
        click.echo(f"report: {report_dir}")
    if metrics["failed"]:
        ctx.exit(1)


ROWS = (("distance MAE (Å)", "mae"), ("distance RMSE (Å)", "rmse"), ("Pearson r", "pearson"),
        ("C-alpha lDDT", "lddt"), ("contact precision (CA<8, L/5, |i-j|>=24)", "contact_precision"),
        ("RMSD (Å)", "rmsd"), ("TM-score", "tm_score"), ("GDT-TS", "gdt_ts"), ("hand right (fraction)", "hand_right")) + tuple(
    (f"contact precision {r} ({sep}), top {k}", f"contact_{r}_{k.replace('/', '')}")
    for r, sep in (("short", "6-11"), ("medium", "12-23"), ("long", "24+")) for k in ("L/5", "L/2", "L"))


def format_table(metrics: dict) -> str:
    """The overall summary as a small text table (mean / median per method)."""
    allb = metrics["summary"]["all"]
    methods = [m for m in ("model", "prior") if m in allb]
    head = f"{metrics['dataset']['split']} split, {allb['n_chains']} chains"
    if metrics["dataset"].get("max_length"):
        head += f" (<= {metrics['dataset']['max_length']} residues)"
    lines = [head, f"{'metric':<44}" + "".join(f"{m + ' mean / median':>24}" for m in methods)]

    def cell(stats):
        if not stats or stats.get("mean") is None:
            return f"{'n/a':>24}"
        return f"{stats['mean']:>13.3f} / {stats['median']:<8.3f}"

    for label, key in ROWS:
        lines.append(f"{label:<44}" + "".join(cell(allb[m].get(key)) for m in methods))
    hand = "".join(
        f"{'n/a' if allb[m]['hand_right_where_tm_ge_0.25']['fraction'] is None else format(allb[m]['hand_right_where_tm_ge_0.25']['fraction'], '.3f')}"
        f" of {allb[m]['hand_right_where_tm_ge_0.25']['n']:<8}".rjust(24) for m in methods)
    lines.append(f"{'hand right where TM-score >= 0.25':<44}" + hand)
    lines += format_ss_table(metrics.get("secondary_structure"))
    return "\n".join(lines)


def format_ss_table(ss: dict | None) -> list[str]:
    """Lines of the secondary-structure scores (pooled over residues and segments) per
    predictor: the model (when it predicts SS) and the two baselines; [] without labels."""
    methods = [m for m in ("model", "majority", "window") if ss and m in ss]
    if not methods:
        return []
    lines = ["", f"secondary structure vs DSSP ({ss['n_chains']} chains, {ss['n_residues']} labelled residues, pooled)",
             f"{'metric':<44}" + "".join(f"{m:>14}" for m in methods)]

    def num(v):
        return f"{'n/a':>14}" if v is None else f"{v:>14.3f}"

    lines.append(f"{'Q3':<44}" + "".join(num(ss[m]["q3"]) for m in methods))
    lines.append(f"{'SOV (SOV99, fraction)':<44}" + "".join(num(ss[m]["sov"]) for m in methods))
    for state in "HEC":
        for what in ("precision", "recall"):
            lines.append(f"{state + ' ' + what:<44}" + "".join(num(ss[m]["per_class"][state][what]) for m in methods))
    return lines
