"""superposition: toy models of superposition and MLP-neuron probes for Hugging Face models."""

from superposition import distributed, metrics, plot, units
from superposition.explorer import explore
from superposition.probe import (
    PAPER_TEXTS,
    ActivationProbe,
    Activations,
    Corpus,
    StreamingStatistics,
    default_corpus,
    load_corpus,
    load_model,
)
from superposition.sae import (
    ActivationStore,
    SAEMetrics,
    SparseAutoencoder,
    SyntheticFeatures,
    SyntheticMLP,
    Transcoder,
    edit,
    edit_neurons,
)
from superposition.toy import FiniteFeatureDataset, SparseFeatureDataset, ToyModel
from superposition.units import (
    UnitBasis,
    UnitStatistics,
    UnitTable,
    collect_units,
    context_embedder,
    score_units,
)

__version__ = "0.1.0.dev0"

__all__ = [
    "PAPER_TEXTS",
    "ActivationProbe",
    "ActivationStore",
    "Activations",
    "Corpus",
    "FiniteFeatureDataset",
    "SAEMetrics",
    "SparseAutoencoder",
    "SparseFeatureDataset",
    "StreamingStatistics",
    "SyntheticFeatures",
    "SyntheticMLP",
    "ToyModel",
    "Transcoder",
    "UnitBasis",
    "UnitStatistics",
    "UnitTable",
    "__version__",
    "collect_units",
    "context_embedder",
    "default_corpus",
    "distributed",
    "edit",
    "edit_neurons",
    "explore",
    "load_corpus",
    "load_model",
    "metrics",
    "plot",
    "score_units",
    "units",
]
