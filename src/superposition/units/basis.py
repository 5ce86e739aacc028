"""Unit bases: the neurons of a layer, the latents of an SAE or a transcoder, or a random
rotation of the neurons.

Everything that looks at *units* (top contexts, scores, plots, the explorer) takes a
:class:`UnitBasis` and never asks which kind it holds: a basis turns a ``[tokens, width]``
batch of activations read at one site of the block (the MLP's neurons, or for a transcoder
what the MLP reads) into ``[tokens, units]`` and knows each unit's direction over the neurons.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Literal, cast

import torch
from torch import Tensor

from superposition._checks import positive_int

if TYPE_CHECKING:
    from superposition.sae.model import SparseAutoencoder
    from superposition.sae.transcoder import Transcoder

__all__ = ["BasisKind", "UnitBasis", "unit_norm_tokens"]

BasisKind = Literal["neurons", "sae", "transcoder", "rotation"]


class UnitBasis:
    """Units over the ``n_neurons`` MLP neurons of one layer.

    Build one with :meth:`neurons`, :meth:`sae`, :meth:`transcoder` or :meth:`rotation`;
    :meth:`of` turns ``None`` (neurons), a :class:`~superposition.SparseAutoencoder` (or
    :class:`~superposition.Transcoder`) or a basis into a basis.

    Attributes:
        kind: ``"neurons"``, ``"sae"``, ``"transcoder"`` or ``"rotation"``.
        n_neurons: the width of the activations it reads.
        n_units: how many units it has.
        name: a short label for plots and tables (``"neurons"``, ``"SAE latents"``...).
        site: the site of the block whose activations it reads (``"mlp_in"`` for a
            transcoder), or ``None``: whichever site the probe reads (its first).

    Examples:
        >>> import torch
        >>> x = torch.tensor([[1.0, 2.0, 0.0]])
        >>> UnitBasis.neurons(3).encode(x)
        tensor([[1., 2., 0.]])
        >>> r = UnitBasis.rotation(3, seed=0)
        >>> torch.allclose(r.encode(x).norm(), x.norm()), r.label(2)
        (True, 'rotated 2')
    """

    def __init__(
        self,
        kind: BasisKind,
        n_neurons: int,
        n_units: int,
        encode: Callable[[Tensor], Tensor] | None,
        directions: Callable[[], Tensor] | None,
        *,
        name: str,
        unit_label: str,
        site: str | None = None,
    ) -> None:
        self.kind: BasisKind = kind
        self.n_neurons = n_neurons
        self.n_units = n_units
        self._encode = encode
        self._directions = directions
        self.name = name
        self.unit_label = unit_label
        self.site = site

    def __repr__(self) -> str:
        site = "" if self.site is None else f", site={self.site!r}"
        return f"UnitBasis({self.kind!r}, n_neurons={self.n_neurons}, n_units={self.n_units}{site})"

    # ------------------------------------------------------------------ constructors

    @classmethod
    def neurons(cls, n_neurons: int, *, unit_norm: bool = False) -> UnitBasis:
        """The neurons themselves: unit ``i`` is neuron ``i``.

        With ``unit_norm=True`` each token's activation vector is first scaled to unit length
        (:func:`unit_norm_tokens`): the partner of ``rotation(..., unit_norm=True)`` in a
        comparison where a token's norm cannot carry it into the top contexts.
        """
        n = _width(n_neurons)
        return cls(
            "neurons",
            n,
            n,
            unit_norm_tokens if unit_norm else None,
            lambda: torch.eye(n),
            name="neurons (unit-norm tokens)" if unit_norm else "neurons",
            unit_label="neuron",
        )

    @classmethod
    def sae(cls, sae: SparseAutoencoder) -> UnitBasis:
        """The latents of a trained SAE: unit ``i`` is ``sae.encode(x)[:, i]``, its direction
        the decoder row ``W_dec[i]``.

        An SAE of another site of the block than the neurons (its :attr:`~superposition.
        SparseAutoencoder.site`, e.g. ``"resid_post"`` for an SAELens ``hook_resid_post``
        release) reads that site, so a probe must capture it; its decoder rows live in that
        site's space, not over the neurons, so the basis has no directions
        (:attr:`has_directions` is ``False``).
        """
        from superposition.sae.model import SparseAutoencoder

        if not isinstance(sae, SparseAutoencoder):
            raise TypeError(f"sae must be a SparseAutoencoder, got {type(sae).__name__}")
        if sae.transcoder:
            raise TypeError(
                "a Transcoder reads what the MLP reads (mlp_in), not its neurons; use "
                "UnitBasis.transcoder(tc, neurons_out=W_out) (or UnitBasis.of(tc))"
            )
        site = None if sae.site in (None, "neurons") else sae.site
        return cls(
            "sae",
            sae.d_in,
            sae.d_sae,
            _latents(sae),
            (lambda: sae.W_dec.detach().float().clone()) if site is None else None,
            name="SAE latents",
            unit_label="latent",
            site=site,
        )

    @classmethod
    def transcoder(cls, tc: Transcoder, *, neurons_out: Tensor | None = None) -> UnitBasis:
        """The latents of a trained transcoder: unit ``i`` is ``tc.encode(x)[:, i]`` for ``x``
        read where the MLP reads (site ``"mlp_in"``), so a probe must capture that site.

        A transcoder latent stands in for the MLP's neurons: it writes ``W_dec[i]`` where the
        neurons write ``W_out n``. Its direction over the neurons is ``W_dec[i] W_out``: how
        much each neuron's output column agrees with what the latent writes.

        Args:
            tc: the transcoder (``d_in``: the MLP's input width, ``d_out``: its output width).
            neurons_out: the MLP's output projection, ``[d_out, n_neurons]`` as an
                ``nn.Linear`` weight (:func:`~superposition.probe.locate.linear_weight` of
                the neurons' module). Without it the basis has no directions
                (:attr:`has_directions` is ``False``).

        Raises:
            TypeError: ``tc`` is not a :class:`~superposition.Transcoder`.
            ValueError: ``neurons_out`` is not ``[tc.d_out, n]``.
        """
        from superposition.sae.model import SparseAutoencoder

        if not isinstance(tc, SparseAutoencoder) or not tc.transcoder:
            raise TypeError(f"tc must be a Transcoder, got {type(tc).__name__}")
        directions: Callable[[], Tensor] | None = None
        if neurons_out is not None:
            w = neurons_out.detach()
            if w.ndim != 2 or w.shape[0] != tc.d_out:
                raise ValueError(
                    f"neurons_out must be the MLP's output projection, [d_out={tc.d_out}, "
                    f"n_neurons], got shape {tuple(w.shape)}; pass the nn.Linear weight of "
                    "the module the neurons feed"
                )
            directions = lambda: tc.W_dec.detach().float() @ w.float()  # noqa: E731
        return cls(
            "transcoder",
            tc.d_in,
            tc.d_sae,
            _latents(tc),
            directions,
            name="transcoder latents",
            unit_label="tc latent",
            site="mlp_in",
        )

    @classmethod
    def rotation(cls, n_neurons: int, *, seed: int = 0, unit_norm: bool = False) -> UnitBasis:
        """A uniformly random orthogonal rotation of the neurons: a null basis that holds the
        same information as the neurons but no privileged directions.

        Unit ``i`` reads ``x · q_i`` for the rows ``q_i`` of a Haar-random orthogonal matrix
        (QR of a Gaussian matrix with the signs of ``R``'s diagonal folded in, Mezzadri 2007).

        A random direction's largest values go to the tokens with the largest activation
        vectors (``|x · q| ≈ ‖x‖ / √n``: ``[CLS]``, punctuation), whatever they mean. With
        ``unit_norm=True`` each token's vector is scaled to unit length first
        (:func:`unit_norm_tokens`), so the null's top contexts are chosen by direction alone;
        compare it with ``neurons(..., unit_norm=True)``, which reads the same scaled vectors.
        """
        n = _width(n_neurons)
        g = torch.Generator().manual_seed(seed)
        q, r = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
        Q = (q * torch.sign(torch.diagonal(r))).T.contiguous().float()  # rows are the units
        QT = Q.T.contiguous()

        def encode(x: Tensor) -> Tensor:
            return torch.matmul(unit_norm_tokens(x) if unit_norm else x.float(), QT)

        return cls(
            "rotation",
            n,
            n,
            encode,
            lambda: Q.clone(),
            name="rotated neurons (unit-norm tokens)" if unit_norm else "rotated neurons",
            unit_label="rotated",
        )

    @classmethod
    def of(cls, units: UnitBasis | SparseAutoencoder | None, n_neurons: int) -> UnitBasis:
        """``units`` as a basis reading ``n_neurons`` values per token: ``None`` means the
        neurons; a :class:`~superposition.Transcoder` becomes :meth:`transcoder` (without
        directions).

        Raises:
            TypeError: ``units`` is none of these.
            ValueError: the basis reads a different number of values.
        """
        from superposition.sae.model import SparseAutoencoder

        if units is None:
            basis = cls.neurons(n_neurons)
        elif isinstance(units, SparseAutoencoder):
            basis = (
                cls.transcoder(cast("Transcoder", units)) if units.transcoder else cls.sae(units)
            )
        elif isinstance(units, UnitBasis):
            basis = units
        else:
            raise TypeError(
                "units must be None (the neurons), a SparseAutoencoder or a UnitBasis, got "
                f"{type(units).__name__}"
            )
        if basis.n_neurons != n_neurons:
            where = "neurons" if basis.site is None else f"values at {basis.site}"
            raise ValueError(
                f"the units read {basis.n_neurons} {where} but the layer has {n_neurons}; "
                "train the SAE (or build the basis) on this layer's activations"
            )
        return basis

    # ------------------------------------------------------------------ use

    def encode(self, x: Tensor) -> Tensor:
        """``[tokens, n_neurons]`` activations to ``[tokens, n_units]`` float32 unit values."""
        if not isinstance(x, Tensor) or x.ndim != 2 or x.shape[1] != self.n_neurons:
            got = f"shape {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x must be a [tokens, {self.n_neurons}] tensor, got {got}")
        return x.float() if self._encode is None else self._encode(x)

    @property
    def has_directions(self) -> bool:
        """Whether :attr:`directions` is known (a transcoder built without the MLP's output
        projection has none)."""
        return self._directions is not None

    @property
    def directions(self) -> Tensor:
        """``[n_units, n_neurons]``: each unit's direction over the neurons (a copy).

        Raises:
            ValueError: the basis has none (:attr:`has_directions`).
        """
        if self._directions is None:
            raise ValueError(
                f"this {self.name} basis has no directions over the neurons (an SAE of "
                f"another site than the neurons has none; a transcoder has them when built "
                "with UnitBasis.transcoder(tc, neurons_out=W_out))"
            )
        return self._directions()

    def label(self, unit: int) -> str:
        """``"neuron 12"``, ``"latent 12"`` or ``"rotated 12"``."""
        return f"{self.unit_label} {unit}"


def _latents(sae: SparseAutoencoder) -> Callable[[Tensor], Tensor]:
    """``x -> sae.encode(x)`` as float32, without autograd."""

    def encode(x: Tensor) -> Tensor:
        with torch.no_grad():
            z: Tensor = sae.encode(x)
        return z.float()

    return encode


def unit_norm_tokens(x: Tensor) -> Tensor:
    """Each row (a token's activation vector) scaled to unit Euclidean length, float32; an
    all-zero row stays zero.

    Examples:
        >>> unit_norm_tokens(torch.tensor([[3.0, 4.0], [0.0, 0.0]]))
        tensor([[0.6000, 0.8000],
                [0.0000, 0.0000]])
    """
    x = x.float()
    norms: Tensor = x.norm(dim=1, keepdim=True)
    return x / norms.clamp_min(torch.finfo(torch.float32).tiny)


def _width(n: object) -> int:
    return positive_int(n, "n_neurons")
