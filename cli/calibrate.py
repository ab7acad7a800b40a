"""``distfold calibrate``: fit a model's confidence calibration on a held-out split."""

from __future__ import annotations

import click

from distfold.cli.common import echo_json, log, wrap_errors


@click.command()
@click.argument("dataset_dir", type=click.Path(file_okay=False))
@click.option("--model", "model_dir", required=True, type=click.Path(file_okay=False),
              help="Model directory; its config.json gains (or replaces) confidence_calibration.")
@click.option("--split", default="val", show_default=True,
              help="Held-out split to fit on (the one that selected the model; never a test set).")
@click.option("--max-length", type=click.IntRange(min=1), default=256, show_default=True,
              help="Only chains with at most this many residues.")
@click.option("--dry-run", is_flag=True, help="Fit and report, but leave the model unchanged.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True, help="CPU threads.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout; no log lines.")
@wrap_errors
def calibrate(dataset_dir, model_dir, split, max_length, dry_run, threads, as_json):
    """Fit the map from raw to calibrated confidence on DATASET_DIR's split.

    The raw confidence is the lDDT the head's per-pair error distributions
    expect, so it runs high or low as far as those distributions are off. This
    fits a monotone map from it to the observed per-residue C-alpha lDDT of the
    predicted distances (isotonic regression) and stores the map in the model's
    config.json; `predict` and `evaluate` then report calibrated confidence.
    The report gives the raw and the cross-fitted error (families split in two
    halves, each scored by the map fitted on the other).
    """
    import json
    from pathlib import Path

    from distfold.data.dataset import Dataset
    from distfold.errors import DistfoldError, InputError
    from distfold.fileio import atomic_write
    from distfold.pipeline.calibration import CONFIG_KEY, fit_model_calibration
    from distfold.pipeline.model import CONFIG_NAME
    from distfold.pipeline.predict import cpu_threads
    from distfold.pipeline.predictor import Predictor
    from distfold.serialise import dump

    dataset = Dataset(dataset_dir)
    if split not in set(r.get("split") for r in dataset.records):
        raise InputError(f"{dataset_dir}: no chains in split {split!r}")
    with cpu_threads(threads):
        predictor = Predictor.load(model_dir, reconstructor=None)  # distances and raw confidence only
        try:
            stored, report = fit_model_calibration(predictor, dataset, split, max_length,
                                                   log=lambda m: log(m, as_json))
        except ValueError as exc:
            raise DistfoldError(f"{model_dir}: {exc}") from None
    if not dry_run:
        cfg_path = Path(model_dir) / CONFIG_NAME
        config = json.loads(cfg_path.read_text())
        config[CONFIG_KEY] = stored
        with atomic_write(cfg_path) as fh:
            dump(config, fh)
    report["written"] = None if dry_run else str(Path(model_dir) / CONFIG_NAME)
    for warning in report.get("warnings", []):
        click.echo(f"Warning: {warning}", err=True)  # under --json too: stderr, not a log line
    if as_json:
        echo_json(report)
        return
    cross = report["mae_cross_fitted"]
    click.echo(f"{report['n_chains']} {split} chains, {report['n_residues']} residues")
    click.echo(f"mean confidence raw {report['mean_raw']:.1f}, calibrated {report['mean_calibrated']:.1f}; "
               f"observed lDDT {report['mean_observed']:.1f}")
    click.echo(f"per-residue |confidence - observed|: raw {report['mae_raw']:.1f}, cross-fitted "
               + ("n/a" if cross is None else f"{cross:.1f}"))
    click.echo("calibration written to " + report["written"] if not dry_run else "dry run: model unchanged")
