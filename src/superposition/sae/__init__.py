"""Dictionary learning: sparse autoencoders, the ground truth to check them against, and
interventions at the sites they are trained on."""

from superposition.sae.config import FitConfig, FitHistory
from superposition.sae.corpus_evaluation import CorpusEvaluation, evaluate_on_corpus
from superposition.sae.edit import edit, edit_neurons
from superposition.sae.ground_truth import TruthMetrics, evaluate_on_truth
from superposition.sae.model import KINDS, Kind, SAEMetrics, SparseAutoencoder
from superposition.sae.plan import (
    CorpusSplit,
    count_tokens,
    split_corpus,
    store_buffer_rows,
    store_epochs,
)
from superposition.sae.store import ActivationStore
from superposition.sae.synthbench import Hierarchy, SynthBench
from superposition.sae.synthetic import SyntheticFeatures, SyntheticMLP
from superposition.sae.transcoder import Transcoder

__all__ = [
    "KINDS",
    "ActivationStore",
    "CorpusEvaluation",
    "CorpusSplit",
    "FitConfig",
    "FitHistory",
    "Hierarchy",
    "Kind",
    "SAEMetrics",
    "SparseAutoencoder",
    "SynthBench",
    "SyntheticFeatures",
    "SyntheticMLP",
    "Transcoder",
    "TruthMetrics",
    "count_tokens",
    "edit",
    "edit_neurons",
    "evaluate_on_corpus",
    "evaluate_on_truth",
    "split_corpus",
    "store_buffer_rows",
    "store_epochs",
]
