"""The kinds of sparse autoencoder, one file each, behind one registry keyed by ``kind=``.

A kind (:class:`~superposition.sae.kinds.base.SAEKind`) holds everything that differs between
SAEs: its hyperparameters and their checks, its encode rule, its hand-written gradient and
penalty, its loss on dead latents, and any parameters of its own. Adding a kind is one file
here and its name in :data:`REGISTRY` (and in the :data:`Kind` type beside it).

Examples:
    >>> kind_class("topk").create(d_in=4, d_sae=8, k=2)
    TopK(k=2)
    >>> kind_class("gelu")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: kind must be one of ('topk', 'batchtopk', ...), got 'gelu'
"""

from __future__ import annotations

from typing import Any, Literal, cast

from superposition.sae.kinds.base import SAEKind
from superposition.sae.kinds.batchtopk import BatchTopK
from superposition.sae.kinds.jumprelu import JumpReLU
from superposition.sae.kinds.matryoshka import Matryoshka
from superposition.sae.kinds.relu import ReLU
from superposition.sae.kinds.topk import TopK

__all__ = ["KINDS", "REGISTRY", "Kind", "SAEKind", "build", "kind_class"]

Kind = Literal["topk", "batchtopk", "jumprelu", "relu", "matryoshka"]
REGISTRY: dict[str, type[SAEKind]] = {
    cls.name: cls for cls in (TopK, BatchTopK, JumpReLU, ReLU, Matryoshka)
}
KINDS: tuple[Kind, ...] = cast("tuple[Kind, ...]", tuple(REGISTRY))


def kind_class(kind: object) -> type[SAEKind]:
    """The class registered as ``kind``, or a ValueError listing the kinds there are."""
    try:
        return REGISTRY[cast(str, kind)]
    except (KeyError, TypeError):
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}") from None


def build(kind: object, d_in: int, d_sae: int, options: dict[str, Any]) -> SAEKind:
    """The kind ``kind`` with the hyperparameters in ``options`` (``None``: not passed),
    refusing one that another kind takes but this one does not.

    Examples:
        >>> build("relu", 4, 8, {"k": 2})
        Traceback (most recent call last):
        ...
        ValueError: k only applies to kind='topk' or 'batchtopk' or 'matryoshka', not 'relu'
    """
    cls = kind_class(kind)
    takes = cls.hyperparameters()
    for name, value in options.items():
        if value is None or name in takes:
            continue
        users = [n for n, c in REGISTRY.items() if name in c.hyperparameters()]
        if not users:
            raise TypeError(
                f"SparseAutoencoder got an unexpected keyword argument {name!r}; kind={kind!r} "
                f"takes {takes or 'no hyperparameters'}"
            )
        raise ValueError(
            f"{name} only applies to kind={' or '.join(map(repr, users))}, not {kind!r}"
        )
    return cls.create(d_in, d_sae, **{name: options.get(name) for name in takes})
