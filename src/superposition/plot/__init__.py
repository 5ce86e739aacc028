"""Figures of both halves: toy-model geometry and the seed paper's neuron plots (Figures 4–7).

Every function takes plain tensors (or NumPy arrays), validates them before drawing, computes
its numbers with :mod:`superposition.metrics` (the single home of every formula) and returns a
:class:`matplotlib.figure.Figure`. Functions that draw one panel take ``ax=`` to draw into an
existing :class:`~matplotlib.axes.Axes` instead, and then return that axes' figure.

Figures are built with :class:`matplotlib.figure.Figure` directly, never through ``pyplot``: no
global state, nothing to close, no GUI backend needed. Matplotlib is imported inside the
functions, so ``import superposition`` stays light.

:class:`ToyModelPlots` and :class:`ActivationPlots` are the fluent accessors behind
``model.plot`` and ``acts.plot``; they only need the duck types :class:`ToyModelLike` and
:class:`ActivationsLike`, so this package never imports the toy or probe code.

Layout: :mod:`~superposition.plot.toy` (toy models), :mod:`~superposition.plot.neurons`
(real-model neurons, the seed paper's Figures 4–7), :mod:`~superposition.plot.sae`
(dictionary learning), :mod:`~superposition.plot.memorization` (memorization and double
descent), :mod:`~superposition.plot.units` (neurons vs SAE latents vs nulls); everything is
re-exported here.
"""

from superposition.plot._common import save_figure
from superposition.plot.memorization import (
    dimensionality_curve,
    loss_curve,
    memorization_geometry,
)
from superposition.plot.neurons import (
    ActivationPlots,
    ActivationsLike,
    activation_sums,
    cosine_heatmap,
    cosine_histogram,
    distance_heatmap,
    distance_histogram,
    neuron_traces,
)
from superposition.plot.sae import (
    SAELike,
    SAEPlots,
    latent_density,
    matched_cosines,
    training_curves,
)
from superposition.plot.toy import (
    DIMENSION_FRACTIONS,
    PHASE_NAMES,
    ToyModelLike,
    ToyModelPlots,
    classify_phase,
    feature_directions,
    feature_geometry,
    phase_diagram,
    toy_weights,
)
from superposition.plot.units import TableLike, score_distributions

__all__ = [
    "DIMENSION_FRACTIONS",
    "PHASE_NAMES",
    "ActivationPlots",
    "ActivationsLike",
    "SAELike",
    "SAEPlots",
    "TableLike",
    "ToyModelLike",
    "ToyModelPlots",
    "activation_sums",
    "classify_phase",
    "cosine_heatmap",
    "cosine_histogram",
    "dimensionality_curve",
    "distance_heatmap",
    "distance_histogram",
    "feature_directions",
    "feature_geometry",
    "latent_density",
    "loss_curve",
    "matched_cosines",
    "memorization_geometry",
    "neuron_traces",
    "phase_diagram",
    "save_figure",
    "score_distributions",
    "toy_weights",
    "training_curves",
]
