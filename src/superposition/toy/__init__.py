"""The toy-model half: sparse synthetic features, batched toy models and their training."""

from superposition.toy.data import SparseFeatureDataset
from superposition.toy.model import ToyModel
from superposition.toy.train import TrainConfig, TrainHistory

__all__ = ["SparseFeatureDataset", "ToyModel", "TrainConfig", "TrainHistory"]
