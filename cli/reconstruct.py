"""``distfold reconstruct``: a distance matrix file -> a C-alpha trace."""

from __future__ import annotations

import os
import time
from pathlib import Path

import click

from distfold.cli.common import ComponentName, echo_json, log, wrap_errors


@click.command()
@click.argument("distmat", type=click.Path(path_type=Path))
@click.option("-o", "--output", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Output structure file (C-alpha only, chain A).")
@click.option("--method", type=ComponentName("reconstructor"), default="smacof", show_default=True,
              help="Reconstructor: any installed one (see `distfold plugins`).")
@click.option("--weights", type=click.Path(path_type=Path),
              help="Per-pair weights, (L, L) .npy or text, >= 0 (0 ignores the pair).")
@click.option("--sequence", help="Residue names: a sequence (one letter per row) or a FASTA file with one record.")
@click.option("--breaks", "breaks_spec", metavar="LIST|FILE",
              help="Chain breaks: residue numbers i (1-based, as in the output file) after which the chain "
                   "is broken, so residues i and i+1 get no virtual bond; comma-separated (e.g. 57,130) or a "
                   "text file of such numbers. Only reconstructors with a bond term (refine) take it; refine "
                   "also finds breaks the distances show (a consecutive distance far from 3.8 A).")
@click.option("--format", "fmt", type=click.Choice(["pdb", "cif"]), default=None,
              help="Structure format (default: from the output suffix, .cif/.mmcif -> cif, else pdb).")
@click.option("--json", "as_json", is_flag=True, help="Print the diagnostics as JSON on stdout; no log lines.")
@wrap_errors
def reconstruct(distmat: Path, out: Path, method: str, weights: Path | None, sequence: str | None,
                breaks_spec: str | None, fmt: str | None, as_json: bool) -> None:
    """Rebuild C-alpha coordinates from DISTMAT, an (L, L) distance matrix in
    angstrom (.npy, or whitespace-separated text; .gz allowed for text).

    A pair whose weight is 0 is ignored, and only there may its distance be
    nan/inf. Small asymmetry (within 1e-3 A + 0.1 %) is averaged away; larger
    asymmetry, negative or non-finite distances are errors. The hand is chosen
    from the C-alpha virtual angles and pseudo-torsions (a log-likelihood ratio
    learned from real chains); the summary says the decision (right, mirrored or
    uncertain) and its margin, and says NOT CONVERGED when the reconstructor
    stopped before converging.
    """
    from distfold.geometry.distmat import load_matrix
    from distfold.geometry.reconstruct import reconstruct as run_reconstructor
    from distfold.registry import get_registry
    from distfold.structure.io import write_ca_trace

    d = load_matrix(distmat, "distance matrix")
    w = load_matrix(weights, "weight matrix") if weights is not None else None
    n = d.shape[0]
    if w is not None and w.shape != d.shape:
        from distfold.errors import InputError

        raise InputError(f"{weights}: weight matrix shape {w.shape} does not match distance matrix {d.shape}")
    seq = _sequence(sequence, n) if sequence is not None else None
    params = {}
    if breaks_spec is not None:
        import inspect

        from distfold.errors import UsageError

        factory = get_registry().load("reconstructor", method)
        if "breaks" not in inspect.signature(factory).parameters:
            raise UsageError(f"--breaks: reconstructor {method!r} has no bond term to leave out "
                             "(refine has one)")
        params["breaks"] = _breaks(breaks_spec, n)
    rec = get_registry().create("reconstructor", method, **params)
    if w is not None and not getattr(rec, "accepts_weights", False):
        from distfold.errors import UsageError

        raise UsageError(f"--weights: reconstructor {method!r} does not take per-pair weights")
    # the core checks the matrix once (the same one-line errors for every reconstructor,
    # third-party ones included), runs the reconstructor and chooses the hand
    start = time.perf_counter()
    result = _run(run_reconstructor, rec, d, w, distmat, weights)
    log(f"reconstructed {n} residues from {distmat} with {method} in {time.perf_counter() - start:.2f} s",
        quiet=as_json)
    coords = result.coords
    try:
        write_ca_trace(out, coords, seq, fmt=fmt)
    except OSError as exc:
        from distfold.errors import DistfoldError

        raise DistfoldError(f"{out}: cannot write ({exc.strerror or exc})") from None
    diag = dict(result.diagnostics)
    if as_json:
        echo_json({"input": str(distmat), "output": str(out), "method": method, "length": n,
                   "config": rec.get_config() if hasattr(rec, "get_config") else None, "diagnostics": diag})
        return
    parts = [f"{k}={_fmt(diag[k])}" for k in ("stress1", "iterations", "converged", "mirrored",
                                               "handedness_margin") if k in diag]
    hand = diag.get("handedness")
    if isinstance(hand, dict) and "decision" in hand:
        parts.append(f"hand={hand['decision']}")
    if diag.get("unbonded_pairs"):
        parts.append(f"unbonded_pairs={len(diag['unbonded_pairs'])}")
    line = f"{out}\t{n} residues\t{method}\t" + " ".join(parts)
    if diag.get("converged") is False:
        why = "; ".join(str(w) for w in diag.get("warnings") or []) or "the reconstructor stopped before converging"
        line += f"\tNOT CONVERGED: {why}"
    click.echo(line)


def _run(func, rec, d, w, distmat: Path, weights: Path | None):
    """func(rec, d, w); input errors name the files they came from."""
    from distfold.errors import InputError

    try:
        return func(rec, d, w)
    except InputError as exc:
        msg = str(exc)
        if msg.startswith("weights:") and weights is not None:
            raise InputError(f"{weights}: {msg.split(':', 1)[1].strip()}") from None
        if msg.startswith("distance matrix:"):
            raise InputError(f"{distmat}: {msg.split(':', 1)[1].strip()}") from None
        raise InputError(f"{distmat}: {msg}") from None


def _sequence(value: str, n: int) -> str:
    """The residue letters of --sequence (a sequence or a one-record FASTA file), length-checked."""
    from distfold.errors import InputError
    from distfold.structure.sequence import clean_sequence, parse_fasta

    if os.path.isfile(value):
        records = parse_fasta(value)
        if len(records) != 1:
            raise InputError(f"{value}: expected one FASTA record for --sequence, found {len(records)}")
        rec = records[0]
        if rec.sequence is None:
            raise InputError(rec.error or f"{value}: invalid sequence")
        seq, name = rec.sequence, value
    else:
        seq, name = clean_sequence(value, "--sequence"), "--sequence"
    if len(seq) != n:
        raise InputError(f"{name}: sequence has {len(seq)} residues but the distance matrix has {n}")
    return seq


def _breaks(value: str, n: int) -> list[int]:
    """--breaks (1-based residue numbers, a list or a file of them) -> 0-based pair indices, checked."""
    import re

    from distfold.errors import InputError

    name = "--breaks"
    text = value
    if os.path.isfile(value):
        name = value
        try:
            text = Path(value).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{value}: cannot read ({exc})") from None
    tokens = [t for t in re.split(r"[\s,;]+", text.strip()) if t]
    out = []
    for t in tokens:
        try:
            i = int(t)
        except ValueError:
            raise InputError(f"{name}: {t!r} is not a residue number") from None
        if not 1 <= i <= n - 1:
            raise InputError(f"{name}: residue {i} has no next residue to be unbonded from "
                             f"(a break follows a residue 1..{n - 1} of {n})")
        out.append(i - 1)
    return sorted(set(out))


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
