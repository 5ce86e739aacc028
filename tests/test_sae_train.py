"""The SAE training loop: hand-written gradients against autograd, schedules, determinism."""

from __future__ import annotations

import math

import pytest
import torch

from superposition.sae import SparseAutoencoder, SyntheticFeatures
from superposition.sae.train import FitConfig, gradients, lr_multiplier


class _JumpSTE(torch.autograd.Function):
    """JumpReLU ``pre · H(pre - θ)`` and ``H(pre - θ)`` with the rectangle-kernel
    straight-through gradients w.r.t. ``θ`` (Rajamanoharan et al. 2024, eqs. 11-12)."""

    @staticmethod
    def forward(ctx, pre, theta, eps):  # type: ignore[no-untyped-def,override]
        ctx.save_for_backward(pre, theta)
        ctx.eps = eps
        gate = (pre > theta).to(pre.dtype)
        return pre * gate, gate

    @staticmethod
    def backward(ctx, g_z, g_h):  # type: ignore[no-untyped-def,override]
        pre, theta = ctx.saved_tensors
        gate = (pre > theta).to(pre.dtype)
        kern = ((pre - theta).abs() < ctx.eps / 2).to(pre.dtype) / ctx.eps
        d_theta = (g_z * -(theta * kern) + g_h * -kern).sum(0)
        return g_z * gate, d_theta, None


def autograd_loss(
    sae: SparseAutoencoder,
    x: torch.Tensor,
    dead: torch.Tensor | None,
    aux_k: int,
    aux_coef: float = 1.0,
    eps: float = 0.05,
) -> torch.Tensor:
    """The training loss written the textbook way, differentiated by autograd."""
    xn = x * sae.input_scale
    pre = (xn - sae.b_dec) @ sae.W_enc + sae.b_enc
    B = x.shape[0]
    if sae.kind == "topk":
        vals, idx = pre.topk(sae.k, dim=1)
        z = torch.zeros_like(pre).scatter(1, idx, vals.relu())
    elif sae.kind == "batchtopk":
        vals, idx = pre.reshape(-1).topk(sae.k * B)
        z = torch.zeros_like(pre).reshape(-1).scatter(0, idx, vals.relu()).reshape(B, -1)
    elif sae.kind == "relu":
        z = pre.relu()
    else:
        z, gate = _JumpSTE.apply(pre, sae.log_threshold.exp(), eps)
    xhat = z @ sae.W_dec + sae.b_dec
    loss = (xhat - xn).square().sum(1).mean()
    if sae.kind == "relu":
        loss = loss + sae.l1 * (z * sae.W_dec.norm(dim=1)).sum(1).mean()
    if sae.kind == "jumprelu":
        loss = loss + sae.l0 * gate.sum(1).mean()
    if dead is not None and int(dead.sum()):
        n_dead = int(dead.sum())
        ka = min(aux_k, n_dead)
        avals, aidx = pre.masked_fill(~dead, -math.inf).topk(ka, dim=1)
        za = torch.zeros_like(pre).scatter(1, aidx, avals.relu())
        resid = (xn - xhat).detach()
        aux = (za @ sae.W_dec - resid).square().sum(1).mean()
        loss = loss + aux_coef * min(1.0, n_dead / aux_k) * aux
    return loss


def trained_like(kind: str, seed: int = 0) -> SparseAutoencoder:
    """A small SAE with non-trivial biases, scale and thresholds (as after some training)."""
    kw = {"k": 3} if kind in ("topk", "batchtopk") else {}
    sae = SparseAutoencoder(6, 16, kind=kind, seed=seed, **kw)  # type: ignore[arg-type]
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        sae.b_enc.copy_(0.1 * torch.randn(16, generator=g))
        sae.b_dec.copy_(0.1 * torch.randn(6, generator=g))
        sae.W_enc.add_(0.2 * torch.randn(6, 16, generator=g))
        sae.scale.fill_(1.7)
        if kind == "jumprelu":
            # thresholds right inside the kernel window of many pre-activations
            sae.log_threshold.copy_((0.3 + 0.2 * torch.rand(16, generator=g)).log())
    return sae.double()


@pytest.mark.parametrize("kind", ["topk", "batchtopk", "relu", "jumprelu"])
@pytest.mark.parametrize("with_dead", [False, True])
def test_gradients_match_autograd(kind: str, with_dead: bool) -> None:
    if with_dead and kind == "relu":
        pytest.skip("AuxK applies to the TopK kinds and JumpReLU only")
    sae = trained_like(kind)
    x = torch.randn(32, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    dead = torch.zeros(16, dtype=torch.bool)
    if with_dead:
        dead[[1, 4, 5, 9, 12]] = True
    aux_k = 3
    autograd_loss(sae, x, dead if with_dead else None, aux_k).backward()
    expected = sae.params.grad
    assert expected is not None
    got = gradients(sae, x, dead=dead if with_dead else None, aux_k=aux_k, bandwidth=0.05)
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-10)
    if kind == "jumprelu":
        # the straight-through part must have been exercised, not just the zero branch
        assert float(expected[-16:].abs().sum()) > 0


def test_lr_schedule_warms_up_and_decays_to_near_zero() -> None:
    mults = [lr_multiplier("linear", s, 100, 0.1, 0.2) for s in range(100)]
    assert mults[0] == pytest.approx(0.1)
    assert mults[9] == pytest.approx(1.0)
    assert mults[50] == 1.0
    assert mults[80] == pytest.approx(1.0)
    assert mults[99] == pytest.approx(1 / 20)
    cos = [lr_multiplier("cosine", s, 100, 0.0, 0.5) for s in range(100)]
    assert cos[50] == pytest.approx(1.0)
    assert cos[75] == pytest.approx(0.5)


def test_same_seed_is_bit_identical_on_cpu() -> None:
    def run() -> SparseAutoencoder:
        truth = SyntheticFeatures(32, 8, firing_probability=0.1, seed=3)
        return SparseAutoencoder(8, 32, k=2, seed=4).fit(
            truth, samples=20_000, batch_size=512, dead_after=2_000
        )

    a, b = run(), run()
    assert torch.equal(a.params, b.params)
    assert a.history is not None
    assert b.history is not None
    assert a.history.mse == b.history.mse


def test_fit_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match=r"batch_size must be a positive int, got 0"):
        FitConfig(samples=10, batch_size=0)
    with pytest.raises(ValueError, match=r"warmup must be a fraction of training in \[0, 1\]"):
        FitConfig(samples=10, warmup=2.0)
    with pytest.raises(ValueError, match=r"schedule must be one of"):
        FitConfig(samples=10, schedule="step")  # type: ignore[arg-type]
