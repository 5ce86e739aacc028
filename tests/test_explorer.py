"""The explorer page: its payload decoded independently in Python, and the page driven in a real
headless Chromium (Debian's ``chromium`` and ``chromium-driver`` through Selenium).

Without a browser the browser tests skip, so the README's test command passes on a fresh
machine; CI installs the browser and sets ``SUPERPOSITION_BROWSER=require``, which turns a
missing browser into a failure.
"""

from __future__ import annotations

import base64
import collections
import gzip
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import superposition as sp
from conftest import tiny_model
from superposition.units import UnitBasis, UnitStatistics, UnitTable, collect_units, score_units

# --------------------------------------------------------------------------- a page


@pytest.fixture(scope="module")
def built(tokenizer: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Neurons and the latents of a (random) SAE of a tiny BERT over some book paragraphs."""
    model, n = tiny_model("bert")
    texts = [t for t in sp.default_corpus().head(60) if len(t.split()) < 80][:40]
    probe = sp.ActivationProbe(model, tokenizer=tokenizer, batch_size=16, progress=False)
    sae = sp.SparseAutoencoder(n, 2 * n, k=4, seed=0)
    bases = [UnitBasis.neurons(n), UnitBasis.sae(sae)]
    recs = collect_units(probe, texts, units=[None, sae], top_k=6, samples=4, window=(4, 2))
    tables = [score_units(r) for r in recs]
    path = tmp_path_factory.mktemp("explorer") / "page.html"
    sp.explore(recs, path, tables=tables, bases=bases)
    return {"path": path, "recs": recs, "tables": tables, "bases": bases, "sae": sae, "n": n}


def _payload(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray[Any, Any]]]:
    """The page's JSON and its arrays, decoded without the library's code."""
    text = path.read_text("utf-8")
    m = re.search(r'<script type="application/json" id="sp-data">(.*?)</script>', text, re.S)
    assert m is not None
    data = json.loads(m.group(1))
    raw = gzip.decompress(base64.b64decode(data["blob"]))
    arrays = {
        name: np.frombuffer(raw, dtype=np.dtype(f"<{t}"), count=n, offset=off)
        for name, (off, n, t) in data["manifest"].items()
    }
    return data, arrays


# --------------------------------------------------------------------------- the file


def test_the_file_is_self_contained(built: dict[str, Any]) -> None:
    text = built["path"].read_text("utf-8")
    # No URL the browser could fetch: no http(s) anywhere, no src=/href= except fragments.
    assert not re.search(r"https?:", text)
    for _, attr in re.findall(r"""\b(?:src|href)\s*=\s*(["'])(.*?)\1""", text):
        assert attr.startswith("#"), attr
    assert "<link" not in text
    assert "@import" not in text
    assert "url(" not in text
    assert text.count("<script") == 2  # the data block and the inline program


def test_payload_holds_the_records_exactly(built: dict[str, Any]) -> None:
    data, arr = _payload(built["path"])
    tok = arr[data["texts"]["tokens"]].astype(np.int64)
    offsets = arr[data["texts"]["offsets"]].astype(np.int64)
    text_index = arr[data["texts"]["index"]]
    vocab = data["vocab"]
    for b, rec, table in zip(data["bases"], built["recs"], built["tables"], strict=True):
        L, W, before = b["K"] + b["S"], b["W"], b["before"]
        occ, value, q = arr[b["occ"]], arr[b["value"]], arr[b["q"]]
        scale = arr[b["scale"]]
        assert np.array_equal(arr[b["hist"]].reshape(rec.n_units, -1), rec.histogram.numpy())
        for c in b["columns"]:
            expect = table[c].numpy()
            assert np.array_equal(arr[b["scores"][c]], expect, equal_nan=True), c
        for u in range(rec.n_units):
            got = []
            for slot in range(u * L, u * L + b["K"]):
                if occ[slot] == 0xFFFFFFFF:
                    continue
                g = int(occ[slot])
                t = int(np.searchsorted(offsets, g, side="right") - 1)
                pos = g - offsets[t]
                lo, hi = max(offsets[t], g - before), min(offsets[t + 1], g - before + W)
                got.append((float(value[slot]), int(text_index[t]), int(pos), tok[lo:hi].tolist()))
                ctx = rec.top(u)[len(got) - 1]
                # the shading: 8 bits of the unit's largest activation
                qv = q[slot * W : (slot + 1) * W][lo - (g - before) : hi - (g - before)]
                want = np.clip(np.array(ctx.values), 0, None) / scale[u] * 255
                assert np.abs(qv - want).max() <= 0.5 + 1e-3
            expect = [(c.value, c.text_index, c.position, c.tokens) for c in rec.top(u)]
            assert [(v, t, p, [vocab[i] for i in ids]) for v, t, p, ids in got] == expect


def test_loadings_are_the_largest_decoder_weights(built: dict[str, Any]) -> None:
    data, arr = _payload(built["path"])
    W = built["sae"].W_dec.detach().numpy()  # [latents, neurons]
    neurons, latents = data["bases"]
    k = latents["loads"]["k"]
    idx = arr[latents["loads"]["idx"]].reshape(-1, k)
    w = arr[latents["loads"]["w"]].reshape(-1, k)
    for i in range(W.shape[0]):
        order = np.argsort(-np.abs(W[i]), kind="stable")[:k]
        assert set(idx[i].tolist()) == set(order.tolist())
        assert np.array_equal(w[i], W[i, idx[i]])
    nidx = arr[neurons["loads"]["idx"]].reshape(-1, k)
    for j in range(W.shape[1]):
        assert np.abs(W[nidx[j], j]).min() >= np.sort(np.abs(W[:, j]))[-k]
    assert (neurons["loads"]["target"], latents["loads"]["target"]) == ("latent", "neuron")


def test_bad_input_is_refused_before_any_file(built: dict[str, Any], tmp_path: Path) -> None:
    recs, tables = built["recs"], built["tables"]
    out = tmp_path / "p.html"
    with pytest.raises(ValueError, match="records is empty"):
        sp.explore([], out)
    with pytest.raises(TypeError, match="must be a UnitStatistics or a list"):
        sp.explore([recs[0], "latents"], out)  # type: ignore[list-item]
    with pytest.raises(ValueError, match="tables must have one entry per record"):
        sp.explore(recs, out, tables=tables[:1])
    with pytest.raises(ValueError, match="must be a UnitTable with"):
        sp.explore(recs, out, tables=[tables[1], tables[0]])
    with pytest.raises(ValueError, match="must be a UnitBasis with"):
        sp.explore(recs, out, bases=list(reversed(built["bases"])))
    with pytest.raises(ValueError, match="saw no tokens"):
        sp.explore(UnitStatistics(3), out)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        sp.explore(recs[0], tmp_path / "missing" / "p.html")
    assert list(tmp_path.iterdir()) == []


def test_one_record_without_tokenizer_or_tables(tmp_path: Path) -> None:
    s = UnitStatistics(3, top_k=2, samples=0, window=1)
    s.update(
        torch.tensor([[1.0, 0.0, 2.0], [3.0, 0.5, -1.0]]),
        text_index=torch.tensor([0, 0]),
        position=torch.tensor([0, 1]),
        token_ids=torch.tensor([70000, 5]),
    )
    data, _arr = _payload(s.explore(tmp_path / "one.html", title="three <units>"))
    assert data["title"] == "three <units>"
    assert "three &lt;units&gt;" in (tmp_path / "one.html").read_text("utf-8")
    assert data["vocab"] == ["<5>", "<70000>"]
    assert data["bases"][0]["loads"] is None
    assert data["bases"][0]["columns"] == [c for c in score_units(s).columns if c != "unit"]


# --------------------------------------------------------------------------- in a browser


def _browser_paths() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        return None
    try:
        import selenium  # noqa: F401
    except ImportError:
        return None
    return browser, driver


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    paths = _browser_paths()
    if paths is None:
        if os.environ.get("SUPERPOSITION_BROWSER") == "require":
            pytest.fail(
                "SUPERPOSITION_BROWSER=require but chromium, chromedriver or selenium is missing"
            )
        pytest.skip("needs chromium, chromium-driver (apt) and selenium (the test extra)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = paths[0]
    for a in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,900",
    ):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    d = webdriver.Chrome(service=Service(paths[1]), options=opts)
    try:
        yield d
    finally:
        d.quit()


def _open(driver: Any, path: Path, fragment: str = "") -> None:
    driver.get("about:blank")  # a fresh page, not a jump within the last one
    driver.get(path.as_uri() + fragment)
    driver.get_log("performance")  # only the requests of this load from here on
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 30).until(
        lambda d: d.execute_script("return document.body.dataset.ready") == "1"
    )


def _rows(driver: Any, key: str) -> dict[int, int]:
    """The rendered rows of a list: position in the list -> unit number."""
    rows = driver.find_elements("css selector", f"#list-{key} .row")
    return {int(r.get_attribute("data-pos")): int(r.get_attribute("data-unit")) for r in rows}


def _agrees(rows: dict[int, int], order: list[int]) -> bool:
    return len(rows) >= min(10, len(order)) and all(order[p] == u for p, u in rows.items())


def test_no_request_and_no_console_error(driver: Any, built: dict[str, Any]) -> None:
    driver.get(built["path"].as_uri())
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 30).until(
        lambda d: d.execute_script("return document.body.dataset.ready") == "1"
    )
    driver.find_element("css selector", "#list-latent .row").click()
    driver.find_element("id", "token").send_keys("the\n")
    urls = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    assert urls == [built["path"].as_uri()]
    errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    assert errors == []


