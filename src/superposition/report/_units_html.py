"""The HTML pieces of the units section (:mod:`superposition.report.units`): its summary
table, the one-line fidelity of a dictionary, and the most and least polysemantic units of a
basis with their top contexts."""

from __future__ import annotations

import html
from typing import Any

__all__ = ["examples_html", "fidelity_text", "summary_table"]


def fidelity_text(m: dict[str, float], of: str) -> str:
    loss = f", loss recovered {m['loss_recovered']:.2f}" if "loss_recovered" in m else ""
    return (
        f"held-out FVU of {of} {m['fvu']:.3f}, L0 {m['l0']:.1f}, dead "
        f"{100 * m['dead_fraction']:.1f}%{loss}"
    )


def summary_table(cmp: Any, names: list[str]) -> str:
    scores = sorted({s.score for s in cmp.summaries}, key=lambda x: list(_ORDER).index(x))
    head = "".join(f"<th>{html.escape(sc.replace('_', ' '))}</th>" for sc in scores)
    rows = []
    for nm in names:
        cells = []
        for sc in scores:
            s = cmp.summary(nm, sc)
            cells.append(f"<td>{s.median:.3g} <small>[{s.low:.3g}, {s.high:.3g}]</small></td>")
        n = cmp.summary(nm, scores[0]).n
        rows.append(f"<tr><td>{html.escape(nm)} <small>({n})</small></td>{''.join(cells)}</tr>")
    return (
        f"<table><tr><th>units (count)</th>{head}</tr>{''.join(rows)}<caption>Medians over "
        "units with 95% bootstrap intervals. Token diversity: lower is more monosemantic; "
        "context coherence: higher is; category spread: lower is more specific to one "
        "book.</caption></table>"
    )


_ORDER = ("token_diversity", "context_coherence", "category_spread")


def examples_html(stats: Any, table: Any, what: str, n: int = 3, shown: int = 4) -> str:
    """The ``n`` most and least polysemantic units (by token diversity, among units with all
    their top contexts active) with their top contexts, the firing token highlighted."""
    full = stats.top_arrays()["value"][-1] > stats.threshold
    cand = table.sort("token_diversity")
    order = [int(u) for u in cand["unit"] if bool(full[int(u)])]
    if not order:
        return ""
    picks = [("least polysemantic", order[:n]), ("most polysemantic", order[::-1][:n])]
    out = [f"<h3>Examples: {html.escape(what)}</h3>"]
    td = table["token_diversity"]
    for title, units in picks:
        out.append(f"<h4>The {n} {title} {html.escape(what)} (by token diversity)</h4>")
        for u in units:
            out.append(
                f"<p><b>{html.escape(stats.unit_label)} {u}</b> — token diversity "
                f"{float(td[u]):.2f}</p><ul>"
            )
            for c in stats.top(u)[:shown]:
                out.append(f"<li><small>{c.value:.2f}</small> {_context_html(c)}</li>")
            out.append("</ul>")
    return "\n".join(out)


def _context_html(c: Any) -> str:
    tokens = c.tokens or [str(t) for t in c.token_ids]
    parts = []
    for i, tok in enumerate(tokens):
        text = html.escape(tok)
        parts.append(
            f"<mark style='background:#fc6'><b>{text}</b></mark>" if i == c.center else text
        )
    return " ".join(parts)
