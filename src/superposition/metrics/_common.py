"""What every metric module shares: the input check and the tolerances it relies on."""

from __future__ import annotations

import torch
from torch import Tensor

from superposition._checks import all_finite

__all__ = ["check_tensor"]


# Squared norms below this count as zero: a column (feature or neuron) that is numerically
# absent gets a defined value instead of a division by ~0.
_TINY = 1e-12

# The shapes the messages name for toy weights and for activations.
_W_DOC = "[..., n_hidden, n_features]"
_X_DOC = "[tokens, neurons]"


def check_tensor(
    x: object, name: str, min_ndim: int, shape_doc: str, *, exact: bool = False
) -> Tensor:
    """``x`` itself if it is a finite floating-point tensor of at least ``min_ndim`` dimensions.

    The input check of every metric, public so that other rooms (the plots) word their
    refusals alike: a :class:`TypeError` for a non-tensor, a :class:`ValueError` naming
    ``name``, the expected ``shape_doc`` and what arrived for a wrong shape, an integer dtype
    or a NaN/inf.

    Args:
        x: the value to check.
        name: the argument's name, for the message.
        min_ndim: the fewest dimensions allowed (exactly this many with ``exact=True``).
        shape_doc: the expected shape as the message shows it, e.g. ``"[tokens, neurons]"``.
        exact: require exactly ``min_ndim`` dimensions.

    Returns:
        ``x``, unchanged.

    Examples:
        >>> import torch
        >>> check_tensor(torch.ones(2, 3), "X", 2, "[tokens, neurons]").shape
        torch.Size([2, 3])
        >>> check_tensor(torch.ones(3), "X", 2, "[tokens, neurons]")
        Traceback (most recent call last):
        ...
        ValueError: X must have shape [tokens, neurons] (at least 2 dimensions), got shape (3,)
    """
    if not isinstance(x, Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor of shape {shape_doc}, got {type(x).__name__}; "
            f"convert it with torch.as_tensor({name}, dtype=torch.float32)"
        )
    if (x.ndim != min_ndim) if exact else (x.ndim < min_ndim):
        need = f"exactly {min_ndim}" if exact else f"at least {min_ndim}"
        raise ValueError(
            f"{name} must have shape {shape_doc} ({need} dimensions), got shape {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise ValueError(
            f"{name} must be a floating-point tensor of shape {shape_doc}, got dtype {x.dtype}; "
            f"use {name}.float()"
        )
    if not all_finite(x):
        raise ValueError(
            f"{name} must be finite, got NaN or inf in a tensor of shape {tuple(x.shape)}"
        )
    return x


def _check_count(count: object, name: str = "count") -> int:
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"{name} must be a non-negative int (a number of rows), got {count!r}")
    return count


def _work_dtype(*xs: Tensor) -> torch.dtype:
    """The dtype products run in: the inputs' own, at least float32 (half inputs are lifted)."""
    dtype = torch.float32
    for x in xs:
        dtype = torch.promote_types(dtype, x.dtype)
    return dtype


def _unit_rows(x: Tensor, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``x``'s rows scaled to unit norm, in ``dtype`` on ``device``; a zero row stays zero
    (it points nowhere: cosine 0 with everything, not NaN)."""
    x = x.detach().to(device, dtype)
    sq = x.square().sum(1, keepdim=True)
    return torch.where(sq > _TINY, x / sq.clamp_min(_TINY).sqrt(), torch.zeros_like(x))


def _check_dense(x: object, name: str, shape_doc: str) -> Tensor:
    """:func:`check_tensor` for a dense 2-D tensor, refusing a sparse one by name first."""
    if isinstance(x, Tensor) and x.layout != torch.strided:
        raise ValueError(
            f"{name} must be a dense tensor of shape {shape_doc}, got layout {x.layout}; "
            f"use {name}.to_dense()"
        )
    return check_tensor(x, name, 2, shape_doc, exact=True)


def _check_features(features: object, name: str = "features") -> Tensor:
    """``features: [n, n_features]``, dense or sparse COO (coalesced), checked as
    :func:`check_tensor` checks a dense tensor: 2-D, floating point, finite."""
    doc = "[n, n_features]"
    if not isinstance(features, Tensor) or features.layout == torch.strided:
        return check_tensor(features, name, 2, doc, exact=True)
    if features.layout != torch.sparse_coo:
        raise ValueError(
            f"{name} must be a dense or sparse COO tensor of shape {doc}, got layout "
            f"{features.layout}; use {name}.to_sparse_coo()"
        )
    if features.sparse_dim() != 2 or features.dense_dim() != 0:
        raise ValueError(
            f"{name} must have shape {doc} (exactly 2 sparse dimensions), got a sparse COO "
            f"tensor of shape {tuple(features.shape)} with {features.sparse_dim()} sparse and "
            f"{features.dense_dim()} dense dimensions"
        )
    if not features.is_floating_point():
        raise ValueError(
            f"{name} must be a floating-point tensor of shape {doc}, got dtype "
            f"{features.dtype}; use {name}.float()"
        )
    features = features if features.is_coalesced() else features.coalesce()
    if not all_finite(features.values()):
        raise ValueError(
            f"{name} must be finite, got NaN or inf in a sparse tensor of shape "
            f"{tuple(features.shape)}"
        )
    return features


def _positive_entries(features: Tensor, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """``(rows, columns, values)`` of the entries ``> 0`` of a checked ``features`` (dense or
    coalesced COO), row-major, on ``device``: the active features, without densifying."""
    if features.layout == torch.sparse_coo:
        values = features.values().detach()
        keep = (values > 0).nonzero().squeeze(1)
        idx = features.indices().index_select(1, keep).to(device)
        return idx[0], idx[1], values.index_select(0, keep).to(device)
    f = features.detach().to(device)
    rows, cols = (f > 0).nonzero().unbind(1)
    return rows, cols, f[rows, cols]


def _check_index(x: object, name: str, length: int, high: int, shape_doc: str, what: str) -> Tensor:
    """``x`` as a CPU int64 ``[length]`` tensor of values in ``[-1, high)``, else an error."""
    if not isinstance(x, Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor of shape {shape_doc}, got {type(x).__name__}; "
            f"convert it with torch.as_tensor({name}, dtype=torch.int64)"
        )
    if x.dtype == torch.bool or x.is_floating_point() or x.is_complex():
        raise ValueError(
            f"{name} must be an integer tensor of shape {shape_doc} ({what}), got dtype "
            f"{x.dtype}; use {name}.long()"
        )
    if x.shape != (length,):
        raise ValueError(
            f"{name} must have shape {shape_doc} = ({length},) ({what}), got shape {tuple(x.shape)}"
        )
    x = x.detach().to("cpu", torch.int64)
    if length and (int(x.min()) < -1 or int(x.max()) >= high):
        raise ValueError(
            f"{name} must hold values in [-1, {high}) ({what}; -1 for none), got values from "
            f"{int(x.min())} to {int(x.max())}"
        )
    return x
