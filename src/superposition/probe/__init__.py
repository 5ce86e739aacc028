"""The real-model half: MLP neuron activations of any Hugging Face transformer.

``ActivationProbe(model, layer=0).run(texts)`` returns :class:`Activations`;
``.stream(texts)`` returns :class:`StreamingStatistics` for corpora too large to hold;
``.capture(texts)`` yields :class:`Captured` batches at any site of a block, the one seam
every consumer reads.
"""

from superposition.probe.activations import Activations
from superposition.probe.batching import Batch
from superposition.probe.capture import Capture, Captured
from superposition.probe.corpus import DEFAULT_CORPUS, Corpus, default_corpus, load_corpus
from superposition.probe.locate import ARCHITECTURES, MLPSite, locate_mlp, n_layers
from superposition.probe.models import DEFAULT_MODEL, load_model
from superposition.probe.probe import ActivationProbe
from superposition.probe.sites import (
    MLP_PATHS,
    SITES,
    Site,
    SitePoint,
    locate_sites,
    parse_hook_name,
)
from superposition.probe.streaming import StreamingStatistics
from superposition.probe.texts import PAPER_TEXTS

__all__ = [
    "ARCHITECTURES",
    "DEFAULT_CORPUS",
    "DEFAULT_MODEL",
    "MLP_PATHS",
    "PAPER_TEXTS",
    "SITES",
    "ActivationProbe",
    "Activations",
    "Batch",
    "Capture",
    "Captured",
    "Corpus",
    "MLPSite",
    "Site",
    "SitePoint",
    "StreamingStatistics",
    "default_corpus",
    "load_corpus",
    "load_model",
    "locate_mlp",
    "locate_sites",
    "n_layers",
    "parse_hook_name",
]
