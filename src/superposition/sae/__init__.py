"""Dictionary learning: sparse autoencoders, the ground truth to check them against, and
interventions on the neurons they are trained on."""

from superposition.sae.config import FitConfig, FitHistory
from superposition.sae.edit import edit_neurons
from superposition.sae.model import KINDS, Kind, SAEMetrics, SparseAutoencoder
from superposition.sae.store import ActivationStore
from superposition.sae.synthetic import SyntheticFeatures

__all__ = [
    "KINDS",
    "ActivationStore",
    "FitConfig",
    "FitHistory",
    "Kind",
    "SAEMetrics",
    "SparseAutoencoder",
    "SyntheticFeatures",
    "edit_neurons",
]
