"""`superposition reproduce --quick`: files, keys, determinism, and a report that embeds every
figure."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import re
import stat
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from superposition.report import ReproduceConfig, phase_losses, reproduce


class _NoPngs(contextlib.nullcontext["_NoPngs"]):
    def __init__(self, dpi: int) -> None:
        super().__init__(self)

    def submit(self, figures: dict[str, Any]) -> None:
        pass

    def results(self, figures: dict[str, Any]) -> tuple[dict[str, bytes], dict[str, float]]:
        return dict.fromkeys(figures, b""), dict.fromkeys(figures, 1.0)


@pytest.fixture(scope="module")
def quick_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two runs with one seed. The second is for ``metrics.json`` alone (determinism), so it
    encodes no PNGs (a fifth of a quick run's work): the figures are drawn from the numbers
    compared, and the first run's images are checked on their own."""
    a = tmp_path_factory.mktemp("run_a")
    b = tmp_path_factory.mktemp("run_b")
    reproduce(ReproduceConfig(out=a, quick=True, seed=0, progress=False))
    with pytest.MonkeyPatch.context() as mp:
        # the module, not the function of the same name that the package exports
        module = importlib.import_module("superposition.report.reproduce")
        mp.setattr(module, "PngEncoder", _NoPngs)
        reproduce(ReproduceConfig(out=b, quick=True, seed=0, progress=False))
    return a, b


def _strip_volatile(m: dict[str, Any]) -> dict[str, Any]:
    m = dict(m)
    m.pop("timings_s")
    m["config"] = {k: v for k, v in m["config"].items() if k not in ("date", "out")}
    return m


def test_metrics_json_has_the_documented_keys(quick_runs: tuple[Path, Path]) -> None:
    m = json.loads((quick_runs[0] / "metrics.json").read_text())
    assert set(m) == {"section3", "section5", "double_descent", "units", "config", "timings_s"}
    assert set(m["section3"]["results"]) == {
        "1_linear_top_m_orthogonal",
        "2_relu_dense_top_m",
        "3_relu_sparse_superposition",
    }
    s5 = m["section5"]
    assert set(s5) >= {
        "categories",
        "category_average",
        "pooled",
        "token_count_control",
        "verdicts",
        "model_facts",
        "paper_model",
    }
    assert set(s5["categories"]) == {"language", "math_and_logic", "miscellaneous"}
    analyses = {"paper", "no_padding", "corrected", "baseline_paper", "baseline"}
    for cat in [*s5["categories"].values(), s5["pooled"], s5["category_average"]]:
        assert set(cat) == analyses
        assert cat["paper"]["n_pad_tokens"] > 0, "the paper's analysis keeps padding"
        assert cat["corrected"]["n_pad_tokens"] == 0
        assert cat["corrected"]["n_neurons"] == 1536
    assert s5["model_facts"]["mlp_neurons"] == 1536
    assert s5["paper_model"]["mlp_neurons"] == 3072
    assert set(m["config"]["versions"]) >= {"superposition", "torch", "transformers"}
    assert m["config"]["seed"] == 0


def test_section3_results_hold_in_the_quick_run(quick_runs: tuple[Path, Path]) -> None:
    m = json.loads((quick_runs[0] / "metrics.json").read_text())
    assert all(m["section3"]["results"].values()), m["section3"]["results"]


def test_same_seed_same_numbers(quick_runs: tuple[Path, Path]) -> None:
    a, b = (json.loads((d / "metrics.json").read_text()) for d in quick_runs)
    assert _strip_volatile(a) == _strip_volatile(b)


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.alts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        d = dict(attrs)
        if tag == "img":
            assert (d.get("src") or "").startswith("data:image/png;base64,")
            self.alts.append(d.get("alt") or "")


def test_report_embeds_every_figure(quick_runs: tuple[Path, Path]) -> None:
    out = quick_runs[0]
    parser = _Images()
    parser.feed((out / "report.html").read_text())
    pngs = {p.stem for p in out.glob("*.png")}
    assert len(pngs) >= 4 + 3 * 3 * 4
    assert pngs <= set(parser.alts)


def test_pngs_are_not_blank(quick_runs: tuple[Path, Path]) -> None:
    from matplotlib.image import imread

    for png in sorted(quick_runs[0].glob("*.png")):
        img = imread(png)
        colours = np.unique(img.reshape(-1, img.shape[-1]), axis=0)
        assert len(colours) > 1, f"{png.name} is a single colour"


