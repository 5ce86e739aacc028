"""The one hook engine: read or replace the tensor at sites of a model, and never leak a hook.

Capture (:class:`~superposition.ActivationProbe`) and edits (:func:`superposition.sae.edit.edit`)
both go through :func:`hooked`. Each :class:`Hook` names a :class:`~superposition.probe.SitePoint`
and a function of the site's tensor that returns a replacement (an edit) or ``None`` (a read).

* An ``"input"`` site is read by a forward pre-hook: the module's first positional argument,
  or its ``hidden_states`` keyword (decoder layers are called with keywords), or else its first
  tensor keyword. An ``"output"`` site is read by a forward hook: the module's output, or the
  first element of a tuple it returns (the rest is passed on untouched).
* Where one module serves several layers (ALBERT), its calls are counted per forward pass of
  ``root`` (a pre-hook on ``root`` resets the counts) and a hook fires only at its layer's call.
  ``count_every_call=True`` counts every module this way (the probe reads one call per layer).
* Hooks are registered in the order given when the ``with`` block is entered and removed in
  reverse order when it is left, also when the forward pass raises; contexts nest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from torch import Tensor, nn

from superposition.probe.sites import SitePoint

if TYPE_CHECKING:
    from torch.utils.hooks import RemovableHandle

__all__ = ["Hook", "SiteFunction", "hooked"]

SiteFunction = Callable[[Tensor], "Tensor | None"]
"""A function of a site's tensor ``[..., width]``: a replacement of the same shape, or ``None``
to leave it as it is."""


@dataclass(frozen=True)
class Hook:
    """``fn`` applied to the tensor at ``point`` in every forward pass (see :func:`hooked`)."""

    point: SitePoint
    fn: SiteFunction


def _input_tensor(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Tensor, int | str]:
    """The tensor a module receives and where it is: an argument position or a keyword."""
    if args and isinstance(args[0], Tensor):
        return args[0], 0
    if isinstance(kwargs.get("hidden_states"), Tensor):
        return kwargs["hidden_states"], "hidden_states"
    for key, value in kwargs.items():
        if isinstance(value, Tensor):
            return value, key
    raise RuntimeError("the hooked module received no tensor to read")


def _checked(point: SitePoint, x: Tensor, out: Tensor | None) -> Tensor | None:
    if out is None:
        return None
    if not isinstance(out, Tensor) or out.shape != x.shape:
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise RuntimeError(
            f"the edit of layer {point.layer}'s {point.site} ({point.module_name}) must return a "
            f"tensor of the input's shape {tuple(x.shape)}, got {got}"
        )
    return out.to(dtype=x.dtype, device=x.device)


class _Counter:
    """Calls of each hooked module in the current forward pass of the root."""

    def __init__(self) -> None:
        self.calls: dict[tuple[int, str], int] = {}

    def reset(self, *_: Any, **__: Any) -> None:
        self.calls.clear()

    def next(self, key: tuple[int, str]) -> int:
        k = self.calls.get(key, 0)
        self.calls[key] = k + 1
        return k


def _apply(group: list[Hook], call: int | None, x: Tensor) -> tuple[Tensor, bool]:
    """Each hook of ``group`` whose point is this ``call`` (every hook when calls are not
    counted) applied in order; whether any replaced the tensor."""
    replaced = False
    for h in group:
        if call is not None and h.point.call_index != call:
            continue
        out = _checked(h.point, x, h.fn(x))
        if out is not None:
            x, replaced = out, True
    return x, replaced


def _group(hooks: Sequence[Hook]) -> dict[tuple[int, str], list[Hook]]:
    groups: dict[tuple[int, str], list[Hook]] = {}
    for h in hooks:
        groups.setdefault((id(h.point.module), h.point.direction), []).append(h)
    return groups


def _make_pre_hook(
    group: list[Hook], counter: _Counter, counted: bool
) -> Callable[..., tuple[tuple[Any, ...], dict[str, Any]] | None]:
    key = (id(group[0].point.module), "input")

    def pre_hook(
        mod: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
        call = counter.next(key) if counted else None
        x, where = _input_tensor(args, kwargs)
        x, replaced = _apply(group, call, x)
        if not replaced:
            return None
        if isinstance(where, int):
            return (x, *args[1:]), kwargs
        return args, {**kwargs, where: x}

    return pre_hook


def _make_hook(group: list[Hook], counter: _Counter, counted: bool) -> Callable[..., Any]:
    key = (id(group[0].point.module), "output")

    def hook(mod: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
        call = counter.next(key) if counted else None
        if isinstance(output, Tensor):
            x = output
        elif isinstance(output, (tuple, list)) and output and isinstance(output[0], Tensor):
            x = output[0]
        else:
            raise RuntimeError(
                f"{group[0].point.module_name} returned {type(output).__name__}, not a tensor "
                "or a tuple starting with one; name another module for this site"
            )
        x, replaced = _apply(group, call, x)
        if not replaced:
            return None
        if isinstance(output, Tensor):
            return x
        return type(output)((x, *output[1:]))

    return hook


@contextmanager
def hooked(
    root: nn.Module, hooks: Sequence[Hook], *, count_every_call: bool = False
) -> Iterator[None]:
    """Within the block, every forward pass of ``root`` applies each hook at its site.

    Args:
        root: the module whose forward passes are run (its pre-hook resets call counts).
        hooks: what to apply where; several hooks on one module and direction run in order.
        count_every_call: fire each hook only at its point's ``call_index`` for every module,
            not only for modules that serve several layers.

    Examples:
        >>> import torch
        >>> from transformers import GPT2Config, GPT2Model
        >>> from superposition.probe.sites import locate_sites
        >>> gpt2 = GPT2Model(GPT2Config(n_embd=16, n_layer=2, n_head=2, vocab_size=50)).eval()
        >>> seen = []
        >>> (point,) = locate_sites(gpt2, 0, "mlp_out")
        >>> with hooked(gpt2, [Hook(point, lambda x: seen.append(x.shape))]):
        ...     _ = gpt2(torch.tensor([[1, 2, 3]]))
        >>> seen, len(gpt2.h[0].mlp._forward_hooks)
        ([torch.Size([1, 3, 16])], 0)
    """
    counter = _Counter()
    handles: list[RemovableHandle] = []
    try:
        groups = _group(hooks)
        counts = count_every_call or any(h.point.shared for h in hooks)
        if counts:
            handles.append(root.register_forward_pre_hook(counter.reset))
        for (_, direction), group in groups.items():
            counted = count_every_call or any(h.point.shared for h in group)
            module = group[0].point.module
            if direction == "input":
                handles.append(
                    module.register_forward_pre_hook(
                        _make_pre_hook(group, counter, counted), with_kwargs=True
                    )
                )
            else:
                handles.append(module.register_forward_hook(_make_hook(group, counter, counted)))
        yield
    finally:
        for handle in reversed(handles):
            handle.remove()
