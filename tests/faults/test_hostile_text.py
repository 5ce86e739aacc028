"""Hostile text (issue 26): tokens that are markup (``</script><script>…``, ``<img onerror=…>``),
NUL bytes, right-to-left marks, empty documents and a 5 MB line, in a corpus file, go through
``collect_units`` into the explorer page, which is then opened in a real headless Chromium: no
script of theirs runs, no alert opens, the page renders and shows the hostile tokens as text.

The tokenizer is a word-level one whose vocabulary *is* the hostile strings, so each reaches
the page whole, as one token (a BERT tokenizer would cut ``<script>`` into harmless pieces).
A corpus line that is not UTF-8 is refused naming its file and line (``tests/test_corpus.py``).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest

import superposition as sp
from conftest import tiny_model
from superposition.units import UnitBasis, collect_units, score_units
from test_explorer import _open, driver  # noqa: F401 - the browser fixture

HOSTILE = [
    "</script><script>window.__pwned=1</script>",
    '<img src=x onerror="window.__pwned=2">',
    "<svg/onload=window.__pwned=3>",
    "\"'><b>bold</b>",
    "nul\x00byte",
    "\u202eevil\u202c",  # right-to-left override
    "&lt;already&gt;",
    "cat",
    "mat",
]


def _tokenizer() -> Any:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", *HOSTILE])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", model_max_length=64
    )


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model, n = tiny_model("bert")
    tokenizer = _tokenizer()
    lines = [" ".join(HOSTILE[i:] + HOSTILE[:i]) for i in range(len(HOSTILE))] * 3
    lines += ["", "   ", "cat " * 1_250_000]  # empty documents and a 5 MB line
    corpus = tmp_path_factory.mktemp("corpus") / "hostile.txt"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    texts = sp.load_corpus(corpus)  # as the commands read it: blank lines are no documents
    assert len(list(texts)) == 3 * len(HOSTILE) + 1
    probe = sp.ActivationProbe(model, tokenizer=tokenizer, batch_size=8, progress=False)
    sae = sp.SparseAutoencoder(n, 2 * n, k=4, seed=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        recs = collect_units(probe, texts, units=[None, sae], top_k=4, samples=2, window=(3, 2))
    assert any("truncated" in str(w.message) for w in caught)  # the 5 MB line, with a warning
    folder = tmp_path_factory.mktemp("hostile")
    # The report's units section renders top contexts too (reproduce --model takes any model).
    from superposition.report._units_html import examples_html

    examples = examples_html(recs[0], score_units(recs[0]), HOSTILE[1])
    (folder / "report.html").write_text(f"<!doctype html><title>r</title>{examples}", "utf-8")
    path = folder / "page.html"
    sp.explore(
        recs,
        path,
        tables=[score_units(r) for r in recs],
        bases=[UnitBasis.neurons(n), UnitBasis.sae(sae)],
        title=HOSTILE[0],
    )
    return path


def test_the_files_hold_no_markup_of_the_texts(page: Path) -> None:
    text = page.read_text("utf-8")
    for word in HOSTILE[:4]:
        assert word not in text  # escaped, in the JSON payload as in the title
    assert text.count("</script>") == text.count("<script")  # no script element was closed early
    report = page.with_name("report.html").read_text("utf-8")
    assert "<mark" in report  # contexts were rendered, the hostile tokens among them
    for word in HOSTILE[:4]:
        assert word not in report
    assert "&lt;img src=x onerror=" in report


def test_no_hostile_script_runs_and_the_tokens_show_as_text(
    driver: Any,  # noqa: F811 - the fixture imported above
    page: Path,
) -> None:
    from selenium.common.exceptions import NoAlertPresentException

    driver.execute_script("window.alert = null")  # a fresh page below gets its own
    _open(driver, page)
    assert driver.execute_script("return window.__pwned === undefined")
    with pytest.raises(NoAlertPresentException):
        _ = driver.switch_to.alert.text
    assert driver.title == HOSTILE[0]  # the title as text
    driver.find_element("css selector", "#list-neuron .row").click()
    shown = driver.find_element("tag name", "body").text
    assert "onerror" in shown or "</script>" in shown  # a hostile token, shown as text
    assert driver.execute_script("return window.__pwned === undefined")
    severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == []
    driver.get("about:blank")
    driver.get(page.with_name("report.html").as_uri())
    assert driver.execute_script("return window.__pwned === undefined")
    assert "onerror" in driver.find_element("tag name", "body").text