@pytest.mark.parametrize(("s", "r"), [(1.0, 0.5), (0.1, 2.0), (0.01, 1.0)])
def test_phase_losses_match_monte_carlo(s: float, r: float) -> None:
    """The closed forms against a direct simulation of each configuration's expected loss."""
    rng = np.random.default_rng(0)
    n = 400_000
    x = rng.random((n, 2)) * (rng.random((n, 2)) < s)
    imp = np.array([1.0, r])
    # One feature represented exactly (W = 1, b = 0); the dropped one is predicted by its bias,
    # whose best value is its mean s/2.
    drop2 = (imp[1] * (x[:, 1] - s / 2) ** 2).mean()
    drop1 = (imp[0] * (x[:, 0] - s / 2) ** 2).mean()
    relu = np.maximum
    out = np.stack([relu(x[:, 0] - x[:, 1], 0), relu(x[:, 1] - x[:, 0], 0)], 1)
    antipodal = ((x - out) ** 2 * imp).sum(1).mean()
    closed = phase_losses(s, r)
    np.testing.assert_allclose(closed, (drop2, drop1, antipodal), rtol=0.05, atol=1e-4)


def test_every_output_is_readable_as_the_umask_allows(quick_runs: tuple[Path, Path]) -> None:
    mask = os.umask(0)
    os.umask(mask)
    files = sorted(quick_runs[0].iterdir())
    assert {"report.html", "metrics.json"} <= {p.name for p in files}
    wrong = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files}
    wrong = {k: v for k, v in wrong.items() if v != oct(0o666 & ~mask)}
    assert not wrong, f"files not {oct(0o666 & ~mask)} under umask {oct(mask)}: {wrong}"


# --------------------------------------------------------------------------- section 5: numbers

TEXTS_PER_CATEGORY = 4


def _share_np(values: np.ndarray, center: bool) -> float:
    """Share of neuron pairs i < j with cosine distance < 0.5, written independently."""
    X = values.astype(np.float64)
    if center:
        X = X - X.mean(0)
    norms = np.linalg.norm(X, axis=0)
    unit = X / np.where(norms > 0, norms, 1.0)
    distance = 1.0 - unit.T @ unit
    i, j = np.triu_indices(X.shape[1], k=1)
    return float((distance[i, j] < 0.5).mean())


@pytest.fixture(scope="module")
def all_texts() -> dict[str, Any]:
    """The twelve texts through layer 0, as the docs example runs them: one batch per category."""
    import torch
    from transformers import AutoModel

    import superposition as sp

    model, tokenizer = sp.load_model()
    torch.manual_seed(0)  # the report's random baseline uses the run's seed
    random_model = AutoModel.from_config(model.config).eval()
    texts = [t for group in sp.PAPER_TEXTS.values() for t in group]

    def probe(net: Any, keep_padding: bool) -> Any:
        return sp.ActivationProbe(
            net, layer=0, tokenizer=tokenizer, keep_padding=keep_padding, batch_size=4
        ).run(texts)

    return {
        "paper": (probe(model, True), False),
        "corrected": (probe(model, False), True),
        "baseline": (probe(random_model, False), True),
        "categories": list(sp.PAPER_TEXTS),
    }


def test_pooled_and_per_category_shares_match_an_independent_computation(
    quick_runs: tuple[Path, Path], all_texts: dict[str, Any]
) -> None:
    s5 = json.loads((quick_runs[0] / "metrics.json").read_text())["section5"]
    for analysis in ("paper", "corrected", "baseline"):
        acts, center = all_texts[analysis]
        values = acts.values.numpy()
        pooled = _share_np(values, center)
        assert s5["pooled"][analysis]["share_pairs_below_0.5"] == pytest.approx(pooled, abs=2e-4)
        assert s5["pooled"][analysis]["n_tokens"] == acts.n_tokens
        per_category = []
        for k, category in enumerate(all_texts["categories"]):
            rows = acts.text_index.numpy() // TEXTS_PER_CATEGORY == k
            share = _share_np(values[rows], center)
            per_category.append(share)
            got = s5["categories"][category][analysis]["share_pairs_below_0.5"]
            assert got == pytest.approx(share, abs=2e-4), (analysis, category)
        average = s5["category_average"][analysis]["share_pairs_below_0.5"]
        assert average == pytest.approx(sum(per_category) / 3, abs=2e-4)
        if analysis == "paper":
            # Pooling more tokens gives a lower share: the report must keep both numbers.
            assert average - pooled > 0.03


