"""The explorer page at scale: 12,288 SAE latents (an 8x SAE on MiniLM's 1,536 layer-0
neurons) beside the neurons, 20 top contexts and 20 samples each, opened in headless Chromium.

The issue's bars are absolute: the page under 25 MB and open (parsed, decompressed, first unit
shown) in under 2 s. Load times are the median of several fresh loads; a side-by-side
baseline, a plain page of the same number of bytes, shows what any browser pays to read a
file that size.

Then memory (issue 27): the peak RSS of ``superposition units`` and ``explore`` with their
defaults (bar: at most 2 GB each), and how it grows when the corpus doubles (bar: 1.2x).

Last, what a newcomer waits for: ``superposition reproduce --quick`` from a fresh process
(bar: under 60 s on 2 cores) and the full ``reproduce`` (no bar), with their peak RSS.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import Row, cli_peak_gb, cli_run, row

LATENTS = 12_288


def _driver() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or "chromium"
    for a in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,900",
    ):
        opts.add_argument(a)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)


def _load_seconds(driver: Any, path: Path, ready: str) -> float:
    driver.get("about:blank")
    t0 = time.perf_counter()
    driver.get(path.as_uri())
    while driver.execute_script(ready) is not True:
        time.sleep(0.005)
    return time.perf_counter() - t0


def _build(folder: Path, n_texts: int) -> tuple[Path, int]:
    import superposition as sp
    from superposition.report.units import book_texts
    from superposition.units import UnitBasis, collect_units, score_units

    model, tokenizer = sp.load_model()
    texts, labels = book_texts(n_texts)
    probe = sp.ActivationProbe(model, layer=0, tokenizer=tokenizer, progress=False)
    sae = sp.SparseAutoencoder(1536, LATENTS, kind="topk", k=32, seed=0)
    recs = collect_units(probe, texts, [None, sae], top_k=20, samples=20, categories=labels)
    page = sp.explore(
        recs,
        folder / "explorer.html",
        tables=[score_units(r) for r in recs],
        bases=[UnitBasis.neurons(1536), UnitBasis.sae(sae)],
    )
    return page, sum(r.n_units for r in recs)


def _page_rows(quick: bool) -> list[Row]:
    if shutil.which("chromedriver") is None or shutil.which("chromium") is None:
        print("explorer: skipped, needs chromium and chromium-driver", file=sys.stderr)
        return []
    folder = Path(tempfile.mkdtemp())
    page, units = _build(folder, 120 if quick else 1200)
    size = page.stat().st_size
    plain = folder / "plain.html"
    plain.write_text("<!DOCTYPE html><title>x</title><pre>" + "x" * size + "</pre>")
    driver = _driver()
    try:
        ready = "return document.body.dataset.ready === '1'"
        plain_ready = "return document.readyState === 'complete'"
        loads, plains, inner = [], [], []
        for _ in range(2 if quick else 7):
            loads.append(_load_seconds(driver, page, ready))
            inner.append(driver.execute_script("return window.spExplorer.loadMs") / 1e3)
            plains.append(_load_seconds(driver, plain, plain_ready))
        # open a unit: click a latent, wait until its contexts are shown
        _load_seconds(driver, page, ready)
        clicks = []
        for i in range(3 if quick else 10):
            row_ = driver.find_elements("css selector", "#list-latent .row")[i]
            unit = row_.get_attribute("data-unit")
            t0 = time.perf_counter()
            row_.click()
            while (
                driver.execute_script(
                    "const a = document.getElementById('unit');"
                    "return a.dataset.unit === arguments[0] && a.dataset.basis === 'latent'"
                    " && !!document.querySelector('#top li');",
                    unit,
                )
                is not True
            ):
                time.sleep(0.002)
            clicks.append(time.perf_counter() - t0)
    finally:
        driver.quit()
        shutil.rmtree(folder, ignore_errors=True)
    load, base = statistics.median(loads), statistics.median(plains)
    n = f"{units:,} units (1,536 neurons + {LATENTS:,} latents) x 20 contexts + 20 samples"
    return [
        row(f"explorer {n}: page size", size / 2**20, "MiB", "< 25 MiB", size < 25 * 2**20),
        row(
            f"explorer {n}: open in headless Chromium until the first unit is shown (median)",
            load,
            "s",
            "< 2 s",
            load < 2.0,
        ),
        row(
            f"explorer {n}: of which the page's own script (median)", statistics.median(inner), "s"
        ),
        row(f"explorer {n}: open vs a plain page of the same size", load / base, "x"),
        row(
            f"explorer {n}: click a latent until its contexts show (median)",
            statistics.median(clicks),
            "s",
        ),
    ]


MEMORY_BAR_GB = 2.0
GROWTH_BAR = 1.2
# Each unit's coherence embeds its 20 contexts with the model: 200 units (the default) cost
# minutes of compute and no memory that 50 do not.
COHERENCE_UNITS = 50


def _memory_rows(quick: bool) -> list[Row]:
    """Peak RSS of ``superposition units`` and ``explore`` with their defaults on the default
    corpus (1,200 held-out paragraphs, top 20 contexts) but 50 units' coherence, scoring the
    neurons, a 4x TopK SAE and a rotation of the neurons; and of ``units`` on half the
    paragraphs, for growth with the corpus (bar: at most 1.2x). The SAE is untrained: memory
    depends on its size, not on its weights."""
    from superposition import SparseAutoencoder

    texts = 120 if quick else 1200
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "sae").mkdir()
        SparseAutoencoder(1536, 6144, kind="topk", k=32, seed=0).save(Path(tmp) / "sae" / "sae")
        common = ["--sae", str(Path(tmp) / "sae"), "--rotation", "--no-progress"]
        common += ["--coherence-units", str(COHERENCE_UNITS)]
        peaks = {
            (cmd, n): cli_peak_gb(
                [cmd, *common, "--texts", str(n), "--out", f"{tmp}/{cmd}{n}.html"]
            )
            for cmd, n in [("units", texts), ("explore", texts), ("units", texts // 2)]
        }
    what = f"({texts:,} paragraphs; neurons + a 4x SAE + a rotation): peak RSS"
    rows = [
        row(
            f"superposition {cmd} {what}",
            peaks[cmd, texts],
            "GB",
            f"<= {MEMORY_BAR_GB:g} GB",
            peaks[cmd, texts] <= MEMORY_BAR_GB,
        )
        for cmd in ("units", "explore")
    ]
    growth = peaks["units", texts] / peaks["units", texts // 2]
    rows.append(
        row(
            f"superposition units: peak RSS on {texts:,} / {texts // 2:,} paragraphs",
            growth,
            "x",
            f"<= {GROWTH_BAR:g}x",
            growth <= GROWTH_BAR,
        )
    )
    return rows


REPRODUCE_QUICK_BAR_S = 60.0


def _reproduce_rows(quick: bool) -> list[Row]:
    """Wall time and peak RSS of ``superposition reproduce --quick`` and of the full run, each
    in a fresh process (a smoke run skips them: they take 1 and 4 minutes)."""
    if quick:
        return []
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for flags in (["--quick"], []):
            seconds, peak = cli_run(["reproduce", *flags, "--no-progress", "--out", tmp])
            name = f"superposition reproduce {' '.join(flags)}".strip()
            quick_run = bool(flags)
            rows.append(
                row(
                    f"{name}: wall time (2 cores, fresh process)",
                    seconds,
                    "s",
                    f"< {REPRODUCE_QUICK_BAR_S:g} s" if quick_run else "",
                    seconds < REPRODUCE_QUICK_BAR_S or not quick_run,
                )
            )
            rows.append(row(f"{name}: peak RSS", peak, "GB"))
    return rows


def run(quick: bool = False) -> list[Row]:
    """The page's size and speed in Chromium, the memory of the commands that build it, and
    the time of ``reproduce``."""
    return _page_rows(quick) + _memory_rows(quick) + _reproduce_rows(quick)


if __name__ == "__main__":
    for r in run(quick="--quick" in sys.argv):
        met = ("yes" if r["met"] else "NO") if r["bar"] else ""
        print(f"{r['name']:<70} {r['value']:>10.4g} {r['unit']:<4} {r['bar']:<9} {met}")
