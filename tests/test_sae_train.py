"""The SAE training loop: hand-written gradients against autograd, schedules, determinism."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from torch.overrides import TorchFunctionMode

from superposition import metrics
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


def textbook_latents(
    model: SparseAutoencoder, pre: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(z, gate)``: a kind's latents of the pre-activations, written the textbook way, and
    JumpReLU's gate (``None`` for the other kinds)."""
    B = pre.shape[0]
    if model.kind == "topk":
        vals, idx = pre.topk(model.k, dim=1)
        return torch.zeros_like(pre).scatter(1, idx, vals.relu()), None
    if model.kind in ("batchtopk", "matryoshka"):
        vals, idx = pre.reshape(-1).topk(model.k * B)
        return torch.zeros_like(pre).reshape(-1).scatter(0, idx, vals.relu()).reshape(B, -1), None
    if model.kind == "relu":
        return pre.relu(), None
    z, gate = _JumpSTE.apply(pre, model.log_threshold.exp(), eps)
    return z, gate


def textbook_loss(
    model: SparseAutoencoder,
    target: torch.Tensor,
    pre: torch.Tensor,
    out: Callable[[torch.Tensor], torch.Tensor],
    dead: torch.Tensor | None,
    aux_k: int,
    aux_coef: float = 1.0,
    eps: float = 0.05,
) -> torch.Tensor:
    """The training loss of a model whose latents of ``pre`` give the output ``out(z)`` and
    should give ``target``: squared error, the kind's penalty, AuxK on the ``dead`` latents."""
    z, gate = textbook_latents(model, pre, eps)
    xhat = out(z)
    loss = (xhat - target).square().sum(1).mean()
    if model.kind == "matryoshka":
        # Bussmann et al.: every prefix of the dictionary reconstructs the target too.
        for width in model.rule.matryoshka_widths[:-1]:  # type: ignore[attr-defined]
            prefix = torch.arange(z.shape[1]) < width
            loss = loss + (out(z * prefix) - target).square().sum(1).mean()
    if model.kind == "relu":
        loss = loss + model.l1 * (z * model.W_dec.norm(dim=1)).sum(1).mean()
    if gate is not None:
        loss = loss + model.l0 * gate.sum(1).mean()
    if dead is not None and int(dead.sum()):
        n_dead = int(dead.sum())
        ka = min(aux_k, n_dead)
        avals, aidx = pre.masked_fill(~dead, -math.inf).topk(ka, dim=1)
        za = torch.zeros_like(pre).scatter(1, aidx, avals.relu())
        resid = (target - xhat).detach()
        aux = (za @ model.W_dec - resid).square().sum(1).mean()
        loss = loss + aux_coef * min(1.0, n_dead / aux_k) * aux
    return loss


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
    return textbook_loss(
        sae, xn, pre, lambda z: z @ sae.W_dec + sae.b_dec, dead, aux_k, aux_coef, eps
    )


def trained_like(kind: str, seed: int = 0) -> SparseAutoencoder:
    """A small SAE with non-trivial biases, scale and thresholds (as after some training)."""
    kw: dict[str, object] = {"k": 3} if kind in ("topk", "batchtopk", "matryoshka") else {}
    if kind == "matryoshka":
        kw["matryoshka_widths"] = (3, 7, 12)
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


@pytest.mark.parametrize("kind", ["topk", "batchtopk", "relu", "jumprelu", "matryoshka"])
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


