"""The toy-model half: sparse synthetic features, batched toy models and their training."""

from superposition.toy.data import FiniteFeatureDataset, SparseFeatureDataset
from superposition.toy.model import ToyModel
from superposition.toy.train import TrainConfig, TrainHistory

__all__ = [
    "FiniteFeatureDataset",
    "SparseFeatureDataset",
    "ToyModel",
    "TrainConfig",
    "TrainHistory",
]
