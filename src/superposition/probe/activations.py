"""What a probe's ``run`` returns: :class:`Activations`, the materialised ``[tokens, neurons]``
matrix with one row per token and the token metadata beside it; it saves to safetensors plus a
JSON sidecar for the strings, so loading never executes pickled code. (What ``stream`` returns,
:class:`~superposition.StreamingStatistics`, is in :mod:`superposition.probe.streaming`.)
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from superposition import metrics
from superposition._io import (
    atomic_path,
    atomic_write,
    check_digest,
    damaged,
    read_json,
    read_tensors,
    saved_paths,
    tensor_digest,
)
from superposition.metrics import NeuronStatistics
from superposition.probe.streaming import StreamingStatistics

if TYPE_CHECKING:
    # plot.py lands from another branch; until then this name is Any.
    from superposition.plot import ActivationPlots

__all__ = ["Activations", "StreamingStatistics"]

_FORMAT = "superposition.Activations/1"


@dataclass(frozen=True, eq=False)
class Activations:
    """MLP neuron activations of one layer, one row per token.

    Attributes:
        values: ``[n_tokens, n_neurons]`` float32 on the CPU.
        tokens: the token strings, ``n_tokens`` of them.
        token_ids: ``[n_tokens]`` int64 vocabulary ids.
        text_index: ``[n_tokens]`` int64, which input text each row came from.
        position: ``[n_tokens]`` int64, the row's position within its text.
        layer: the layer index (from 0).
        module_name: the hooked module (the MLP output projection).
        model_name: the model's ``name_or_path`` (or class name).
        is_pad: ``[n_tokens]`` bool, True for a pad row (kept with ``keep_padding=True``);
            all False when not given. Pad rows are labelled with the tokenizer's pad token,
            or ``"<pad>"`` when it has none, and ``token_ids`` holds the id fed to the model.
        site: the place of the block read (``"neurons"``, ``"mlp_in"``, ``"mlp_out"``,
            ``"resid_pre"``, ``"resid_post"``; see :mod:`superposition.probe.sites`).

    Examples:
        >>> import torch
        >>> acts = Activations(torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]]),
        ...     tokens=["a", "b", "c"], token_ids=torch.tensor([5, 6, 7]),
        ...     text_index=torch.tensor([0, 0, 1]), position=torch.tensor([0, 1, 0]))
        >>> acts
        Activations(n_tokens=3, n_neurons=2, n_texts=2, layer=0, module_name='', model_name='')
        >>> acts.for_text(1).tokens
        ['c']
        >>> acts.stats().mean
        tensor([1.3333, 1.6667])
    """

    values: Tensor
    tokens: list[str]
    token_ids: Tensor
    text_index: Tensor
    position: Tensor
    layer: int = 0
    module_name: str = ""
    model_name: str = ""
    # The empty default stands for "no pad rows" and becomes [n_tokens] False in __post_init__.
    is_pad: Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.bool))
    site: str = "neurons"
    _text_starts: Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        values = self.values
        if not isinstance(values, Tensor) or values.ndim != 2:
            got: object = (
                tuple(values.shape) if isinstance(values, Tensor) else type(values).__name__
            )
            raise ValueError(f"values must be a [n_tokens, n_neurons] tensor, got {got}")
        n = values.shape[0]
        for name in ("token_ids", "text_index", "position"):
            t = getattr(self, name)
            if not isinstance(t, Tensor) or tuple(t.shape) != (n,):
                got = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
                raise ValueError(f"{name} must be a [{n}] tensor to match values, got {got}")
        if n and isinstance(self.is_pad, Tensor) and tuple(self.is_pad.shape) == (0,):
            object.__setattr__(self, "is_pad", torch.zeros(n, dtype=torch.bool))
        if (
            not isinstance(self.is_pad, Tensor)
            or tuple(self.is_pad.shape) != (n,)
            or self.is_pad.dtype != torch.bool
        ):
            got = (
                f"shape {tuple(self.is_pad.shape)}, dtype {self.is_pad.dtype}"
                if isinstance(self.is_pad, Tensor)
                else type(self.is_pad).__name__
            )
            raise ValueError(f"is_pad must be a [{n}] bool tensor to match values, got {got}")
        if len(self.tokens) != n:
            raise ValueError(
                f"tokens must have {n} entries to match values, got {len(self.tokens)}"
            )
        if n and bool((self.text_index[1:] < self.text_index[:-1]).any()):
            raise ValueError("text_index must be non-decreasing: rows are grouped by text")
        n_texts = int(self.text_index[-1]) + 1 if n else 0
        counts = torch.bincount(self.text_index, minlength=n_texts) if n else torch.zeros(0)
        starts = torch.zeros(n_texts + 1, dtype=torch.int64)
        starts[1:] = torch.cumsum(counts, 0)
        object.__setattr__(self, "_text_starts", starts)

    # ------------------------------------------------------------------ shape and access

    @property
    def n_tokens(self) -> int:
        """Number of rows (tokens)."""
        return int(self.values.shape[0])

    @property
    def n_neurons(self) -> int:
        """Number of columns (MLP neurons)."""
        return int(self.values.shape[1])

    @property
    def n_texts(self) -> int:
        """Number of texts the rows came from (``text_index.max() + 1``)."""
        return int(self._text_starts.shape[0]) - 1

    def __len__(self) -> int:
        return self.n_tokens

    def __repr__(self) -> str:
        return (
            f"Activations(n_tokens={self.n_tokens}, n_neurons={self.n_neurons}, "
            f"n_texts={self.n_texts}, layer={self.layer}, module_name={self.module_name!r}, "
            f"model_name={self.model_name!r}"
            + ("" if self.site == "neurons" else f", site={self.site!r}")
            + ")"
        )

    def for_text(self, i: int) -> Activations:
        """The rows of text ``i`` (negative counts from the end); ``values`` is a view.

        Raises:
            IndexError: ``i`` is not a text index.
        """
        n = self.n_texts
        if isinstance(i, bool) or not isinstance(i, int) or not -n <= i < n:
            raise IndexError(f"text {i!r} is out of range for {n} texts (valid: {-n}..{n - 1})")
        i %= n
        a, b = int(self._text_starts[i]), int(self._text_starts[i + 1])
        return Activations(
            self.values[a:b],
            tokens=self.tokens[a:b],
            token_ids=self.token_ids[a:b],
            text_index=self.text_index[a:b] - i,
            position=self.position[a:b],
            layer=self.layer,
            module_name=self.module_name,
            model_name=self.model_name,
            is_pad=self.is_pad[a:b],
            site=self.site,
        )

    @classmethod
    def concat(cls, parts: Sequence[Activations]) -> Activations:
        """The rows of every part in order, as one set; texts are renumbered to follow on.

        Every part must come from the same layer, module and model, with the same number of
        neurons; ``concat([acts.for_text(i) for i in range(acts.n_texts)])`` rebuilds ``acts``.

        Raises:
            ValueError: ``parts`` is empty, or the parts do not describe the same neurons.

        Examples:
            >>> import torch
            >>> a = Activations(torch.ones(2, 3), tokens=["a", "b"], token_ids=torch.tensor([1, 2]),
            ...     text_index=torch.tensor([0, 0]), position=torch.tensor([0, 1]))
            >>> Activations.concat([a, a]).text_index
            tensor([0, 0, 1, 1])
        """
        parts = list(parts)
        if not parts:
            raise ValueError("concat needs at least one Activations, got none")
        first = parts[0]
        key = (first.layer, first.site, first.module_name, first.model_name, first.n_neurons)
        for k, a in enumerate(parts):
            if not isinstance(a, Activations):
                raise TypeError(f"parts[{k}] must be Activations, got {type(a).__name__}")
            other = (a.layer, a.site, a.module_name, a.model_name, a.n_neurons)
            if other != key:
                raise ValueError(
                    "every part must hold the same neurons (layer, site, module, model, "
                    f"n_neurons): parts[0] has {key}, parts[{k}] has {other}"
                )
        offsets = np.cumsum([0] + [a.n_texts for a in parts[:-1]]).tolist()
        return cls(
            torch.cat([a.values for a in parts]),
            tokens=[tok for a in parts for tok in a.tokens],
            token_ids=torch.cat([a.token_ids for a in parts]),
            text_index=torch.cat([a.text_index + o for a, o in zip(parts, offsets, strict=True)]),
            position=torch.cat([a.position for a in parts]),
            layer=first.layer,
            module_name=first.module_name,
            model_name=first.model_name,
            is_pad=torch.cat([a.is_pad for a in parts]),
            site=first.site,
        )

    def to_numpy(self) -> np.ndarray[Any, np.dtype[np.float32]]:
        """``values`` as a ``[n_tokens, n_neurons]`` float32 NumPy array (shares memory)."""
        return self.values.numpy()

    # ------------------------------------------------------------------ metrics

    def cosine_similarity(self, *, center: bool = False) -> Tensor:
        """``[n_neurons, n_neurons]`` cosine similarity between neurons (Pearson if ``center``).

        See :func:`superposition.metrics.cosine_similarity`.
        """
        return metrics.cosine_similarity(self.values, center=center)

    def cosine_distance(self, *, center: bool = False) -> Tensor:
        """``[n_neurons, n_neurons]`` cosine distance ``1 - similarity``, as in the seed paper.

        See :func:`superposition.metrics.cosine_distance`.
        """
        return metrics.cosine_distance(self.values, center=center)

    def stats(self, *, threshold: float = 0.0) -> NeuronStatistics:
        """Per-neuron mean, variance, activation frequency and kurtosis.

        See :func:`superposition.metrics.neuron_statistics`.
        """
        return metrics.neuron_statistics(self.values, threshold=threshold)

    @property
    def plot(self) -> ActivationPlots:
        """Figures of these activations (``acts.plot.cosine_heatmap()``, ...)."""
        from superposition.plot import ActivationPlots

        return ActivationPlots(self)

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``path.safetensors`` (the tensors) and ``path.json`` (the strings); no pickle.

        ``path`` may be given with or without its ``.safetensors`` suffix. Both files are
        written atomically with the umask's permissions.

        Returns:
            The path of the tensor file.

        Examples:
            >>> import tempfile, torch
            >>> acts = Activations(torch.ones(1, 2), tokens=["a"], token_ids=torch.tensor([1]),
            ...     text_index=torch.tensor([0]), position=torch.tensor([0]))
            >>> with tempfile.TemporaryDirectory() as d:
            ...     Activations.load(acts.save(f"{d}/acts.safetensors")).tokens
            ['a']
        """
        from safetensors.torch import save_file

        path, side = saved_paths(path)
        tensors = {
            "values": self.values.detach().to("cpu", torch.float32).contiguous(),
            "token_ids": self.token_ids.to("cpu", torch.int64).contiguous(),
            "text_index": self.text_index.to("cpu", torch.int64).contiguous(),
            "position": self.position.to("cpu", torch.int64).contiguous(),
            "is_pad": self.is_pad.to("cpu").contiguous(),
        }
        with atomic_path(path) as temp:
            # One header key keeps the file byte-identical between runs (safetensors orders a
            # header of several keys at random); the checksum goes in the sidecar.
            save_file(tensors, str(temp), metadata={"format": _FORMAT})
        sidecar = {
            "format": _FORMAT,
            "digest": tensor_digest(tensors),
            "layer": self.layer,
            "module_name": self.module_name,
            "model_name": self.model_name,
            "site": self.site,
            "tokens": list(self.tokens),
        }
        atomic_write(side, json.dumps(sidecar, ensure_ascii=False))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Activations:
        """Read what :meth:`save` wrote; round-trips exactly.

        Raises:
            FileNotFoundError: the tensor file or its ``.json`` sidecar is missing.
            ValueError: the files are not a saved :class:`Activations`.
        """
        from safetensors import safe_open

        path, side = saved_paths(path)
        if not side.is_file() and path.with_name(path.name + ".json").is_file():
            side = path.with_name(path.name + ".json")  # written by 0.1.0.dev0's naming
        for p in (path, side):
            if not p.is_file():
                raise FileNotFoundError(
                    f"expected {p} (written by Activations.save together with "
                    f"{path.name} and {side.name}), but it does not exist"
                )
        with damaged(path, "Activations"), safe_open(str(path), framework="pt") as f:
            fmt = (f.metadata() or {}).get("format")
        meta = read_json(side, "Activations")
        side_fmt = meta.get("format") if isinstance(meta, dict) else None
        if fmt != _FORMAT or side_fmt != _FORMAT:
            # Name the file whose format is wrong (the header's, or the sidecar's).
            where, got = (path, fmt) if fmt != _FORMAT else (side, side_fmt)
            raise ValueError(
                f"{where} is not a saved Activations (expected format {_FORMAT!r}, got "
                f"{got!r}); write it with Activations.save"
            )
        t, _ = read_tensors(path, "Activations")
        check_digest(path, meta.get("digest"), t, "save the Activations again")
        return cls(
            t["values"],
            tokens=[str(s) for s in meta["tokens"]],
            token_ids=t["token_ids"],
            text_index=t["text_index"],
            position=t["position"],
            layer=int(meta["layer"]),
            module_name=str(meta["module_name"]),
            model_name=str(meta["model_name"]),
            # Files saved before is_pad existed have none: no pad rows are known.
            is_pad=t.get("is_pad", torch.zeros(0, dtype=torch.bool)),
            site=str(meta.get("site", "neurons")),  # files from before sites: the neurons
        )
