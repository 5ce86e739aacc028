"""Reproducing the seed paper: the experiments (:mod:`~superposition.report.reproduce` runs
them with a :class:`~superposition.report.config.ReproduceConfig`; one module per section:
:mod:`~superposition.report.section5` with its analyses and verdicts in
:mod:`~superposition.report.real`, :mod:`~superposition.report.double_descent`,
:mod:`~superposition.report.units`) and the report page they write
(:mod:`~superposition.report.html`)."""

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
