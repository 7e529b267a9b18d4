"""Error types and helpers shared across the kit (clear, early errors)."""

from __future__ import annotations

import difflib


class LfakitError(Exception):
    """Base class for errors the kit raises on bad input."""


class ParameterError(LfakitError, ValueError):
    """A parameter is unknown, of the wrong type or out of range."""


class DataError(LfakitError, ValueError):
    """A data folder is missing, in the wrong layout, or holds corrupt files."""


class TrainingError(LfakitError, RuntimeError):
    """Training cannot go on (e.g. the loss became NaN or inf)."""


def close_matches(name: str, choices, n: int = 3) -> str:
    """Return ' Did you mean: a, b?' for the closest choices, or '' when none is close."""
    hits = difflib.get_close_matches(str(name), [str(c) for c in choices], n=n, cutoff=0.6)
    return f" Did you mean: {', '.join(repr(h) for h in hits)}?" if hits else ""
