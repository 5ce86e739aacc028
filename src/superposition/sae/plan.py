"""Sizing an SAE run on a corpus: which texts train and which judge, how many tokens one pass
holds, and the activation store's epochs and buffer for that.

These are the steps ``superposition sae train`` takes before it trains; a script that builds
its own :class:`~superposition.ActivationStore` takes the same ones.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

from superposition._checks import positive_int
from superposition.probe.corpus import DEFAULT_CORPUS, Corpus, default_corpus, load_corpus

__all__ = ["CorpusSplit", "count_tokens", "split_corpus", "store_buffer_rows", "store_epochs"]

_TOKENIZE_TEXTS = 1024  # texts per tokenizer call in count_tokens: bounded memory, same count


class CorpusSplit(NamedTuple):
    """The texts an SAE trains on and the texts it is judged on (:func:`split_corpus`)."""

    train: Corpus
    """The training texts."""
    held_out: Corpus
    """The texts to evaluate on."""
    disjoint: bool
    """Whether ``held_out`` is truly held out (no text of ``train``)."""


def split_corpus(
    corpus: str | Path, *, text_column: str = "text", eval_texts: int = 2000
) -> CorpusSplit:
    """Training and evaluation texts of ``corpus``.

    The default corpus (``"gutenberg"``, :func:`~superposition.default_corpus`) has a held-out
    split: it trains on ``"train"`` and is judged on the first ``eval_texts`` of ``"test"``.
    Any other corpus (a file or folder, see :func:`~superposition.load_corpus`) has none: it
    trains on all of it and is judged on its first ``eval_texts`` texts, which it also trained
    on (``disjoint=False``, so a report can say so).

    Args:
        corpus: ``"gutenberg"``, or a .txt / .jsonl / .parquet file or a folder of them.
        text_column: the JSONL field / Parquet column of the text.
        eval_texts: at most this many evaluation texts.

    Examples:
        >>> split = split_corpus("gutenberg", eval_texts=3)
        >>> split.disjoint, len(list(split.held_out))
        (True, 3)
    """
    eval_texts = positive_int(eval_texts, "eval_texts")
    if str(corpus) == DEFAULT_CORPUS:
        return CorpusSplit(default_corpus("train"), default_corpus("test").head(eval_texts), True)
    train = load_corpus(Path(corpus), text_column=text_column)
    return CorpusSplit(train, train.head(eval_texts), False)


def count_tokens(texts: Iterable[str], tokenizer: Any, *, max_length: int | None = None) -> int:
    """The number of tokens ``tokenizer`` makes of ``texts`` (special tokens included), each
    text cut at ``max_length`` tokens when it is given, as the model would read them.

    This is what one epoch of an :class:`~superposition.ActivationStore` over ``texts`` yields
    (it drops padding, which this never counts).

    Examples:
        >>> from superposition import load_model
        >>> _, tok = load_model()
        >>> count_tokens(["The cat sat on the mat.", "Hi"], tok)
        12
        >>> count_tokens(["The cat sat on the mat."], tok, max_length=4)
        4
    """
    total = 0
    batch: list[str] = []
    for text in texts:
        batch.append(text)
        if len(batch) == _TOKENIZE_TEXTS:
            total += _count(batch, tokenizer, max_length)
            batch = []
    return total + (_count(batch, tokenizer, max_length) if batch else 0)


def _count(texts: list[str], tokenizer: Any, max_length: int | None) -> int:
    ids = tokenizer(texts, truncation=max_length is not None, max_length=max_length)["input_ids"]
    return sum(len(row) for row in ids)


def store_buffer_rows(batch_size: int, d_in: int) -> int:
    """A shuffling buffer for an :class:`~superposition.ActivationStore` of ``d_in`` neurons:
    up to 16 batches, within 1 GiB of float32 rows, and never under the store's minimum of
    2 batches.

    Examples:
        >>> store_buffer_rows(4096, 1536)   # MiniLM: 16 batches fit in 1 GiB
        65536
        >>> store_buffer_rows(4096, 16384)  # a wide layer: 1 GiB holds fewer rows
        16384
    """
    batch_size = positive_int(batch_size, "batch_size")
    d_in = positive_int(d_in, "d_in")
    return max(2 * batch_size, min(16 * batch_size, 2**28 // d_in))


def store_epochs(samples: int, tokens_per_epoch: int) -> int:
    """Epochs an :class:`~superposition.ActivationStore` needs to yield ``samples`` rows when
    one pass holds ``tokens_per_epoch`` (:func:`count_tokens`): enough passes, and one to spare.

    Examples:
        >>> store_epochs(1000, 400)
        4
        >>> store_epochs(400, 400)
        2
    """
    samples = positive_int(samples, "samples")
    tokens_per_epoch = positive_int(tokens_per_epoch, "tokens_per_epoch")
    return -(-samples // tokens_per_epoch) + 1
