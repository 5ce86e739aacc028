"""Reproducing the seed paper: the experiments (:mod:`~superposition.report.reproduce` runs
them, :mod:`~superposition.report.real` holds section 5's analyses and verdicts) and the report
page they write (:mod:`~superposition.report.html`)."""

from superposition.report.config import ReproduceConfig
from superposition.report.real import VERDICTS, analyse, share_below, subsampled_share
from superposition.report.reproduce import phase_losses, reproduce, summary

__all__ = [
    "VERDICTS",
    "ReproduceConfig",
    "analyse",
    "phase_losses",
    "reproduce",
    "share_below",
    "subsampled_share",
    "summary",
]
