"""Argument checks and seeding shared by every room: one place for each rule.

Each check raises the built-in error a user expects, with the argument's name, what was
expected and what arrived, before any work is done.
"""

from __future__ import annotations

import numbers

import torch

__all__ = ["generator", "optional_positive_int", "positive_int"]


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
