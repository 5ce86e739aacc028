"""The explorer page: one self-contained HTML file (inline CSS and JavaScript, data embedded as
base64 typed arrays in a JSON block) that browses the units of one or more bases offline.

The payload is built with whole-array operations, so 12,288 units with 40 contexts each take
seconds, and kept small:

* each context's window is a pointer into a store of the corpus tokens it touches (every text
  position that any window covers, once), not a copy of its tokens;
* token ids are renumbered into a local vocabulary (16-bit when it has fewer than 65,535
  entries), with each token's display string once;
* a window's activations are quantized to 8 bits of the unit's largest activation (what the
  shading needs); each context's own activation, the scores and the histogram are exact;
* all arrays go into one gzip-compressed buffer (a quarter of their size: most window values
  of a sparse unit are zero), which the page inflates with the browser's own
  ``DecompressionStream``.
"""

from __future__ import annotations

import base64
import gzip
import html
import itertools
import json
import os
import re
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from superposition.units.basis import UnitBasis
from superposition.units.records import HIST_EDGES, UnitStatistics
from superposition.units.scores import SCORE_DOCS, UnitTable, score_units

__all__ = ["explore", "explorer_html"]

_EMPTY = 0xFFFFFFFF  # an empty context slot
_PAYLOAD_VERSION = 1


def explore(
    records: UnitStatistics | Sequence[UnitStatistics],
    path: str | os.PathLike[str],
    *,
    tables: Sequence[UnitTable | None] | None = None,
    bases: Sequence[UnitBasis | None] | None = None,
    tokenizer: Any = None,
    title: str | None = None,
    loadings: int = 8,
) -> Path:
    """Write an offline, interactive HTML browser of the units in ``records``.

    One file, nothing loaded from anywhere: open it from disk, mail it, put it next to a paper.
    Per unit it shows the top contexts with each token shaded by the unit's activation (hover
    for the value), random active samples, the activation histogram, the scores with a line
    on each, and, given the bases, the neurons a latent's decoder direction loads on most (and
    for a neuron the latents that use it most). The list of units sorts by any score and
    filters (a number, a token, or ``density<0.01``); a token search finds the units whose
    top contexts fire on that token; ``page.html#latent-12`` opens latent 12.

    Args:
        records: one :class:`~superposition.units.UnitStatistics` per basis (neurons, SAE
            latents, ...), e.g. from :func:`~superposition.units.collect_units`.
        path: the ``.html`` file to write (atomically; its folder must exist).
        tables: each basis's :class:`~superposition.units.UnitTable` (``None`` entries, or no
            ``tables``: :func:`~superposition.units.score_units` without embeddings).
        bases: each record's :class:`~superposition.units.UnitBasis`, for the decoder
            loadings (``None``: none shown).
        tokenizer: turns token ids into strings (default: the records' own tokenizer; without
            one, ids are shown).
        title: the page's title (default: the model, layer and bases).
        loadings: how many neurons (latents) to list per latent (neuron).

    Returns:
        The path written.

    Raises:
        TypeError: ``records`` holds something other than UnitStatistics.
        ValueError: lengths or unit counts do not match, or the records are empty.

    Examples:
        >>> import tempfile, torch
        >>> from superposition.units import UnitStatistics
        >>> s = UnitStatistics(3, top_k=2, samples=1, window=1)
        >>> _ = s.update(torch.rand(6, 3), text_index=torch.tensor([0, 0, 0, 1, 1, 1]),
        ...              position=torch.tensor([0, 1, 2, 0, 1, 2]), token_ids=torch.arange(6))
        >>> page = explore(s, f"{tempfile.mkdtemp()}/units.html")
        >>> page.read_text().count("<script"), "://" in page.read_text()  # no URL anywhere
        (2, False)
    """
    page = explorer_html(
        records, tables=tables, bases=bases, tokenizer=tokenizer, title=title, loadings=loadings
    )
    from superposition._io import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return Path(path)


def explorer_html(
    records: UnitStatistics | Sequence[UnitStatistics],
    *,
    tables: Sequence[UnitTable | None] | None = None,
    bases: Sequence[UnitBasis | None] | None = None,
    tokenizer: Any = None,
    title: str | None = None,
    loadings: int = 8,
) -> str:
    """The page :func:`explore` writes, as a string (arguments and errors as there)."""
    recs = _check(records, tables, bases, loadings)
    tabs: list[UnitTable | None] = list(tables) if tables is not None else [None] * len(recs)
    bas: list[UnitBasis | None] = list(bases) if bases is not None else [None] * len(recs)
    found = (r.tokenizer for r in recs if r.tokenizer is not None)
    tok = tokenizer if tokenizer is not None else next(found, None)
    return _html(_payload(recs, tabs, bas, tok, title, loadings))


