"""Small helpers every part of the report shares."""

from __future__ import annotations

import math

from torch import Tensor


def _r(x: float | Tensor, digits: int = 4) -> float:
    """A JSON-friendly rounded float (rounding makes same-seed runs compare equal on disk)."""
    v = float(x)
    return v if math.isinf(v) or math.isnan(v) else round(v, digits)


def _dpi(quick: bool) -> int:
    """Resolution of the report's PNGs: lower for ``--quick``."""
    return 60 if quick else 100