def test_a_unit_shows_its_contexts_scores_and_loadings(driver: Any, built: dict[str, Any]) -> None:
    _open(driver, built["path"])
    rec, table = built["recs"][1], built["tables"][1]
    first = driver.find_element("css selector", "#list-latent .row")
    u = int(first.get_attribute("data-unit"))
    first.click()
    art = driver.find_element("id", "unit")
    assert (art.get_attribute("data-basis"), art.get_attribute("data-unit")) == ("latent", str(u))
    for dd in art.find_elements("css selector", "dd[data-col]"):
        want = float(table[dd.get_attribute("data-col")][u])
        got = float(dd.get_attribute("data-value"))
        assert got == want or (np.isnan(got) and np.isnan(want))
    items = art.find_elements("css selector", "#top li[data-value]")
    contexts = [c for c in rec.top(u) if c.value > rec.threshold]  # where it fires
    assert len(items) == len(contexts)
    for li, ctx in zip(items, contexts, strict=True):
        assert float(li.get_attribute("data-value")) == np.float32(ctx.value)
        spans = li.find_elements("css selector", ".t")
        assert [s.get_attribute("data-token") for s in spans] == ctx.tokens
        shade = [int(s.get_attribute("data-q")) for s in spans]
        # the most active token of the window is shaded most
        assert shade[int(np.argmax(ctx.values))] == max(shade)
        assert "c" in spans[ctx.center].get_attribute("class").split()
    loads = [
        int(li.get_attribute("data-unit")) for li in art.find_elements("css selector", "#loads li")
    ]
    W = built["sae"].W_dec.detach()[u]
    assert set(loads) == set(W.abs().topk(len(loads)).indices.tolist())