# --------------------------------------------------------------------------- checks


def _check(
    records: UnitStatistics | Sequence[UnitStatistics],
    tables: Sequence[UnitTable | None] | None,
    bases: Sequence[UnitBasis | None] | None,
    loadings: int,
) -> list[UnitStatistics]:
    recs = [records] if isinstance(records, UnitStatistics) else list(records)
    if not recs:
        raise ValueError("records is empty; pass at least one UnitStatistics")
    for r in recs:
        if not isinstance(r, UnitStatistics):
            raise TypeError(
                "records must be a UnitStatistics or a list of them (one per basis), got a "
                f"{type(r).__name__}"
            )
        if r.count == 0:
            raise ValueError(
                f"the records of {r.basis_name!r} saw no tokens; collect them over some text first"
            )
    for name, seq in (("tables", tables), ("bases", bases)):
        if seq is not None and len(seq) != len(recs):
            raise ValueError(f"{name} must have one entry per record ({len(recs)}), got {len(seq)}")
    for r, t in zip(recs, tables or [None] * len(recs), strict=True):
        if t is not None and (not isinstance(t, UnitTable) or len(t) != r.n_units):
            got = f"{len(t)} rows" if isinstance(t, UnitTable) else type(t).__name__
            raise ValueError(
                f"the table of {r.basis_name!r} must be a UnitTable with {r.n_units} rows, got "
                f"{got}"
            )
    for r, b in zip(recs, bases or [None] * len(recs), strict=True):
        if b is not None and (not isinstance(b, UnitBasis) or b.n_units != r.n_units):
            got = f"{b.n_units} units" if isinstance(b, UnitBasis) else type(b).__name__
            raise ValueError(
                f"the basis of {r.basis_name!r} must be a UnitBasis with {r.n_units} units, got "
                f"{got}"
            )
    if isinstance(loadings, bool) or not isinstance(loadings, int) or loadings < 0:
        raise ValueError(f"loadings must be a non-negative int, got {loadings!r}")
    return recs


# --------------------------------------------------------------------------- payload


