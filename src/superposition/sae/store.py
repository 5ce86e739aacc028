"""The activation store: a corpus's MLP neurons as shuffled training batches, in bounded memory.

:class:`ActivationStore` runs an :class:`~superposition.ActivationProbe` (one layer, padding
dropped) over a corpus a chunk of texts at a time and passes the rows through a shuffling
buffer: rows accumulate until the buffer holds ``buffer_rows``, the buffer is permuted, and
whole batches are taken from it until half of it is left, so a batch mixes tokens from many
texts. Each epoch yields every token of the corpus exactly once (the last batch may be
short); memory is the buffer plus one chunk, whatever the corpus's size.

With ``cache_dir`` the first pass also writes each chunk's rows to a safetensors shard
(``shard-00000.safetensors``, ...) and a ``manifest.json`` after every shard. Later epochs,
and later runs with the same model, layer and corpus, read the shards (memory-mapped) instead
of running the model; an interrupted first pass resumes after its last complete shard. One
store writes a folder at a time (a ``writer.lock`` file holding its process id: a second
writer is refused, a lock left by a killed process is taken over). The shards hold exactly
what the probe returned, and the same seed shuffles them the same way, so
training from the cache is bit-identical to training from the model.

Under ``torch.distributed`` (``distributed=None`` with a process group of several ranks, or
``True``) each rank's store reads its share of the corpus (text ``i`` on rank
``i % world_size``), as :meth:`~superposition.ActivationProbe.capture` shares texts, and
caches it in ``cache_dir/rank{rank}``: pass every rank the same whole corpus and folder.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from superposition import distributed as _distributed
from superposition._checks import generator
from superposition._checks import positive_int as _positive_int
from superposition._io import (
    DIGEST_KEY,
    atomic_path,
    atomic_write,
    check_digest,
    save_tensors,
    unreadable,
    writer_lock,
)
from superposition.probe.corpus import Corpus, load_corpus
from superposition.probe.probe import ActivationProbe

__all__ = ["ActivationStore"]

_FORMAT = "ActivationStore/1"


def _weights_fingerprint(model: torch.nn.Module) -> str:
    """A hash of the model's weights (the first 1024 values of each parameter): enough to tell
    two models apart, cheap for a large one."""
    digest = hashlib.sha1()
    with torch.no_grad():
        for name, param in model.named_parameters():
            head = param.detach().reshape(-1)[:1024].to("cpu", torch.float64)
            digest.update(name.encode("utf-8"))
            digest.update(head.numpy().tobytes())
    return digest.hexdigest()[:16]


class ActivationStore:
    """Shuffled ``[batch, n_neurons]`` batches of one layer's MLP neurons over a corpus.

    A probe of several sites of one layer gives their rows side by side: with
    ``site=["mlp_in", "mlp_out"]`` each row is ``[x | y]``, what a
    :class:`~superposition.Transcoder` trains on.

    Iterate it (``for batch in store``) for ``epochs`` passes over the corpus, or hand it to
    :meth:`~superposition.SparseAutoencoder.fit` as its source.

    Args:
        probe: an :class:`~superposition.ActivationProbe` of one layer (one site or several)
            without padding.
        texts: anything :func:`~superposition.load_corpus` takes (a list, a file, a dataset,
            a :class:`~superposition.Corpus`).
        batch_size: rows per batch.
        buffer_rows: rows the shuffling buffer holds before it is permuted (the bound on
            memory, with one chunk: ``buffer_rows x n_neurons x 4`` bytes); at least
            ``2 x batch_size``.
        chunk_texts: texts per call of the probe (and per cached shard).
        epochs: passes over the corpus per iteration of the store.
        seed: seed of the shuffling; the same seed gives the same batches.
        cache_dir: a folder for the cached shards (created if needed); ``None`` keeps
            nothing on disk.
        progress: a tqdm bar over the texts the model runs on.
        distributed: ``None``: under an initialised ``torch.distributed`` process group of
            more than one rank, read this rank's share of ``texts`` (and cache it in
            ``cache_dir/rank{rank}``); ``True``: require a process group; ``False``: read
            all of ``texts``.

    Raises:
        ValueError: a probe of several layers or with padding, bad sizes, or a ``cache_dir``
            holding the activations of another model (by name and weights), layer or corpus
            (by name and content).

    Examples:
        >>> from superposition import ActivationProbe, load_model
        >>> bert, tokenizer = load_model()
        >>> probe = ActivationProbe(bert, layer=0, tokenizer=tokenizer, progress=False)
        >>> store = ActivationStore(probe, ["a cat sat", "on the mat"], batch_size=4, seed=0)
        >>> [tuple(b.shape) for b in store]  # 10 tokens: [CLS] a cat sat [SEP] x 2
        [(4, 1536), (4, 1536), (2, 1536)]
    """

    def __init__(
        self,
        probe: ActivationProbe[Any, Any],
        texts: Corpus | Iterable[str] | str | os.PathLike[str] | Any,
        *,
        batch_size: int = 4096,
        buffer_rows: int = 32_768,
        chunk_texts: int = 256,
        epochs: int = 1,
        seed: int | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        progress: bool = False,
        distributed: bool | None = None,
    ) -> None:
        if not isinstance(probe, ActivationProbe):
            raise TypeError(f"probe must be an ActivationProbe, got {type(probe).__name__}")
        if len(probe.layers) != 1:
            raise ValueError(
                f"the store reads one layer, but the probe reads layers {probe.layers}; make "
                "one ActivationProbe per layer"
            )
        if probe.keep_padding:
            raise ValueError(
                "the probe keeps padding rows, which are not data; use keep_padding=False"
            )
        self.batch_size = _positive_int(batch_size, "batch_size")
        self.buffer_rows = _positive_int(buffer_rows, "buffer_rows")
        if buffer_rows < 2 * batch_size:
            raise ValueError(
                f"buffer_rows must be at least 2 x batch_size = {2 * batch_size} so that "
                f"batches mix texts, got {buffer_rows}"
            )
        self.chunk_texts = _positive_int(chunk_texts, "chunk_texts")
        self.epochs = _positive_int(epochs, "epochs")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"seed must be an int or None, got {seed!r}")
        self.probe = probe
        self.corpus = load_corpus(texts)
        self.share = _distributed.resolve(distributed)
        self.seed = seed
        self.progress = progress
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        if self.share is not None:
            rank, size = self.share
            self.corpus = self.corpus.shard(rank, size)
            if self.cache_dir is not None:
                self.cache_dir = self.cache_dir / f"rank{rank}"
        self._identity = {
            "format": _FORMAT,
            "model": getattr(getattr(probe.model, "config", None), "name_or_path", "")
            or type(probe.model).__name__,
            "module": "+".join(p.module_name for p in probe.sites),
            "weights": _weights_fingerprint(probe.model),
            "corpus": self.corpus.name,
            "corpus_fingerprint": self.corpus.fingerprint,
            "chunk_texts": self.chunk_texts,
        }
        if self.cache_dir is not None:
            self._check_cache()

    def __repr__(self) -> str:
        return (
            f"ActivationStore({self.probe!r}, corpus={self.corpus.name!r}, "
            f"batch_size={self.batch_size}, buffer_rows={self.buffer_rows}, "
            f"epochs={self.epochs}, seed={self.seed}, cache_dir={self.cache_dir})"
        )

    # ------------------------------------------------------------------ the cache

    def _manifest_path(self) -> Path:
        assert self.cache_dir is not None
        return self.cache_dir / "manifest.json"

    def _read_manifest(self) -> dict[str, Any] | None:
        path = self._manifest_path()
        if not path.is_file():
            return None
        try:
            manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as err:
            raise ValueError(f"{path} is not a readable manifest ({err})") from err
        return manifest

    def _check_cache(self) -> None:
        assert self.cache_dir is not None
        if self.cache_dir.exists() and not self.cache_dir.is_dir():
            raise ValueError(f"cache_dir {str(self.cache_dir)!r} exists and is not a folder")
        manifest = self._read_manifest()
        if manifest is None:
            return
        theirs = {k: manifest.get(k) for k in self._identity}
        if theirs != self._identity:
            diff = {k: (theirs[k], v) for k, v in self._identity.items() if theirs[k] != v}
            raise ValueError(
                f"cache_dir {str(self.cache_dir)!r} holds other activations (cached vs asked: "
                f"{diff}); use another folder or delete this one"
            )

    @property
    def cached(self) -> bool:
        """Whether the whole corpus is in ``cache_dir`` (later epochs read it from disk)."""
        if self.cache_dir is None:
            return False
        manifest = self._read_manifest()
        return bool(manifest and manifest.get("complete"))

    def _write_manifest(self, shards: list[dict[str, Any]], complete: bool) -> None:
        payload = {**self._identity, "shards": shards, "complete": complete}
        atomic_write(self._manifest_path(), json.dumps(payload, indent=1))

    def _from_cache(self, shards: list[dict[str, Any]]) -> Iterator[Tensor]:
        from safetensors import safe_open

        assert self.cache_dir is not None
        for shard in shards:
            path = self.cache_dir / shard["file"]
            try:
                with safe_open(str(path), framework="pt") as fh:
                    header = fh.metadata()
                    values: Tensor = fh.get_tensor("values")
            except Exception as err:  # a missing shard too (OSError), or one with no values
                if not (unreadable(err) or isinstance(err, KeyError)):
                    raise
                raise ValueError(self._bad_shard(path, f"cannot be read ({err})")) from err
            check_digest(
                path,
                (header or {}).get(DIGEST_KEY),
                {"values": values},
                f"delete the cache folder {str(self.cache_dir)!r} and run again to rebuild it",
            )
            if values.ndim != 2 or values.shape[0] != shard["rows"]:
                raise ValueError(
                    self._bad_shard(
                        path,
                        f"holds shape {tuple(values.shape)}, not the {shard['rows']} rows "
                        "the manifest lists",
                    )
                )
            yield values
            del values

    def _bad_shard(self, path: Path, what: str) -> str:
        return (
            f"the activation cache's shard {str(path)!r} {what}: it was damaged or replaced "
            f"after it was written; delete the cache folder {str(self.cache_dir)!r} and run "
            "again to rebuild it from the model"
        )

    # ------------------------------------------------------------------ the data

    def _probe_chunks(self, texts: Iterator[str], done: int = 0) -> Iterator[tuple[int, Tensor]]:
        """``(n_texts, rows)`` per chunk of texts, straight from the probe."""
        from tqdm.auto import tqdm

        total = self.corpus.known_length
        with (
            tqdm(
                total=total,
                initial=done,
                disable=not self.progress,
                desc="activations",
                unit="text",
            ) as bar,
            self.probe.truncation_summary(),
        ):
            while chunk := list(itertools.islice(texts, self.chunk_texts)):
                acts = self.probe.run(chunk)
                # several sites: their rows side by side
                rows = (
                    torch.cat([a.values for a in acts], 1)
                    if isinstance(acts, list)
                    else acts.values
                )
                del acts
                yield len(chunk), rows
                # Nothing of this chunk is kept while the probe runs the next one (a name
                # left bound here held a whole chunk of rows, ~110 MB for MiniLM, at the peak).
                del rows
                bar.update(len(chunk))

    def _chunks(self) -> Iterator[Tensor]:
        """The corpus's rows, a chunk at a time, in corpus order (cached where possible)."""
        if self.cache_dir is None:
            for _, rows in self._probe_chunks(iter(self.corpus)):
                yield rows
                del rows  # not held while the next chunk is made
            return
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        manifest = self._read_manifest()
        if manifest and manifest.get("complete"):
            yield from self._from_cache(list(manifest["shards"]))
            return
        # One writer at a time: a second store writing the same folder would interleave
        # shards. The manifest is read again under the lock (the other may have added some).
        with writer_lock(self.cache_dir / "writer.lock", f"the activation cache {self.cache_dir}"):
            manifest = self._read_manifest()
            shards: list[dict[str, Any]] = list(manifest["shards"]) if manifest else []
            yield from self._from_cache(shards)
            if manifest and manifest.get("complete"):
                return
            done = sum(s["texts"] for s in shards)
            texts = itertools.islice(iter(self.corpus), done, None)  # after the last shard
            for n_texts, rows in self._probe_chunks(texts, done):
                name = f"shard-{len(shards):05d}.safetensors"
                with atomic_path(self.cache_dir / name) as tmp:
                    save_tensors(tmp, {"values": rows})
                shards.append({"file": name, "texts": n_texts, "rows": rows.shape[0]})
                self._write_manifest(shards, complete=False)
                yield rows
                del rows
            self._write_manifest(shards, complete=True)

    def _epoch(self, generator: torch.Generator) -> Iterator[Tensor]:
        """One pass: every row once, through a shuffling buffer of ``buffer_rows`` slots.

        The buffer is allocated once, on the first chunk, and never grows or is copied: a
        chunk's rows go into free slots; when none is free the slots are permuted, whole
        batches are gathered from the first half (or so) of the permutation, whose slots are
        then free, and the rest stay for later batches, so a batch mixes tokens from many
        texts. At the end the rows still held are gathered in a random order. Memory: the
        buffer and one chunk (a buffer grown by concatenation held two at once).
        """
        cap, B = self.buffer_rows, self.batch_size
        n_out = (cap - cap // 2) // B * B  # at least one batch: cap >= 2 B
        buf: Tensor | None = None
        free = torch.arange(cap)  # the free slots, in the order they are filled
        for rows in self._chunks():
            if buf is None:
                buf = rows.new_empty(cap, rows.shape[1])
            at = 0
            while at < rows.shape[0]:
                take = min(free.shape[0], rows.shape[0] - at)
                buf.index_copy_(0, free[:take], rows[at : at + take])
                free, at = free[take:], at + take
                if free.shape[0]:
                    continue
                perm = torch.randperm(cap, generator=generator)
                for start in range(0, n_out, B):
                    yield buf[perm[start : start + B]]  # a gathered copy: the slots are free
                free = perm[:n_out]
            del rows
        if buf is not None and free.shape[0] < cap:
            held = torch.ones(cap, dtype=torch.bool)
            held[free] = False
            slots = held.nonzero().squeeze(1)
            slots = slots[torch.randperm(slots.shape[0], generator=generator)]
            for start in range(0, slots.shape[0], B):
                yield buf[slots[start : start + B]]

    def __iter__(self) -> Iterator[Tensor]:
        g = generator(self.seed)
        for _ in range(self.epochs):
            yield from self._epoch(g)