def test_token_count_control(quick_runs: tuple[Path, Path], all_texts: dict[str, Any]) -> None:
    s5 = json.loads((quick_runs[0] / "metrics.json").read_text())["section5"]
    control = s5["token_count_control"]
    t, draws, seed = control["tokens"], control["draws"], control["seed"]
    sizes = {c: r["corrected"]["n_tokens"] for c, r in s5["categories"].items()}
    assert t == min(sizes.values())
    for category, results in s5["categories"].items():
        assert set(control["categories"][category]) == {"paper", "corrected", "baseline"}
        if sizes[category] == t:  # subsampling all of a category's rows changes nothing
            exact = results["corrected"]["share_pairs_below_0.5"]
            assert control["categories"][category]["corrected"] == {"mean": exact, "sd": 0.0}
    # the documented recipe, recomputed with NumPy on the pooled corrected rows
    import torch

    acts, _center = all_texts["corrected"]
    values = acts.values.numpy()
    shares = []
    for k in range(draws):
        rows = torch.randperm(len(values), generator=torch.Generator().manual_seed(seed + k))[:t]
        shares.append(_share_np(values[rows.numpy()], center=True))
    assert control["pooled"]["corrected"]["mean"] == pytest.approx(np.mean(shares), abs=2e-4)
    assert control["pooled"]["corrected"]["sd"] == pytest.approx(np.std(shares, ddof=1), abs=2e-4)
    # the curve ends at all the pooled rows, where it is the pooled number itself
    for analysis, curve in control["curve"].items():
        assert curve["tokens"][-1] == s5["pooled"][analysis]["n_tokens"]
        assert curve["mean"][-1] == s5["pooled"][analysis]["share_pairs_below_0.5"]
        assert t in curve["tokens"]
        # fewer tokens, more pairs that line up by chance
        assert curve["mean"][0] > curve["mean"][-1]


