"""Units over the MLP neurons of a layer (neurons, SAE latents, null rotations), what makes each
one fire, and how polysemantic it is."""

from superposition.units.basis import BasisKind, UnitBasis
from superposition.units.collect import collect_units
from superposition.units.records import HIST_EDGES, Context, UnitStatistics, context_rows
from superposition.units.scores import SCORE_DOCS, UnitTable, context_embedder, score_units

__all__ = [
    "HIST_EDGES",
    "SCORE_DOCS",
    "BasisKind",
    "Context",
    "UnitBasis",
    "UnitStatistics",
    "UnitTable",
    "collect_units",
    "context_embedder",
    "context_rows",
    "score_units",
]
