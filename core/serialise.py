"""The one converter from numpy (and torch) values to plain JSON.

Every JSON file and ``--json`` output of distfold goes through :func:`jsonable`,
so they agree on the rules: numpy scalars become Python numbers, arrays and
tuples become lists, dict keys become strings, and non-finite floats (NaN,
inf) become ``null`` so the output is strict JSON. Imports nothing heavy.
"""

from __future__ import annotations

import json
import math
from pathlib import PurePath
from typing import IO, Any


def jsonable(obj: Any) -> Any:
    """A copy of ``obj`` made of dict, list, str, int, float (finite), bool and None."""
    if obj is None or isinstance(obj, (bool, str, int)):
        return obj
    if isinstance(obj, float):  # numpy.float64 included: it subclasses float
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, PurePath):
        return str(obj)
    tolist = getattr(obj, "tolist", None)  # numpy scalars and arrays, torch tensors
    if tolist is not None:
        if hasattr(obj, "detach"):
            obj = obj.detach().cpu()
        return jsonable(tolist())
    item = getattr(obj, "item", None)
    if item is not None:
        return jsonable(item())
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def dumps(obj: Any, indent: int | None = 2) -> str:
    """``json.dumps`` of :func:`jsonable` (obj), keys sorted."""
    return json.dumps(jsonable(obj), indent=indent, sort_keys=True, allow_nan=False)


def dump(obj: Any, fh: IO[str], indent: int | None = 2) -> None:
    """Write :func:`dumps` (obj) and a newline to an open text file."""
    fh.write(dumps(obj, indent))
    fh.write("\n")
