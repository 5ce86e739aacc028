"""Pure functions on tensors: the single home of every formula in the library.

One module per family; every public name is re-exported here, so ``sp.metrics.X`` and
``from superposition.metrics import X`` work whichever module ``X`` lives in.

- :mod:`~superposition.metrics.geometry`: toy-model geometry, ``W: [..., n_hidden, n_features]``
  (feature norms, interference, feature and data dimensionality, the ``n = 2, m = 1`` phase).
- :mod:`~superposition.metrics.moments`: per-neuron statistics of ``X: [tokens, neurons]`` and
  the mergeable moments and co-moments a streaming accumulator keeps.
- :mod:`~superposition.metrics.similarity`: cosine similarity and distance between neurons,
  from activations, a Gram matrix or a co-moment.
- :mod:`~superposition.metrics.recovery`: learned directions against true ones (MMCS, the
  Hungarian matching, MCC, each learned direction's best match and their uniqueness) and a
  reconstruction's FVU.
- :mod:`~superposition.metrics.detection`: SAE latents as detectors of their matched
  ground-truth feature (per-latent precision, recall, F1, accuracy; SynthSAEBench).
- :mod:`~superposition.metrics.feature_absorption`: feature absorption on a known hierarchy
  (full absorption rate and absorption fraction).
- :mod:`~superposition.metrics.scores`: per-unit polysemanticity scores from top contexts.
- :mod:`~superposition.metrics.bootstrap`: a median with its percentile bootstrap interval.

Every function validates its input with :func:`check_tensor` and raises :class:`ValueError`
naming the argument, the expected shape and what arrived.
"""

from superposition.metrics._common import check_tensor
from superposition.metrics.bootstrap import bootstrap_median, resampled_medians
from superposition.metrics.detection import DetectionScores, detection_counts, detection_scores
from superposition.metrics.feature_absorption import Absorption, absorption
from superposition.metrics.geometry import (
    PHASE_NAMES,
    classify_phase,
    data_dimensionality,
    dimensions_per_feature,
    feature_dimensionality,
    feature_norms,
    interference,
)
from superposition.metrics.moments import (
    NeuronStatistics,
    accumulate_comoment,
    activation_frequency,
    activation_kurtosis,
    activation_mean,
    activation_variance,
    block_moments,
    central_moments,
    merge_comoments,
    merge_moments,
    neuron_statistics,
    statistics_from_moments,
)
from superposition.metrics.recovery import (
    best_matches,
    fraction_of_variance_unexplained,
    match_directions,
    matched_cosines,
    mean_correlation_coefficient,
    mean_max_cosine_similarity,
    uniqueness,
)
from superposition.metrics.scores import category_spread, context_coherence, token_diversity
from superposition.metrics.similarity import (
    cosine_distance,
    cosine_similarity,
    cosine_similarity_from_comoment,
    cosine_similarity_from_gram,
    share_below,
)

__all__ = [
    "PHASE_NAMES",
    "Absorption",
    "DetectionScores",
    "NeuronStatistics",
    "absorption",
    "accumulate_comoment",
    "activation_frequency",
    "activation_kurtosis",
    "activation_mean",
    "activation_variance",
    "best_matches",
    "block_moments",
    "bootstrap_median",
    "category_spread",
    "central_moments",
    "check_tensor",
    "classify_phase",
    "context_coherence",
    "cosine_distance",
    "cosine_similarity",
    "cosine_similarity_from_comoment",
    "cosine_similarity_from_gram",
    "data_dimensionality",
    "detection_counts",
    "detection_scores",
    "dimensions_per_feature",
    "feature_dimensionality",
    "feature_norms",
    "fraction_of_variance_unexplained",
    "interference",
    "match_directions",
    "matched_cosines",
    "mean_correlation_coefficient",
    "mean_max_cosine_similarity",
    "merge_comoments",
    "merge_moments",
    "neuron_statistics",
    "resampled_medians",
    "share_below",
    "statistics_from_moments",
    "token_diversity",
    "uniqueness",
]