@pytest.mark.parametrize("kind", ["topk", "batchtopk"])
def test_gathered_route_matches_autograd(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The route a GPU takes (decoder rows gathered a chunk at a time) is right too: the
    CPU's sparse products stand aside and the chunks are made small enough to be several."""
    from superposition.sae.gradients import Step

    monkeypatch.setattr(Step, "sparse_gradients", Step._gathered_gradients)
    monkeypatch.setattr("superposition.sae.gradients._GATHER_FLOATS", 40)
    sae = trained_like(kind)
    x = torch.randn(32, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    autograd_loss(sae, x, None, 3).backward()
    assert sae.params.grad is not None
    torch.testing.assert_close(gradients(sae, x), sae.params.grad, rtol=1e-9, atol=1e-10)


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


# ------------------------------------------------------------------ devices and dtypes (issue 15)

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
KIND_ARGS: list[tuple[str, dict[str, int]]] = [
    ("topk", {"k": 3}),
    ("batchtopk", {"k": 3}),
    ("jumprelu", {}),
    ("relu", {}),
]


class _Outputs(TorchFunctionMode):
    """Records ``(function name, dtype, device)`` of every floating tensor a torch call makes."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[tuple[str, torch.dtype, torch.device]] = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def,override]
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.is_floating_point():
                self.seen.add((getattr(func, "__name__", str(func)), t.dtype, t.device))
        return out


@pytest.mark.parametrize(("kind", "kw"), KIND_ARGS)
def test_every_tensor_of_fit_follows_the_parameters(kind: str, kw: dict[str, int]) -> None:
    # float64 parameters stand in for another device: a buffer allocated with torch's defaults
    # instead of the parameters' device and dtype would show up here as a float32 tensor.
    x = torch.randn(512, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    sae = SparseAutoencoder(8, 32, kind=kind, seed=0, dtype=torch.float64, **kw)  # type: ignore[arg-type]
    with _Outputs() as plain:
        sae.fit(x, samples=2048, batch_size=64, dead_after=64, log_every=3)
    assert {dtype for _, dtype, _ in plain.seen} == {torch.float64}
    assert {device for _, _, device in plain.seen} == {torch.device("cpu")}
    with _Outputs() as low:
        sae.fit(x, samples=2048, batch_size=64, dead_after=64, autocast=torch.bfloat16)
    # Only the dense forward products (and the casts feeding them) run in bfloat16.
    assert {name for name, dtype, _ in low.seen if dtype != torch.float64} == {"to", "mm"}
    assert {dtype for _, dtype, _ in low.seen} == {torch.float64, torch.bfloat16}


@pytest.mark.parametrize("kind", ["topk", "relu"])
def test_bf16_autocast_trains_nearly_as_well_as_float32(kind: str) -> None:
    # Measured with 128 features in 48 dimensions, 400k samples in batches of 500, seeds 0-4:
    # |ΔFVU| <= 0.0024 and |ΔMCC| <= 0.0078 for TopK (the run-to-run spread of which latents
    # win near-ties; MCC 0.95-0.98), <= 0.0001 and 0.0004 for ReLU (MCC 0.83-0.87). Batches of
    # 500 keep the loop on one thread (below _SINGLE_THREAD_BELOW), whose speed a busy machine
    # does not wreck.
    truth = SyntheticFeatures(128, 48, firing_probability=4 / 128, seed=0)
    held_out = truth.sample(8000, torch.Generator().manual_seed(99))
    kw = {"k": 4} if kind == "topk" else {}
    runs = {}
    for autocast in (None, torch.bfloat16):
        sae = SparseAutoencoder(48, 128, kind=kind, seed=0, **kw)  # type: ignore[arg-type]
        sae.fit(truth, samples=400_000, batch_size=500, autocast=autocast)
        mcc = metrics.mean_correlation_coefficient(truth.directions, sae.W_dec.detach())
        runs[autocast] = (sae, sae.evaluate(held_out).fvu, mcc)
    (fp32, fvu32, mcc32), (bf16, fvu16, mcc16) = runs[None], runs[torch.bfloat16]
    assert bf16.params.dtype == torch.float32
    assert not torch.equal(bf16.params, fp32.params)  # the low-precision products did run
    assert fvu16 == pytest.approx(fvu32, abs=0.01)
    assert mcc16 == pytest.approx(mcc32, abs=0.02)
    assert mcc32 > 0.8  # trained: an untrained dictionary scores 0.38 here


@cuda
@pytest.mark.parametrize(("kind", "kw"), KIND_ARGS)
def test_cuda_gradients_and_fit_match_the_cpu(kind: str, kw: dict[str, int]) -> None:
    truth = SyntheticFeatures(64, 16, firing_probability=4 / 64, seed=0)
    held_out = truth.sample(4000, torch.Generator().manual_seed(1))
    cpu = SparseAutoencoder(16, 64, kind=kind, seed=0, **kw)  # type: ignore[arg-type]
    gpu = SparseAutoencoder(16, 64, kind=kind, seed=0, device="cuda", **kw)  # type: ignore[arg-type]
    x = held_out[:256]
    dead = torch.rand(64, generator=torch.Generator().manual_seed(2)) < 0.3
    dead = dead if kind != "relu" else None
    torch.testing.assert_close(
        gradients(gpu, x.cuda(), dead=dead).cpu(),
        gradients(cpu, x, dead=dead),
        atol=1e-5,
        rtol=1e-4,
    )
    for sae in (cpu, gpu):
        sae.fit(truth, samples=200_000, batch_size=1024, dead_after=5000)
    assert gpu.params.device.type == gpu.threshold.device.type == "cuda"
    assert gpu.history is not None
    assert cpu.history is not None
    assert gpu.history.samples == cpu.history.samples
    mcc = [
        metrics.mean_correlation_coefficient(truth.directions, s.W_dec.detach().cpu())
        for s in (cpu, gpu)
    ]
    assert mcc[1] == pytest.approx(mcc[0], abs=0.02)
    assert gpu.evaluate(held_out).fvu == pytest.approx(cpu.evaluate(held_out).fvu, abs=0.01)


@cuda
@pytest.mark.parametrize("autocast", [torch.bfloat16, torch.float16])
def test_low_precision_autocast_on_cuda_trains_nearly_as_well(autocast: torch.dtype) -> None:
    truth = SyntheticFeatures(128, 48, firing_probability=4 / 128, seed=0)
    held_out = truth.sample(8000, torch.Generator().manual_seed(99))
    fvu, mcc = [], []
    for ac in (None, autocast):
        sae = SparseAutoencoder(48, 128, k=4, seed=0, device="cuda")
        sae.fit(truth, samples=1_000_000, batch_size=1024, autocast=ac)
        assert sae.params.dtype == torch.float32
        fvu.append(sae.evaluate(held_out).fvu)
        mcc.append(metrics.mean_correlation_coefficient(truth.directions, sae.W_dec.detach().cpu()))
    assert fvu[1] == pytest.approx(fvu[0], abs=0.01)
    assert mcc[1] == pytest.approx(mcc[0], abs=0.02)
