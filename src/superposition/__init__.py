"""superposition: toy models of superposition and MLP-neuron probes for Hugging Face models."""

from superposition import metrics, plot
from superposition.toy import SparseFeatureDataset, ToyModel

__version__ = "0.1.0.dev0"

__all__ = ["SparseFeatureDataset", "ToyModel", "__version__", "metrics", "plot"]
