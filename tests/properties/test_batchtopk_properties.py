"""BatchTopK's selection (``batch_topk``) against ``topk`` over the whole batch: the same values
whatever the data (ties, constant rows, columns of very different scales), in flat order."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from superposition.sae.kinds.batchtopk import batch_topk


@st.composite
def batches(draw: st.DrawFn) -> tuple[torch.Tensor, int]:
    rows = draw(st.integers(1, 64))
    cols = draw(st.integers(1, 700))
    k = draw(st.integers(1, cols))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    pre = torch.randn(rows, cols, generator=g)
    shape = draw(st.sampled_from(["gauss", "ties", "zeros", "scaled columns", "one hot row"]))
    if shape == "ties":
        pre = pre.round()
    elif shape == "zeros":
        pre = torch.zeros(rows, cols)
    elif shape == "scaled columns":  # a sample strided by 61 must not see only the quiet ones
        pre = pre * torch.logspace(-3, 3, cols)
    elif shape == "one hot row":
        pre[draw(st.integers(0, rows - 1))] += 100.0
    return pre, k


@settings(max_examples=300, deadline=None)
@given(batches())
def test_batch_topk_keeps_the_largest_k_times_b_entries_in_flat_order(
    case: tuple[torch.Tensor, int],
) -> None:
    pre, k = case
    vals, flat = batch_topk(pre, k)
    n = k * pre.shape[0]
    assert flat.shape == vals.shape == (n,)
    assert bool((flat[1:] > flat[:-1]).all())  # distinct and in flat order
    assert torch.equal(pre.reshape(-1)[flat], vals)
    expected = pre.reshape(-1).topk(n).values
    assert torch.equal(vals.sort(descending=True).values, expected)
