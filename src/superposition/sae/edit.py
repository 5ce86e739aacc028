"""Interventions at a site of a layer: replace its tensor by a function of itself.

:func:`edit` runs a model with the tensor at one site of one layer (any place
:class:`~superposition.ActivationProbe` reads: the neurons, the MLP's input or output, the
residual stream before or after the block) passed through a function
``fn: [..., width] -> [..., width]``; :func:`edit_neurons` is :func:`edit` at the neurons (the
input of the MLP's output projection). The edits the field uses are built on it:

* :func:`splice` replaces the neurons by an SAE's reconstruction, or the MLP's output by a
  transcoder's prediction from its input (a :class:`FromSite` edit, which reads one site and
  replaces another);
* :func:`zero_ablation` / :func:`mean_ablation` remove the layer's MLP (mean ablation keeps
  each neuron at its mean over a corpus, e.g. ``probe.stream(texts).finalise().mean``);
* :func:`ablate_neurons` removes some neurons; :func:`ablate_latents` removes some SAE latents'
  contribution and keeps everything else (the SAE's error term included);
* :func:`steer` adds a direction, such as an SAE decoder row, at every token;
* :func:`top_k_neurons` keeps each token's ``k`` largest neurons (by magnitude): the neuron
  basis as a "dictionary" with the same L0 as a TopK SAE, the baseline an SAE must beat.

The hooks are those of the probe (:mod:`superposition.probe.hooks`): registered on entry and
removed on exit, also when the forward pass raises; a model that shares one module across
layers (ALBERT) is edited only at the requested layer's call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from superposition._checks import positive_int as _positive_int
from superposition.probe.adapters import unwrap
from superposition.probe.hooks import Hook, hooked
from superposition.probe.sites import SitePoint, locate_sites
from superposition.sae.evaluate import default_batch_rows

if TYPE_CHECKING:
    from superposition.sae.model import SparseAutoencoder

__all__ = [
    "FromSite",
    "NeuronEdit",
    "ablate_latents",
    "ablate_neurons",
    "edit",
    "edit_neurons",
    "mean_ablation",
    "splice",
    "steer",
    "top_k_neurons",
    "zero_ablation",
]

NeuronEdit = Callable[[Tensor], Tensor]
"""A function of the neurons ``[..., n_neurons]`` that returns a tensor of the same shape."""


@dataclass(frozen=True)
class FromSite:
    """An edit that reads another site of the same layer: the edited site's tensor ``x`` is
    replaced by ``fn(source, x)``, ``source`` being the tensor at ``site`` earlier in the same
    forward pass. A transcoder's splice is one: ``mlp_out`` replaced by a function of
    ``mlp_in``. Pass it to :func:`edit` (and so to every function built on it) like any edit.

    Examples:
        >>> import torch
        >>> from transformers import GPT2Config, GPT2Model
        >>> gpt2 = GPT2Model(GPT2Config(n_embd=16, n_layer=2, n_head=2, vocab_size=50)).eval()
        >>> ids = torch.tensor([[1, 2, 3]])
        >>> mlp = gpt2.h[0].mlp
        >>> by_hand = FromSite("mlp_in", lambda src, x: mlp.c_proj(mlp.act(mlp.c_fc(src))))
        >>> with edit(gpt2, 0, by_hand, site="mlp_out"):
        ...     same = gpt2(ids).last_hidden_state  # the MLP recomputed from what it read
        >>> torch.equal(same, gpt2(ids).last_hidden_state)
        True
    """

    site: str
    fn: Callable[[Tensor, Tensor], Tensor]

    def __call__(self, x: Tensor) -> Tensor:
        raise RuntimeError(
            f"this edit reads the site {self.site!r} too: apply it with edit(), which hooks both"
        )


def _rows(fn: Callable[[Tensor], Tensor]) -> NeuronEdit:
    """Apply a function of ``[rows, n]`` to ``[..., n]`` (SAEs take two-dimensional input)."""

    def edit(x: Tensor) -> Tensor:
        return fn(x.reshape(-1, x.shape[-1])).reshape(x.shape)

    return edit


@contextmanager
def edit(
    model: nn.Module,
    layer: int,
    fn: NeuronEdit,
    *,
    site: str = "neurons",
    module: str | Mapping[str, str] | None = None,
) -> Iterator[SitePoint]:
    """Run ``model`` with the tensor at ``site`` of ``layer`` replaced by ``fn(tensor)``.

    The same places the probe reads (:mod:`superposition.probe.sites`): ``"neurons"`` (the
    input of the MLP's output projection), ``"mlp_in"``, ``"mlp_out"`` (what the MLP adds to
    the residual stream), ``"resid_pre"``, ``"resid_post"``, or their TransformerLens names.

    Args:
        model: a Hugging Face model (any architecture :func:`~superposition.probe.locate_sites`
            knows), a TransformerLens ``HookedTransformer`` or an nnsight ``LanguageModel``,
            or any module with ``module=``.
        layer: the layer edited (negative counts from the end).
        fn: maps the site's tensor ``[batch, seq, width]`` to a tensor of the same shape;
            padding positions are passed too.
        site: which place of the block.
        module: as in :class:`~superposition.ActivationProbe`.

    Returns:
        A context manager; ``with edit(...) as point`` gives the
        :class:`~superposition.probe.SitePoint` being edited.

    Raises:
        TypeError: ``fn`` is not callable or ``layer`` is not one int.
        RuntimeError: ``fn`` returned something other than a tensor of the input's shape
            (raised from inside the forward pass; the hook is removed all the same).

    Examples:
        >>> import torch
        >>> from transformers import GPT2Config, GPT2Model
        >>> gpt2 = GPT2Model(GPT2Config(n_embd=16, n_layer=2, n_head=2, vocab_size=50)).eval()
        >>> ids = torch.tensor([[1, 2, 3]])
        >>> clean = gpt2(ids).last_hidden_state
        >>> with edit(gpt2, 1, lambda x: x, site="resid_post"):
        ...     same = gpt2(ids).last_hidden_state
        >>> with edit(gpt2, 0, zero_ablation, site="hook_mlp_out"):
        ...     ablated = gpt2(ids).last_hidden_state
        >>> torch.equal(same, clean), torch.equal(ablated, clean)
        (True, False)
    """
    if not callable(fn):
        raise TypeError(
            f"fn must be a function of the site's tensor [..., width] -> same shape, "
            f"got {type(fn).__name__}"
        )
    if isinstance(layer, bool) or not isinstance(layer, int):
        raise TypeError(f"layer must be one int (edit one layer at a time), got {layer!r}")
    if not isinstance(site, str):
        raise TypeError(f"site must be one site name (edit one site at a time), got {site!r}")
    model = unwrap(model)
    (point,) = locate_sites(model, layer, site, module=module)
    hooks = [Hook(point, fn)]
    if isinstance(fn, FromSite):
        (source,) = locate_sites(model, layer, fn.site, module=module)
        held: list[Tensor] = []

        def keep(t: Tensor) -> None:
            held[:] = [t]

        def use(x: Tensor, fn: FromSite = fn) -> Tensor:
            if not held:
                raise RuntimeError(
                    f"the edit of layer {point.layer}'s {point.site} reads its {source.site}, "
                    "which the forward pass had not computed yet"
                )
            return fn.fn(held.pop(), x)

        hooks = [Hook(source, keep), Hook(point, use)]
    with hooked(model, hooks):
        yield point


@contextmanager
def edit_neurons(
    model: nn.Module, layer: int, fn: NeuronEdit, *, module: str | None = None
) -> Iterator[SitePoint]:
    """Run ``model`` with the MLP neurons of ``layer`` replaced by ``fn(neurons)``:
    :func:`edit` at the ``"neurons"`` site.

    Args:
        model: a Hugging Face model (any architecture :func:`~superposition.probe.locate_mlp`
            knows), or any module with ``module=``.
        layer: the layer whose neurons are edited (negative counts from the end).
        fn: maps the neurons ``[batch, seq, n_neurons]`` (the shape the output projection
            receives) to a tensor of the same shape; padding positions are passed too.
        module: the dotted path of the MLP output projection, as in ``ActivationProbe``.

    Returns:
        A context manager; ``with edit_neurons(...) as site`` gives the
        :class:`~superposition.probe.SitePoint` being edited.

    Raises:
        TypeError: ``fn`` is not callable.
        RuntimeError: ``fn`` returned something other than a tensor of the input's shape
            (raised from inside the forward pass; the hook is removed all the same).

    Examples:
        >>> import torch
        >>> from transformers import GPT2Config, GPT2Model
        >>> gpt2 = GPT2Model(GPT2Config(n_embd=16, n_layer=2, n_head=2, vocab_size=50)).eval()
        >>> ids = torch.tensor([[1, 2, 3]])
        >>> clean = gpt2(ids).last_hidden_state
        >>> with edit_neurons(gpt2, 0, lambda x: x):
        ...     same = gpt2(ids).last_hidden_state
        >>> with edit_neurons(gpt2, 0, zero_ablation):
        ...     ablated = gpt2(ids).last_hidden_state
        >>> torch.equal(same, clean), torch.equal(ablated, clean)
        (True, False)
    """
    with edit(model, layer, fn, site="neurons", module=module) as point:
        yield point


def zero_ablation(x: Tensor) -> Tensor:
    """Every neuron set to 0: the layer's MLP contributes only its output bias.

    Examples:
        >>> zero_ablation(torch.ones(2, 3))
        tensor([[0., 0., 0.],
                [0., 0., 0.]])
    """
    return torch.zeros_like(x)


def _vector(value: Tensor | Sequence[float], name: str) -> Tensor:
    v = torch.as_tensor(value)
    if v.ndim != 1 or not v.is_floating_point():
        raise ValueError(
            f"{name} must be a float vector [n_neurons], got shape {tuple(v.shape)} and dtype "
            f"{v.dtype}"
        )
    return v


def _indices(value: int | Sequence[int], name: str) -> Tensor:
    idx = torch.as_tensor([value] if isinstance(value, int) else list(value))
    if idx.dtype != torch.long or idx.ndim != 1:
        raise ValueError(f"{name} must be an int or a list of ints, got {value!r}")
    return idx


def _check_width(x: Tensor, n: int, name: str) -> None:
    if x.shape[-1] != n:
        raise RuntimeError(
            f"{name} has {n} entries but the layer has {x.shape[-1]} neurons; compute it on "
            "the same model and layer"
        )


def mean_ablation(mean: Tensor | Sequence[float]) -> NeuronEdit:
    """Every neuron held at its mean ``mean: [n_neurons]``.

    The mean is over a corpus's tokens, e.g. ``probe.stream(texts).finalise().mean``.

    Examples:
        >>> mean_ablation(torch.tensor([1.0, 2.0]))(torch.zeros(1, 2, 2))
        tensor([[[1., 2.],
                 [1., 2.]]])
    """
    m = _vector(mean, "mean")

    def edit(x: Tensor) -> Tensor:
        _check_width(x, m.numel(), "mean")
        return m.to(dtype=x.dtype, device=x.device).expand_as(x).clone()

    return edit


def ablate_neurons(
    neurons: int | Sequence[int], value: Tensor | Sequence[float] | None = None
) -> NeuronEdit:
    """Neurons ``neurons`` set to 0, or to ``value[neuron]`` (e.g. their means); others kept.

    Examples:
        >>> ablate_neurons([1])(torch.ones(1, 3))
        tensor([[1., 0., 1.]])
    """
    idx = _indices(neurons, "neurons")
    fill = None if value is None else _vector(value, "value")

    def edit(x: Tensor) -> Tensor:
        n = x.shape[-1]
        if idx.numel() and not (-n <= int(idx.min()) and int(idx.max()) < n):
            raise RuntimeError(f"neurons {idx.tolist()} out of range for a layer of {n} neurons")
        out = x.clone()
        if fill is None:
            out[..., idx] = 0
        else:
            _check_width(x, fill.numel(), "value")
            out[..., idx] = fill.to(dtype=x.dtype, device=x.device)[idx]
        return out

    return edit


def splice(sae: SparseAutoencoder) -> NeuronEdit:
    """The neurons replaced by the SAE's reconstruction ``sae(x)``; for a
    :class:`~superposition.Transcoder`, the MLP's output replaced by its prediction from the
    MLP's input (a :class:`FromSite` edit of ``mlp_out`` that reads ``mlp_in``).

    Examples:
        >>> from superposition import SparseAutoencoder, Transcoder
        >>> sae = SparseAutoencoder(4, 8, k=2, seed=0)
        >>> splice(sae)(torch.randn(2, 3, 4)).shape
        torch.Size([2, 3, 4])
        >>> splice(Transcoder(4, 6, 8, k=2)).site
        'mlp_in'
    """

    step = default_batch_rows(sae.d_sae)

    @torch.no_grad()
    def reconstruct(x: Tensor) -> Tensor:
        # A bounded number of rows at a time: the dense latents of a long batch (16 texts of
        # 512 tokens, 6,144 latents: 200 MB, three times over in TopK) need not exist at once.
        parts = [sae(x[i : i + step]) for i in range(0, max(x.shape[0], 1), step)]
        out: Tensor = parts[0] if len(parts) == 1 else torch.cat(parts)
        return out.to(x.dtype)

    if sae.transcoder:

        def predict(source: Tensor, x: Tensor) -> Tensor:
            rows = reconstruct(source.reshape(-1, source.shape[-1]))
            return rows.reshape(*source.shape[:-1], rows.shape[-1]).to(x.dtype)

        return FromSite("mlp_in", predict)
    return _rows(reconstruct)


def ablate_latents(sae: SparseAutoencoder, latents: int | Sequence[int]) -> NeuronEdit:
    """The contribution of SAE latents ``latents`` removed: ``x - Σ_i z_i W_dec,i / scale``.

    Everything the SAE does not explain (its error ``x - x̂``) stays, so only those latents'
    part of the neurons changes.

    Examples:
        >>> from superposition import SparseAutoencoder
        >>> sae = SparseAutoencoder(4, 8, k=8, kind="topk", seed=0)
        >>> x = torch.randn(5, 4)
        >>> every = ablate_latents(sae, range(8))(x)  # all latents: x̂ - b_dec/scale removed
        >>> torch.allclose(every, x - sae(x) + sae.decode(torch.zeros(1, 8)), atol=1e-6)
        True
    """
    idx = _indices(latents, "latents")
    if idx.numel() and not (0 <= int(idx.min()) and int(idx.max()) < sae.d_sae):
        raise ValueError(f"latents must be in [0, {sae.d_sae}), got {idx.tolist()}")

    @torch.no_grad()
    def remove(x: Tensor) -> Tensor:
        z = sae.encode(x)[:, idx]
        part = (z @ sae.W_dec[idx]) / sae.scale
        return x - part.to(x.dtype)

    return _rows(remove)


def steer(direction: Tensor | Sequence[float], scale: float = 1.0) -> NeuronEdit:
    """``scale · direction`` added to the neurons at every token (e.g. an SAE decoder row).

    Examples:
        >>> steer(torch.tensor([1.0, 0.0]), 2.0)(torch.zeros(1, 2))
        tensor([[2., 0.]])
    """
    d = _vector(direction, "direction")

    def edit(x: Tensor) -> Tensor:
        _check_width(x, d.numel(), "direction")
        return x + scale * d.to(dtype=x.dtype, device=x.device)

    return edit


def top_k_neurons(k: int) -> NeuronEdit:
    """Each token keeps its ``k`` neurons of largest magnitude; the others are set to 0.

    Examples:
        >>> top_k_neurons(2)(torch.tensor([[0.5, -3.0, 1.0, 0.1]]))
        tensor([[ 0., -3.,  1.,  0.]])
    """
    _positive_int(k, "k")

    def edit(x: Tensor) -> Tensor:
        if k >= x.shape[-1]:
            return x
        idx = x.abs().topk(k, dim=-1).indices
        return torch.zeros_like(x).scatter_(-1, idx, x.gather(-1, idx))

    return edit
