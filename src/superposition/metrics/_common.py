"""What every metric module shares: the input check and the tolerances it relies on."""

from __future__ import annotations

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