def test_top_contexts_where_a_unit_does_not_fire_are_not_shown(
    driver: Any, built: dict[str, Any]
) -> None:
    rec = built["recs"][1]
    counts = [sum(c.value > rec.threshold for c in rec.top(u)) for u in range(rec.n_units)]
    u = next((u for u, n in enumerate(counts) if 0 < n < rec.top_k), None)
    if u is None:
        pytest.skip("every latent of this run fires on at least top_k tokens")
    _open(driver, built["path"], f"#latent-{u}")
    items = driver.find_elements("css selector", "#top li[data-value]")
    assert len(items) == counts[u]
    note = driver.find_element("css selector", "#top li.note").text
    assert note == f"active on {counts[u]} tokens only"


def test_sorting_matches_the_library_table(driver: Any, built: dict[str, Any]) -> None:
    from selenium.webdriver.support.ui import Select

    _open(driver, built["path"])
    table: UnitTable = built["tables"][0]
    sel = Select(driver.find_element("id", "sort"))
    for col in ("token_diversity", "density", "max_activation"):
        sel.select_by_value(col)
        assert _agrees(_rows(driver, "neuron"), table.sort(col, descending=True)["unit"].tolist())
    driver.find_element("id", "dir").click()
    assert _agrees(_rows(driver, "neuron"), table.sort("max_activation")["unit"].tolist())


