"""Reproducing the seed paper: the experiments (:mod:`~superposition.report.reproduce`) and the
report page they write (:mod:`~superposition.report.html`)."""

from superposition.report.reproduce import (
    ReproduceConfig,
    analyse,
    phase_losses,
    reproduce,
    summary,
)

__all__ = ["ReproduceConfig", "analyse", "phase_losses", "reproduce", "summary"]