class _Packer:
    """Arrays into one little-endian buffer, each at an offset aligned for its type; the
    page views them as typed arrays by the manifest ``name -> [offset, length, dtype]``."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0
        self.manifest: dict[str, list[Any]] = {}

    def add(self, name: str, a: Tensor | np.ndarray[Any, Any], dtype: str) -> str:
        arr = np.ascontiguousarray(np.asarray(a).astype(np.dtype(dtype).newbyteorder("<")))
        pad = -self.size % 8
        self.parts.append(b"\0" * pad + arr.tobytes())
        self.manifest[name] = [self.size + pad, int(arr.size), np.dtype(dtype).str[1:]]
        self.size += pad + arr.nbytes
        return name

    def blob(self) -> str:
        packed = gzip.compress(b"".join(self.parts), compresslevel=6, mtime=0)
        return base64.b64encode(packed).decode("ascii")


def _keys(recs: list[UnitStatistics]) -> list[str]:
    """Permalink prefixes: the unit label, made unique (``latent``, ``latent2``...)."""
    out: list[str] = []
    for r in recs:
        base = "".join(c if c.isalnum() else "_" for c in r.unit_label.lower()) or "unit"
        key, i = base, 2
        while key in out:
            key, i = f"{base}{i}", i + 1
        out.append(key)
    return out


def _contexts(r: UnitStatistics) -> dict[str, Tensor]:
    """Top contexts then samples of every unit: ``[U, K + S]`` and ``[U, K + S, W]``."""
    top, smp = r.top_arrays(), r.sample_arrays()
    # samples in decreasing activation, as UnitStatistics.samples lists them
    order = torch.argsort(
        torch.where(smp["text_index"] >= 0, smp["value"], -torch.inf),
        dim=0,
        descending=True,
        stable=True,
    )
    smp = {
        k: v.gather(0, order if v.ndim == 2 else order[:, :, None].expand_as(v))
        for k, v in smp.items()
    }
    return {k: torch.cat([top[k], smp[k]]).transpose(0, 1).contiguous() for k in top}


def _token_store(ctxs: list[dict[str, Tensor]], before: list[int]) -> tuple[Tensor, Tensor, Tensor]:
    """Every (text, position) any window covers, once: ``text_ids`` (corpus indices, sorted),
    ``offsets [T + 1]`` and ``tokens`` (the concatenated texts; -1 where no window reaches)."""
    keys, ids = [], []
    for c, b in zip(ctxs, before, strict=True):
        W = c["token_ids"].shape[2]
        pos = c["position"][:, :, None] + torch.arange(W) - b
        inside = c["token_ids"] >= 0
        t = c["text_index"][:, :, None].expand_as(pos)
        keys.append(torch.stack([t[inside], pos[inside]], 1))
        ids.append(c["token_ids"][inside].to(torch.int64))
    pairs = torch.cat(keys)
    tokens = torch.cat(ids)
    text_ids, text_of = torch.unique(pairs[:, 0], return_inverse=True)
    lengths = torch.zeros(text_ids.shape[0], dtype=torch.int64)
    lengths.scatter_reduce_(0, text_of, pairs[:, 1] + 1, reduce="amax")
    offsets = torch.cat([torch.zeros(1, dtype=torch.int64), lengths.cumsum(0)])
    store = torch.full((int(offsets[-1]),), -1, dtype=torch.int64)
    store[offsets[text_of] + pairs[:, 1]] = tokens
    return text_ids, offsets, store


def _display(tokenizer: Any, ids: list[int]) -> tuple[list[str], list[str]]:
    """Each token's raw string and how to show it in running text (a leading space for a new
    word, none for a word piece)."""
    if tokenizer is None:
        raw = [f"<{i}>" for i in ids]
        return raw, [f" {s}" for s in raw]
    raw = [str(s) for s in tokenizer.convert_ids_to_tokens(ids)]
    specials = set(getattr(tokenizer, "all_special_tokens", []) or [])
    vocab = getattr(tokenizer, "vocab", None) or {}
    wordpiece = any(k.startswith("##") for k in itertools.islice(vocab, 5000))
    shown = []
    for i, s in zip(ids, raw, strict=True):
        if s in specials:
            shown.append(f" {s}")
        elif wordpiece:
            shown.append(s[2:] if s.startswith("##") else f" {s}")
        elif s == "\u010a":  # a byte-level newline
            shown.append("\u21b5")
        elif s.startswith(("\u0120", "\u2581")):  # a byte-level or sentencepiece word start
            shown.append(str(tokenizer.decode([i])))
        else:
            shown.append(s)
    return raw, shown


def _loadings(directions: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """The ``n`` largest-magnitude entries of each row: ``(index, weight)``, each ``[rows, n]``."""
    n = min(n, directions.shape[1])
    top = directions.abs().topk(n, dim=1)
    return top.indices, directions.gather(1, top.indices)


def _payload(
    recs: list[UnitStatistics],
    tables: list[UnitTable | None],
    bases: list[UnitBasis | None],
    tokenizer: Any,
    title: str | None,
    n_load: int,
) -> dict[str, Any]:
    pk = _Packer()
    keys = _keys(recs)
    ctxs = [_contexts(r) for r in recs]
    text_ids, offsets, store = _token_store(ctxs, [r.window[0] for r in recs])
    vocab_ids, local = torch.unique(store[store >= 0], return_inverse=True)
    tokens = torch.full_like(store, -1)
    tokens[store >= 0] = local
    raw, shown = _display(tokenizer, vocab_ids.tolist())
    wide = vocab_ids.shape[0] >= 0xFFFF
    sentinel = 0xFFFFFFFF if wide else 0xFFFF
    tokens = torch.where(tokens >= 0, tokens, sentinel)

    basis_out = []
    neuron_slot = next((i for i, r in enumerate(recs) if r.unit_label == "neuron"), None)
    for i, (r, c, t, b) in enumerate(zip(recs, ctxs, tables, bases, strict=True)):
        table = t if t is not None else score_units(r)
        # A context is its token's place in the store.
        text_slot = torch.searchsorted(text_ids, c["text_index"].clamp_min(0))
        occ = torch.where(
            c["text_index"] >= 0,
            offsets[text_slot.clamp_max(len(text_ids) - 1)] + c["position"],
            _EMPTY,
        )
        top_value = c["value"][:, 0]
        scale = torch.where(torch.isfinite(top_value) & (top_value > 0), top_value, 1.0)
        q = (c["values"].nan_to_num(0.0).clamp_min(0.0) / scale[:, None, None] * 255).round()
        cols = [k for k in table.columns if k != "unit"]
        unit_order = table.columns["unit"].to(torch.int64)
        inverse = torch.empty_like(unit_order)
        inverse[unit_order] = torch.arange(unit_order.shape[0])
        scores = {
            k: pk.add(f"{i}.score.{k}", table.columns[k][inverse].double(), "<f8") for k in cols
        }
        entry: dict[str, Any] = {
            "key": keys[i],
            "name": r.basis_name,
            "label": r.unit_label,
            "n": r.n_units,
            "K": r.top_k,
            "S": r.n_samples,
            "W": sum(r.window) + 1,
            "before": r.window[0],
            "count": r.count,
            "threshold": r.threshold,
            "columns": cols,
            "scores": scores,
            "occ": pk.add(f"{i}.occ", occ, "<u4"),
            "value": pk.add(f"{i}.value", c["value"].nan_to_num(0.0, neginf=0.0), "<f4"),
            "q": pk.add(f"{i}.q", q.clamp(0, 255), "u1"),
            "scale": pk.add(f"{i}.scale", scale, "<f4"),
            "hist": pk.add(f"{i}.hist", r.histogram, "<u4"),
            "loads": None,
        }
        if b is not None and n_load and b.kind != "neurons" and b.has_directions:
            idx, w = _loadings(b.directions.float(), n_load)
            entry["loads"] = {
                "title": "neurons its decoder direction loads on most",
                "target": keys[neuron_slot] if neuron_slot is not None else None,
                "prefix": "neuron",
                "k": idx.shape[1],
                "idx": pk.add(f"{i}.load_idx", idx, "<u4"),
                "w": pk.add(f"{i}.load_w", w, "<f4"),
            }
        basis_out.append(entry)
    # Neurons: the latents (of the first basis with directions) that use each neuron most.
    if neuron_slot is not None and n_load:
        src = next(
            (
                i
                for i, b in enumerate(bases)
                if b is not None and b.kind == "sae" and b.has_directions
            ),
            next(
                (
                    i
                    for i, b in enumerate(bases)
                    if b is not None and b.kind != "neurons" and b.has_directions
                ),
                None,
            ),
        )
        if src is not None:
            b = bases[src]
            assert b is not None
            idx, w = _loadings(b.directions.float().T, n_load)
            basis_out[neuron_slot]["loads"] = {
                "title": f"{recs[src].unit_label}s whose decoder direction uses it most",
                "target": keys[src],
                "prefix": recs[src].unit_label,
                "k": idx.shape[1],
                "idx": pk.add(f"{neuron_slot}.load_idx", idx, "<u4"),
                "w": pk.add(f"{neuron_slot}.load_w", w, "<f4"),
            }
    first = recs[0]
    default_title = f"Units of {first.model_name or 'a model'}, layer {first.layer}"
    return {
        "version": _PAYLOAD_VERSION,
        "title": title or default_title,
        "model": first.model_name,
        "layer": first.layer,
        "tokens_seen": first.count,
        "docs": {k: SCORE_DOCS.get(k, "") for b in basis_out for k in b["columns"]},
        "hist_edges": [float(e) for e in HIST_EDGES.tolist()],
        "vocab": raw,
        "shown": shown,
        "texts": {
            "index": pk.add("texts.index", text_ids, "<u4"),
            "offsets": pk.add("texts.offsets", offsets, "<u4"),
            "tokens": pk.add("texts.tokens", tokens, "<u4" if wide else "<u2"),
        },
        "bases": basis_out,
        "manifest": pk.manifest,
        "blob": pk.blob(),
    }


# --------------------------------------------------------------------------- html


def _static(name: str) -> str:
    return (resources.files("superposition.explorer") / "static" / name).read_text("utf-8")


def _html(payload: dict[str, Any]) -> str:
    # "<" escaped inside the JSON, so no token string can close the script element.
    data = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).replace("<", "\\u003c")
    parts = {
        "title": html.escape(str(payload["title"])),
        "css": _static("explorer.css"),
        "data": data,
        "js": _static("explorer.js"),
    }
    # One pass, so nothing substituted (a token string, say) is read as a placeholder.
    return re.sub(r"\{\{(\w+)\}\}", lambda m: parts[m.group(1)], _static("explorer.html"))
