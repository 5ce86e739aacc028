"""Dictionary learning: sparse autoencoders and the ground truth to check them against."""

from superposition.sae.model import KINDS, Kind, SAEMetrics, SparseAutoencoder
from superposition.sae.synthetic import SyntheticFeatures
from superposition.sae.train import FitConfig, FitHistory

__all__ = [
    "KINDS",
    "FitConfig",
    "FitHistory",
    "Kind",
    "SAEMetrics",
    "SparseAutoencoder",
    "SyntheticFeatures",
]
