"""Argument checks and seeding shared by every room: one place for each rule.

Each check raises the built-in error a user expects, with the argument's name, what was
expected and what arrived, before any work is done.
"""

from __future__ import annotations

import numbers
from typing import Any, cast

import torch
from torch import Tensor

__all__ = [
    "all_finite",
    "float_rows",
    "generator",
    "optional_device",
    "optional_positive_int",
    "positive_int",
]


def positive_int(value: object, name: str, *, none_ok: bool = False, numpy_ok: bool = False) -> int:
    """``value`` if it is a positive ``int`` (``bool`` is not), else a ValueError.

    Args:
        value: what the user passed.
        name: the argument's name, for the message.
        none_ok: only changes the message ("or None"); :func:`optional_positive_int` accepts it.
        numpy_ok: accept numpy integers too (returned as ``int``); off where the value is kept
            as given (configs must stay JSON-serialisable).

    Examples:
        >>> positive_int(3, "k")
        3
        >>> positive_int(0, "k")
        Traceback (most recent call last):
        ...
        ValueError: k must be a positive int, got 0
    """
    kinds = (numbers.Integral if numpy_ok else int,)
    if isinstance(value, bool) or not isinstance(value, kinds) or int(value) < 1:
        suffix = " or None" if none_ok else ""
        raise ValueError(f"{name} must be a positive int{suffix}, got {value!r}")
    return int(value)


def optional_positive_int(value: object, name: str) -> int | None:
    """``None``, or ``value`` checked by :func:`positive_int`.

    Examples:
        >>> optional_positive_int(None, "max_length") is None
        True
    """
    return None if value is None else positive_int(value, name, none_ok=True)


def generator(seed: int | None, device: str | torch.device = "cpu") -> torch.Generator:
    """A ``torch.Generator`` seeded with ``seed``, or from fresh entropy when ``seed`` is None.

    Examples:
        >>> a, b = generator(0), generator(0)
        >>> torch.equal(torch.rand(3, generator=a), torch.rand(3, generator=b))
        True
    """
    g = torch.Generator(device=device)
    if seed is None:
        g.seed()
    else:
        g.manual_seed(seed)
    return g


def all_finite(x: Tensor) -> bool:
    """Whether every value of ``x`` is finite (an empty ``x`` is).

    ``aminmax`` propagates NaN and surfaces ±inf in one pass with O(1) memory; ``isfinite(x)``
    would allocate a mask (and temporaries) as large as ``x``, which matters for ``[1M, 3072]``
    activations.

    Examples:
        >>> all_finite(torch.tensor([1.0, 2.0])), all_finite(torch.tensor([1.0, float("nan")]))
        (True, False)
    """
    return not x.numel() or bool(torch.isfinite(torch.stack(torch.aminmax(x))).all())


def float_rows(x: object, width: int, name: str, label: str, built: str) -> Tensor:
    """``x`` if it is a finite floating-point ``[batch, width]`` tensor, else a TypeError or
    ValueError naming ``name``; ``label`` names the width (``"d_in=8"``) and ``built`` says
    what fixed it, for the message.

    Examples:
        >>> float_rows(torch.zeros(2, 3), 4, "x", "d_in=4", "built so")
        Traceback (most recent call last):
        ...
        ValueError: x must have shape [batch, d_in=4], got shape (2, 3); built so
    """
    if not isinstance(x, Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor of shape [batch, {width}], got {type(x).__name__}"
        )
    if x.ndim != 2 or x.shape[1] != width:
        raise ValueError(
            f"{name} must have shape [batch, {label}], got shape {tuple(x.shape)}; {built}"
        )
    if not x.is_floating_point():
        raise ValueError(
            f"{name} must be a floating-point tensor, got dtype {x.dtype}; use {name}.float()"
        )
    if not all_finite(x):
        raise ValueError(f"{name} must be finite, got NaN or inf in shape {tuple(x.shape)}")
    return x


def optional_device(value: object) -> torch.device | None:
    """``None``, or ``value`` (a ``torch.device``, ``"cuda:0"``...) as a device, else a
    ValueError.

    Examples:
        >>> optional_device("cpu"), optional_device(None)
        (device(type='cpu'), None)
    """
    if value is None:
        return None
    try:
        return torch.device(cast(Any, value))
    except (RuntimeError, TypeError) as err:
        raise ValueError(
            f"device must be a torch.device or a string such as 'cpu' or 'cuda:0', got {value!r}"
        ) from err