def _shown(driver: Any, basis: str, unit: int | None = None) -> Any:
    """The unit panel, once it shows a unit of ``basis`` (``unit``, when given): a link moves
    the page through the address's fragment, whose event comes after the click returns."""
    from selenium.webdriver.support.ui import WebDriverWait

    def ready(d: Any) -> bool:
        art = d.find_element("id", "unit")
        ok = art.get_attribute("data-basis") == basis
        return bool(ok and (unit is None or art.get_attribute("data-unit") == str(unit)))

    WebDriverWait(driver, 10).until(ready)
    return driver.find_element("id", "unit")


def _filter(driver: Any, text: str) -> None:
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    box = driver.find_element("id", "filter")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.DELETE)  # as a user would (clear() sends no input event)
    box.send_keys(text)
    WebDriverWait(driver, 10).until(
        lambda d: d.execute_script("return document.body.dataset.filter") == text
    )


def test_filter_and_token_search(driver: Any, built: dict[str, Any]) -> None:
    _open(driver, built["path"])
    neurons, latents = built["recs"]
    _filter(driver, "12")
    assert _rows(driver, "neuron") == {0: 12}
    assert _rows(driver, "latent") == {0: 12}
    _filter(driver, "density<0.3")
    want = [u for u in range(neurons.n_units) if float(built["tables"][0]["density"][u]) < 0.3]
    count = driver.find_element("css selector", "#list-neuron").find_element("xpath", "..")
    assert count.find_element("css selector", ".count").text.startswith(f"{len(want)} of ")
    by_max = sorted(want, key=lambda u: (-float(built["tables"][0]["max_activation"][u]), u))
    assert _agrees(_rows(driver, "neuron"), by_max)

    # a token: units whose top contexts fire on it most often (the row's summary)
    def summary(rec: UnitStatistics, u: int) -> list[str]:
        counts = collections.Counter(c.token for c in rec.top(u) if c.value > rec.threshold)
        return [t for t, _ in counts.most_common(4)]

    _filter(driver, "the")
    want = [u for u in range(neurons.n_units) if "the" in summary(neurons, u)]
    assert want
    assert driver.find_element("css selector", "#lists .pane .count").text.startswith(
        f"{len(want)} of "
    )
    _filter(driver, "")
    # token search: every unit with the token at the centre of a top context, largest first
    box = driver.find_element("id", "token")
    box.clear()
    box.send_keys("the\n")
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 10).until(lambda d: d.find_elements("css selector", "#results p"))
    hits = driver.find_elements("css selector", "#hits li")
    expect = []
    for key, rec in (("neuron", neurons), ("latent", latents)):
        for u in range(rec.n_units):
            # the token itself, not the piece "##the", where the unit fires
            vals = [c.value for c in rec.top(u) if c.token == "the" and c.value > rec.threshold]
            if vals:
                expect.append((key, u, max(vals)))
    expect.sort(key=lambda e: (-np.float32(e[2]), e[0] != "neuron", e[1]))
    got = [
        (
            h.get_attribute("data-basis"),
            int(h.get_attribute("data-unit")),
            float(h.get_attribute("data-value")),
        )
        for h in hits
    ]
    assert got == [(k, u, float(np.float32(v))) for k, u, v in expect][: len(got)]
    assert got
    hits[0].find_element("css selector", "a").click()
    _shown(driver, got[0][0], got[0][1])


def test_permalink_and_keyboard(driver: Any, built: dict[str, Any]) -> None:
    _open(driver, built["path"], "#latent-7")
    art = driver.find_element("id", "unit")
    assert (art.get_attribute("data-basis"), art.get_attribute("data-unit")) == ("latent", "7")
    assert driver.find_element("id", "row-latent-7").get_attribute("aria-selected") == "true"
    # a loading link moves to the neuron, and the address follows
    link = driver.find_element("css selector", "#loads a")
    target = int(link.get_attribute("href").rsplit("-", 1)[1])
    link.click()
    art = _shown(driver, "neuron", target)
    assert (
        driver.execute_script("return location.hash") == f"#neuron-{art.get_attribute('data-unit')}"
    )
    from selenium.webdriver.common.keys import Keys

    box = driver.find_element("id", "list-neuron")
    order = built["tables"][0].sort("max_activation", descending=True)["unit"].tolist()
    driver.execute_script("arguments[0].focus()", box)
    start = int(art.get_attribute("data-unit"))
    box.send_keys(Keys.ARROW_DOWN)
    assert int(art.get_attribute("data-unit")) == order[order.index(start) + 1]
    box.send_keys(Keys.HOME)
    assert int(art.get_attribute("data-unit")) == order[0]