def test_docs_example_prints_the_reports_numbers(
    quick_runs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """The tutorial and the report give the same per-category, averaged and pooled shares."""
    import re
    import runpy

    s5 = json.loads((quick_runs[0] / "metrics.json").read_text())["section5"]
    example = Path(__file__).resolve().parent.parent / "examples" / "plot_paper_vs_corrected.py"
    runpy.run_path(str(example), run_name="__main__")
    lines = capsys.readouterr().out.splitlines()
    header = next(line for line in lines if line.startswith("share of pairs below 0.5"))
    columns = re.split(r"\s{2,}", header.strip())[1:]
    assert columns == [*s5["categories"], "category average", "pooled"]
    rows = {
        "paper's analysis": "paper",
        "corrected": "corrected",
        "random weights, corrected": "baseline",
        "random weights, paper's": "baseline_paper",
    }
    for label, analysis in rows.items():
        line = next(line for line in lines if line.startswith(label + "  "))
        printed = [float(x) / 100 for x in re.findall(r"(\d+\.\d) %", line)]
        report = [s5["categories"][c][analysis]["share_pairs_below_0.5"] for c in s5["categories"]]
        report += [
            s5["category_average"][analysis]["share_pairs_below_0.5"],
            s5["pooled"][analysis]["share_pairs_below_0.5"],
        ]
        # printed to 0.1 %: equal up to that rounding
        assert printed == pytest.approx(report, abs=0.0005 + 1e-9), label


# --------------------------------------------------------------------------- section 5: the page


class _Page(HTMLParser):
    """Figures with their captions, claims with their verdicts, and all the text."""

    def __init__(self) -> None:
        super().__init__()
        self.figures: list[dict[str, str]] = []
        self.verdicts: list[tuple[str, str]] = []  # (section, verdict paragraph text)
        self.section = ""
        self.text: list[str] = []
        self._in: str | None = None
        self._buffer: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        d = dict(attrs)
        if tag == "figure":
            self.figures.append({"class": d.get("class") or "", "caption": ""})
        elif tag == "img" and self.figures:
            self.figures[-1]["alt"] = d.get("alt") or ""
        elif tag == "figcaption" or (tag == "p" and d.get("class") == "verdict") or tag == "h2":
            self._in = "verdict" if tag == "p" else tag
            self._buffer = []

    def handle_endtag(self, tag: str) -> None:
        if self._in == "figcaption" and tag == "figcaption":
            self.figures[-1]["caption"] = "".join(self._buffer)
        elif self._in == "verdict" and tag == "p":
            self.verdicts.append((self.section, "".join(self._buffer)))
        elif self._in == "h2" and tag == "h2":
            self.section = "".join(self._buffer)
        else:
            return
        self._in = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._in:
            self._buffer.append(data)


@pytest.fixture(scope="module")
def page(quick_runs: tuple[Path, Path]) -> _Page:
    parser = _Page()
    parser.feed((quick_runs[0] / "report.html").read_text())
    return parser


def test_every_section5_claim_has_a_verdict_with_its_number(
    quick_runs: tuple[Path, Path], page: _Page
) -> None:
    from superposition.report import VERDICTS

    m = json.loads((quick_runs[0] / "metrics.json").read_text())
    section5 = [v for s, v in page.verdicts if s.startswith("Section 5")]
    # Figure 4 (three claims), 5, 6, 7, and "consistent across the three inputs"
    assert len(section5) == len(m["section5"]["verdicts"]) == 7
    for text, (key, verdict) in zip(section5, m["section5"]["verdicts"].items(), strict=True):
        said = text.removeprefix("Verdict: ").split(" — ")[0]
        assert said in VERDICTS, (key, text)
        assert said == verdict["verdict"], (key, text)
        assert re.search(r"\d", text.split(" — ", 1)[1]), f"{key}: no number in {text!r}"
    # the headline claim rests on the category average and names the pooled value too
    blue = section5[0]
    avg = m["section5"]["category_average"]["paper"]["share_pairs_below_0.5"]
    pooled = m["section5"]["pooled"]["paper"]["share_pairs_below_0.5"]
    assert f"{100 * avg:.1f} %" in blue
    assert f"{100 * pooled:.1f} %" in blue
    assert "average of the 3 categories" in blue
    assert "pooled over all 12 texts" in blue
    # Section 3 has verdicts too
    assert len([v for s, v in page.verdicts if s.startswith("Section 3")]) == 5


def test_every_figure_has_a_caption_that_is_not_its_file_name(page: _Page) -> None:
    assert len(page.figures) >= 4 + 3 * 3 * 4
    for fig in page.figures:
        words = fig["caption"].replace(f"({fig['alt']}.png)", "").strip()
        assert len(words.split()) >= 8, f"{fig['alt']}: caption {fig['caption']!r}"
        assert fig["alt"] not in words


def test_figure6_gets_the_full_width_and_heatmaps_state_their_resolution(page: _Page) -> None:
    for fig in page.figures:
        if fig["alt"].endswith("_fig6"):
            assert fig["class"] == "wide", fig
        if fig["alt"].endswith("_fig4"):
            assert fig["class"] in ("full", "wide")
            assert re.search(r"across \d+ pixels", fig["caption"]), fig["caption"]
            assert "neurons 0–767" in fig["caption"] or "first 768" in fig["caption"]


def test_other_figures_are_grouped_by_category(quick_runs: tuple[Path, Path]) -> None:
    html = (quick_runs[0] / "report.html").read_text()
    other = html[html.index("id='other-figures'") :]
    starts = [other.index(f"<h3 id='{c}-texts'>") for c in ("language", "math-and-logic")]
    assert starts == sorted(starts)
    math = other[starts[1] :]
    assert "math_and_logic_paper_fig4" in math
    assert "language_paper_fig4" not in math


def test_report_says_which_model_ran(page: _Page) -> None:
    text = "".join(page.text)
    assert "as published" not in text
    assert "This run used a different, smaller model" in text
    assert "all-MiniLM-L6-v2, 6 layers, hidden size 384, 1536 MLP neurons per layer" in text
    assert "BERT base-uncased: 12 layers, hidden size 768, 3072 MLP neurons" in text


def test_summary_names_its_averages_and_prints_the_pooled_number(
    quick_runs: tuple[Path, Path],
) -> None:
    from superposition.report import summary

    m = json.loads((quick_runs[0] / "metrics.json").read_text())
    text = summary(m)
    assert "average of the 3 categories" in text
    row = next(line for line in text.splitlines() if line.strip().startswith("paper's analysis"))
    s5 = m["section5"]
    expected = [
        s5["category_average"]["paper"]["share_pairs_below_0.5"],
        s5["pooled"]["paper"]["share_pairs_below_0.5"],
        s5["token_count_control"]["pooled"]["paper"]["mean"],
    ]
    assert [float(x) for x in row.split()[-3:]] == pytest.approx(expected, abs=5e-4)
    for key, verdict in s5["verdicts"].items():
        assert f"{key}: {verdict['verdict']}" in text


def test_double_descent_section_in_report_and_metrics(quick_runs: tuple[Path, Path]) -> None:
    out = quick_runs[0]
    m = json.loads((out / "metrics.json").read_text())["double_descent"]
    loss = m["median_test_loss"]
    # the recorded peak is the arg-max of the recorded curve, and lies strictly inside the grid
    assert m["sizes"][loss.index(max(loss))] == m["peak_T"]
    assert m["sizes"][1] < m["peak_T"] < m["sizes"][-1]
    page = (out / "report.html").read_text()
    assert "Memorization and double descent" in page
    for name in ("double_descent_loss", "double_descent_dimensionality", "double_descent_geometry"):
        assert (out / f"{name}.png").is_file()
        assert f"alt='{name}'" in page or f'alt="{name}"' in page


def test_units_section_in_report_and_metrics(quick_runs: tuple[Path, Path], tokenizer: Any) -> None:
    from superposition.report.units import QUICK, book_texts

    out = quick_runs[0]
    m = json.loads((out / "metrics.json").read_text())["units"]
    bases = {
        "neurons",
        "SAE latents",
        "transcoder latents",
        "rotated neurons",
        "random-weights neurons",
    }
    summaries = m["comparison"]["summaries"]
    assert {s["basis"] for s in summaries} == bases
    assert {s["score"] for s in summaries} == {
        "token_diversity",
        "context_coherence",
        "category_spread",
    }
    for s in summaries:
        assert s["low"] <= s["median"] <= s["high"], s
        if s["score"] == "token_diversity":
            assert 1.0 <= s["low"]
            assert s["high"] <= 20.0
    counts = {s["basis"]: s["n"] for s in summaries if s["score"] == "token_diversity"}
    # A unit that never fires positively has no token diversity (NaN, not counted).
    assert 1400 <= counts["neurons"] <= 1536
    assert 1400 <= counts["rotated neurons"] <= 1536
    assert counts["SAE latents"] <= 2 * 1536
    assert counts["transcoder latents"] <= 2 * 1536
    # the dictionaries' fidelity, stated beside them: reconstructions far better than the
    # mean (FVU 1), at the setting's k; the quick run measures no loss recovered
    for what in ("sae", "transcoder"):
        fit = m[what]
        assert 0.0 < fit["fvu"] < 0.9, fit
        assert 0.0 < fit["l0"] <= QUICK.k, fit
        assert 0.0 <= fit["dead_fraction"] < 1.0, fit
        assert fit["fidelity_texts"] == QUICK.fidelity_texts
        assert "loss_recovered" not in fit
    assert m["setting"]["quick"] is True
    # Every token of the quick setting's paragraphs was read (counted here by the tokenizer).
    texts, _ = book_texts(QUICK.texts)
    ids = tokenizer(texts, truncation=True, max_length=512)["input_ids"]
    assert m["tokens"] == sum(len(i) for i in ids)
    page = (out / "report.html").read_text()
    assert "Beyond the paper: what makes a neuron fire" in page
    assert "Quick run" in page
    assert "alt='units_scores'" in page
    assert page.count("<mark") >= 18  # 3 + 3 of each of neurons, SAE and transcoder latents
    section = page[page.index("<h2 id='beyond-the-paper") :]
    assert section.count("Verdict:") == 5
    assert "Examples: transcoder latents" in section
    assert "a transcoder&#x27;s latents" in section or "a transcoder's latents" in section
    # the norm-controlled null: its own comparison, and a claim that says whether the
    # verdict of neurons vs the plain rotation changed under the control
    norm = m["comparison_norm_controlled"]["summaries"]
    assert {s["basis"] for s in norm} == {
        "neurons (unit-norm tokens)",
        "rotated neurons (unit-norm tokens)",
    }
    assert "scaled to unit length" in section
    assert "the same verdict as without the control" in section or (
        "without the control the verdict was" in section
    )
    # the section links to the explorer of its neurons and SAE latents, written beside it
    assert '<a href="explorer.html">' in section
    explorer = (out / "explorer.html").read_text("utf-8")
    assert '"label":"neuron","n":1536' in explorer
    assert f'"label":"latent","n":{2 * 1536}' in explorer
    assert f'"label":"tc latent","n":{2 * 1536}' in explorer
    assert "://" not in explorer
