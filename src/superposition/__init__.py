"""superposition: toy models of superposition and MLP-neuron probes for Hugging Face models."""

from superposition import metrics, plot
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
    edit_neurons,
)
from superposition.toy import FiniteFeatureDataset, SparseFeatureDataset, ToyModel

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
    "ToyModel",
    "__version__",
    "default_corpus",
    "edit_neurons",
    "load_corpus",
    "load_model",
    "metrics",
    "plot",
]
