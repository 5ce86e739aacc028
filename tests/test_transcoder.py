"""Transcoders: hand-written gradients against autograd, the ground truth of a sparse MLP,
pairs from the store, save and load."""

from __future__ import annotations

import math

import pytest
import torch

from superposition import SyntheticMLP, Transcoder
from superposition.sae.train import gradients
from test_sae_train import textbook_loss

KINDS: list[tuple[str, dict[str, object]]] = [
    ("topk", {"k": 3}),
    ("batchtopk", {"k": 3}),
    ("jumprelu", {}),
    ("relu", {}),
    ("matryoshka", {"k": 3, "matryoshka_widths": [2, 9]}),
]


def autograd_loss(
    tc: Transcoder, x: torch.Tensor, y: torch.Tensor, dead: torch.Tensor | None, aux_k: int
) -> torch.Tensor:
    """A transcoder's training loss written the textbook way, differentiated by autograd."""
    xn, yn = x * tc.scale, y * tc.output_scale

    def out(z: torch.Tensor) -> torch.Tensor:
        yhat = z @ tc.W_dec + tc.b_dec
        return yhat + xn @ tc.W_skip.T if tc.skip else yhat

    return textbook_loss(tc, yn, xn @ tc.W_enc + tc.b_enc, out, dead, aux_k)


def trained_like(kind: str, kw: dict[str, object], skip: bool) -> Transcoder:
    """A small transcoder with non-trivial biases, scales, skip and thresholds."""
    tc = Transcoder(6, 5, 16, kind=kind, skip=skip, seed=0, **kw)  # type: ignore[arg-type]
    g = torch.Generator().manual_seed(100)
    with torch.no_grad():
        tc.b_enc.copy_(0.1 * torch.randn(16, generator=g))
        tc.b_dec.copy_(0.1 * torch.randn(5, generator=g))
        if skip:
            tc.W_skip.copy_(0.3 * torch.randn(5, 6, generator=g))
        tc.scale.fill_(1.7)
        tc.output_scale.fill_(0.6)
        if kind == "jumprelu":
            tc.log_threshold.copy_((0.3 + 0.2 * torch.rand(16, generator=g)).log())
    return tc.double()


@pytest.mark.parametrize(("kind", "kw"), KINDS)
@pytest.mark.parametrize("skip", [False, True])
@pytest.mark.parametrize("with_dead", [False, True])
def test_gradients_match_autograd(
    kind: str, kw: dict[str, object], skip: bool, with_dead: bool
) -> None:
    if with_dead and kind == "relu":
        pytest.skip("AuxK applies to the TopK kinds and JumpReLU only")
    tc = trained_like(kind, kw, skip)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(32, 6, generator=g, dtype=torch.float64)
    y = torch.randn(32, 5, generator=g, dtype=torch.float64)
    dead = None
    if with_dead:
        dead = torch.zeros(16, dtype=torch.bool)
        dead[[1, 4, 5, 9, 12]] = True
    autograd_loss(tc, x, y, dead, aux_k=3).backward()
    assert tc.params.grad is not None
    got = gradients(tc, torch.cat([x, y], 1), dead=dead, aux_k=3, bandwidth=0.05)
    torch.testing.assert_close(got, tc.params.grad, rtol=1e-9, atol=1e-10)
    if skip:  # the linear path's gradient was exercised
        assert float(tc._views(tc.params.grad)["W_skip"].abs().sum()) > 0


# --------------------------------------------------------------------------- ground truth


def _recovery(mlp: SyntheticMLP, tc: Transcoder) -> tuple[float, float]:
    """MCC of the encoder columns against the input directions and of the decoder rows
    against the output directions."""
    from superposition import metrics

    enc = metrics.mean_correlation_coefficient(mlp.input_directions, tc.W_enc.detach().T)
    dec = metrics.mean_correlation_coefficient(mlp.output_directions, tc.W_dec.detach())
    return enc, dec


def test_recovers_the_latents_of_a_sparse_mlp() -> None:
    """Inputs made of orthonormal sparse features (each latent has one exact reader), outputs
    in superposition (64 latents written into 32 dimensions), 4 latents per sample on average:
    BatchTopK at the planted L0 finds both sets of directions and reconstructs the output."""
    mlp = SyntheticMLP(64, 64, 32, firing_probability=4 / 64, orthogonal=True, seed=0)
    tc = Transcoder(64, 32, 128, kind="batchtopk", k=4, seed=0)
    tc.fit(mlp, samples=1_000_000, batch_size=1024, lr=1e-2)
    enc, dec = _recovery(mlp, tc)
    assert enc >= 0.99
    assert dec >= 0.99
    x, y = mlp.sample(8000, torch.Generator().manual_seed(9))
    m = tc.evaluate(x, y)
    assert m.fvu < 0.01
    assert m.l0 == pytest.approx(4.0, abs=0.2)


def test_finds_the_output_directions_of_latents_in_superposition() -> None:
    """128 latents read from 48 dimensions: no linear read is exact, so the encoder columns
    are not the input directions, but the decoder rows are the output directions."""
    mlp = SyntheticMLP(128, 48, 48, firing_probability=4 / 128, seed=0)
    tc = Transcoder(48, 48, 256, kind="batchtopk", k=4, seed=0)
    tc.fit(mlp, samples=1_000_000, batch_size=1024, lr=1e-2)
    assert _recovery(mlp, tc)[1] >= 0.99


def test_a_skip_transcoder_predicts_a_linear_part_better() -> None:
    """Outputs with a linear part of the input: the linear path lowers the held-out FVU."""
    mlp = SyntheticMLP(128, 48, 48, firing_probability=4 / 128, skip=1.0, noise=0.5, seed=0)
    x, y = mlp.sample(8000, torch.Generator().manual_seed(9))
    fvu = {}
    for skip in (False, True):
        tc = Transcoder(48, 48, 256, kind="batchtopk", k=4, skip=skip, seed=0)
        tc.fit(mlp, samples=500_000, batch_size=1024, lr=1e-2)
        fvu[skip] = tc.evaluate(x, y).fvu
    assert fvu[True] < 0.8 * fvu[False]


def test_synthetic_mlp_is_what_it_says() -> None:
    """x, y against the definition, computed densely from the same features."""
    mlp = SyntheticMLP(20, 8, 6, firing_probability=0.3, skip=0.7, noise=0.2, seed=3)
    g = torch.Generator().manual_seed(1)
    x, y = mlp.sample(50, g)
    g = torch.Generator().manual_seed(1)
    f = mlp.inputs.features(50, g)
    eps = torch.randn(50, 8, generator=g)
    want_x = f @ mlp.input_directions + 0.2 * eps / math.sqrt(8)
    torch.testing.assert_close(x, want_x)
    torch.testing.assert_close(y, f @ mlp.output_directions + want_x @ mlp.skip_matrix.T)
    assert mlp.output_directions.norm(dim=1).allclose(torch.ones(20))
    ortho = SyntheticMLP(6, 8, 4, firing_probability=0.5, orthogonal=True, seed=0)
    D = ortho.input_directions
    torch.testing.assert_close(D @ D.T, torch.eye(6), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="orthogonal=True needs n_features <= d_in"):
        SyntheticMLP(9, 8, 4, firing_probability=0.5, orthogonal=True)
    with pytest.raises(ValueError, match="skip must be a non-negative finite float"):
        SyntheticMLP(9, 8, 4, firing_probability=0.5, skip=-1.0)


# --------------------------------------------------------------------------- the model


def test_forward_evaluate_and_normalisation_against_independent_computations() -> None:
    mlp = SyntheticMLP(32, 12, 10, firing_probability=0.1, skip=0.5, noise=0.3, seed=0)
    tc = Transcoder(12, 10, 48, k=3, skip=True, seed=0)
    tc.fit(mlp, samples=20_000, batch_size=500)
    x, y = mlp.sample(300, torch.Generator().manual_seed(5))
    with torch.no_grad():
        xd = x.double() * tc.input_scale
        pre = xd @ tc.W_enc.double() + tc.b_enc.double()
        vals, idx = pre.topk(3, dim=1)
        z = torch.zeros_like(pre).scatter(1, idx, vals.relu())
        yhat = (z @ tc.W_dec.double() + tc.b_dec.double() + xd @ tc.W_skip.double().T) / float(
            tc.output_scale
        )
        torch.testing.assert_close(tc(x).double(), yhat, rtol=1e-5, atol=1e-5)
    m = tc.evaluate(x, y, batch_size=64)
    err = float((y.double() - yhat).square().sum())
    assert m.fvu == pytest.approx(
        err / float((y.double() - y.double().mean(0)).square().sum()), rel=1e-4
    )
    assert m.mse == pytest.approx(err / y.numel(), rel=1e-4)
    assert m.l0 == pytest.approx(float((z != 0).sum(1).double().mean()))
    # the first batch set each side's scale: mean squared norms d_in and d_out
    first = next(iter(mlp.batches(500, mlp.generator())))
    xs, ys = first[:, :12], first[:, 12:]
    assert tc.input_scale == pytest.approx(
        math.sqrt(12 / float(xs.square().sum(1).mean())), rel=1e-6
    )
    assert float(tc.output_scale) == pytest.approx(
        math.sqrt(10 / float(ys.square().sum(1).mean())), rel=1e-6
    )


def test_fit_takes_pairs_rows_and_iterables_alike() -> None:
    mlp = SyntheticMLP(16, 8, 6, firing_probability=0.2, seed=0)
    x, y = mlp.sample(2048, torch.Generator().manual_seed(0))
    rows = torch.cat([x, y], 1)
    kw = {"samples": 2048, "batch_size": 256}
    a = Transcoder(8, 6, 32, k=2, seed=0).fit((x, y), **kw)
    b = Transcoder(8, 6, 32, k=2, seed=0).fit(rows, **kw)
    assert torch.equal(a.params, b.params)
    c = Transcoder(8, 6, 32, k=2, seed=0).fit(iter(rows.split(256)), **kw)
    assert c.history is not None
    assert c.history.samples[-1] == 2048


def test_checkpoints_resume_bit_identically(tmp_path) -> None:  # type: ignore[no-untyped-def]
    mlp = SyntheticMLP(16, 8, 6, firing_probability=0.2, skip=0.3, noise=0.2, seed=0)
    kw = {"samples": 4096, "batch_size": 256, "checkpoint": tmp_path / "ckpt"}
    whole = Transcoder(8, 6, 32, kind="jumprelu", skip=True, seed=0)
    whole.fit(mlp, **kw, checkpoint_every=5)
    again = Transcoder(8, 6, 32, kind="jumprelu", skip=True, seed=0)
    again.fit(mlp, **kw, resume=tmp_path / "ckpt")
    assert torch.equal(whole.params, again.params)
    assert torch.equal(whole.output_scale, again.output_scale)
    assert whole.history is not None
    assert again.history is not None
    assert again.history.fvu == whole.history.fvu
    other = Transcoder(8, 6, 32, kind="jumprelu", seed=0)  # no skip: another transcoder
    with pytest.raises(ValueError, match="skip=True there but False here"):
        other.fit(mlp, **kw, resume=tmp_path / "ckpt")


def test_save_and_load_round_trip_and_refuse_the_other_class(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from superposition import SparseAutoencoder

    mlp = SyntheticMLP(16, 8, 6, firing_probability=0.2, skip=0.3, noise=0.2, seed=0)
    tc = Transcoder(8, 6, 32, kind="batchtopk", k=2, skip=True, seed=0)
    tc.fit(mlp, samples=2048, batch_size=256)
    tc.layer = 3
    back = Transcoder.load(tc.save(tmp_path / "tc"))
    for name in ("params", "scale", "output_scale", "threshold"):
        assert torch.equal(getattr(back, name), getattr(tc, name)), name
    assert (back.d_in, back.d_out, back.skip, back.layer, back.fitted) == (8, 6, True, 3, True)
    x, _ = mlp.sample(10)
    assert torch.equal(back(x), tc(x))
    with pytest.raises(ValueError, match="holds a Transcoder, not a SparseAutoencoder"):
        SparseAutoencoder.load(tmp_path / "tc")
    SparseAutoencoder(8, 16, k=2).save(tmp_path / "sae")
    with pytest.raises(ValueError, match="holds a SparseAutoencoder, not a Transcoder"):
        Transcoder.load(tmp_path / "sae")
    with pytest.raises(ValueError, match="format must be 'native', 'saelens' or 'sparsify'"):
        tc.save(tmp_path / "x", format="onnx")
    assert not (tmp_path / "x").exists()


def test_bad_input_is_refused_with_a_clear_error() -> None:
    from superposition import SparseAutoencoder, SyntheticFeatures

    mlp = SyntheticMLP(16, 8, 6, firing_probability=0.2, seed=0)
    tc = Transcoder(8, 6, 32, k=2, skip=True, seed=0)
    before = tc.params.detach().clone()
    x, y = mlp.sample(64)
    cases: list[tuple[object, type[Exception], str]] = [
        ((x, y[:10]), ValueError, "x and y must have the same rows, got 64 and 10"),
        ((x, y[:, :5]), ValueError, r"y must have shape \[batch, d_out=6\]"),
        ((x, y, y), ValueError, "a pair"),
        (x, ValueError, r"source must have shape \[batch, d_in \+ d_out=14\]"),
        (SyntheticFeatures(16, 8, firing_probability=0.2), TypeError, "trains on a SyntheticMLP"),
        (SyntheticMLP(16, 8, 5, firing_probability=0.2), ValueError, "d_out=5"),
    ]
    for source, error, message in cases:
        with pytest.raises(error, match=message):
            tc.fit(source, samples=64, batch_size=32)  # type: ignore[arg-type]
    assert torch.equal(tc.params, before)
    assert not tc.fitted
    with pytest.raises(TypeError, match="trains on a SyntheticFeatures"):
        SparseAutoencoder(14, 16, k=2).fit(mlp, samples=64)
    with pytest.raises(ValueError, match=r"needs its input too: decode\(z, x\)"):
        tc.decode(torch.zeros(2, 32))
    with pytest.raises(ValueError, match="pass y"):
        tc.evaluate(x, None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="skip must be True or False"):
        Transcoder(8, 6, 32, k=2, skip=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="d_out must be a positive int"):
        Transcoder(8, 0, 32, k=2)
    from superposition import UnitBasis

    with pytest.raises(TypeError, match=r"reads what the MLP reads.*UnitBasis.transcoder"):
        UnitBasis.sae(tc)
    assert "d_out=6" in repr(tc)
    assert "skip=True" in repr(tc)


# --------------------------------------------------------------------------- real activations


def test_the_store_gives_mlp_in_and_mlp_out_side_by_side(minilm: tuple[object, object]) -> None:
    """A probe of two sites: each store row is [mlp_in | mlp_out] of one token, every token
    once per epoch, as the probe gives them; a transcoder trains on it."""
    from superposition import ActivationProbe, ActivationStore

    model, tok = minilm
    texts = [f"The cat number {i} sat on mat {i % 7} while it rained." for i in range(12)]
    probe = ActivationProbe(model, layer=1, site=["mlp_in", "mlp_out"], tokenizer=tok)  # type: ignore[arg-type]
    store = ActivationStore(probe, texts, batch_size=32, buffer_rows=64, chunk_texts=5, seed=0)
    rows = torch.cat(list(store))
    x, y = (a.values for a in probe.run(texts))
    want = torch.cat([x, y], 1)
    assert rows.shape == want.shape == (want.shape[0], 768)
    order = lambda t: t[t[:, 0].argsort()]  # noqa: E731
    torch.testing.assert_close(order(rows), order(want), rtol=0, atol=0)
    again = ActivationStore(probe, texts, batch_size=32, buffer_rows=64, epochs=40, seed=0)
    tc = Transcoder(384, 384, 256, k=8, seed=0).fit(
        again, samples=40 * rows.shape[0], batch_size=32
    )
    assert tc.evaluate(x, y).fvu < 0.5


# --------------------------------------------------------------------------- splicing

# Each architecture's MLP named by hand, independently of the library's site table: the module
# whose input is what the MLP reads and the one whose output is what it writes.
BY_HAND = {
    "gpt2": ("h.{}.mlp", "h.{}.mlp"),
    "llama": ("layers.{}.mlp", "layers.{}.mlp"),
    "bert": ("encoder.layer.{}.intermediate", "encoder.layer.{}.output.dense"),
    "opt": ("decoder.layers.{}.fc1", "decoder.layers.{}.fc2"),
}


class _Reader(torch.nn.Module):
    """``inner`` unchanged, keeping what it was given."""

    def __init__(self, inner: torch.nn.Module, held: list[torch.Tensor]) -> None:
        super().__init__()
        self.inner, self.held = inner, held

    def forward(self, x: torch.Tensor, *args: object, **kwargs: object) -> object:
        self.held.append(x)
        return self.inner(x, *args, **kwargs)


class _Writer(torch.nn.Module):
    """The transcoder's prediction from what the reader kept (or from its own input)."""

    def __init__(self, tc: Transcoder, held: list[torch.Tensor]) -> None:
        super().__init__()
        self.tc, self.held = tc, held

    def forward(self, x: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        src = self.held.pop() if self.held else x
        out = self.tc(src.reshape(-1, src.shape[-1]))
        return out.reshape(*src.shape[:-1], out.shape[-1])


def _swap(model: torch.nn.Module, name: str, new: torch.nn.Module) -> torch.nn.Module:
    parent, _, child = name.rpartition(".")
    owner = model.get_submodule(parent)
    old = getattr(owner, child)
    setattr(owner, child, new)
    return old


@pytest.mark.parametrize("arch", sorted(BY_HAND))
def test_splice_equals_replacing_the_mlp_by_hand(arch: str) -> None:
    """The model with the transcoder spliced in (mlp_out predicted from mlp_in) gives what the
    model gives with its MLP modules swapped by hand for the transcoder."""
    from conftest import _build
    from superposition.sae.edit import edit, splice

    model, _ = _build(arch)
    model.eval()
    h = model.config.hidden_size
    tc = Transcoder(h, h, 64, k=4, skip=True, seed=0)
    with torch.no_grad():  # a non-trivial transcoder: scales, biases, linear path
        g = torch.Generator().manual_seed(0)
        tc.W_skip.copy_(0.2 * torch.randn(h, h, generator=g))
        tc.b_dec.copy_(torch.randn(h, generator=g))
        tc.scale.fill_(2.0)
        tc.output_scale.fill_(0.5)
    ids = torch.randint(0, 50, (2, 7), generator=torch.Generator().manual_seed(1))
    layer = 1
    with torch.no_grad():
        clean = model(input_ids=ids).last_hidden_state
        with edit(model, layer, splice(tc), site="mlp_out"):
            spliced = model(input_ids=ids).last_hidden_state
        reader, writer = (name.format(layer) for name in BY_HAND[arch])
        held: list[torch.Tensor] = []
        old_writer = _swap(model, writer, _Writer(tc, held))
        old_reader = None
        if reader != writer:
            old_reader = _swap(model, reader, _Reader(model.get_submodule(reader), held))
        try:
            by_hand = model(input_ids=ids).last_hidden_state
        finally:
            if old_reader is not None:
                _swap(model, reader, old_reader)
            _swap(model, writer, old_writer)
    torch.testing.assert_close(spliced, by_hand, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(spliced, clean, atol=1e-3)  # the edit did something
    with torch.no_grad():  # and the hooks are gone
        torch.testing.assert_close(model(input_ids=ids).last_hidden_state, clean)


def test_fidelity_of_a_transcoder_replaces_the_mlp(minilm: tuple[object, object]) -> None:
    """Loss recovered against the MLP's output zeroed and held at its mean: an untrained
    transcoder is worse than a trained one, and the clean run scores 0."""
    from superposition import ActivationProbe, ActivationStore

    model, tok = minilm
    texts = [f"The cat number {i} sat on mat {i % 7} while it rained." for i in range(12)]
    probe = ActivationProbe(model, layer=0, site=["mlp_in", "mlp_out"], tokenizer=tok)  # type: ignore[arg-type]
    store = ActivationStore(probe, texts, batch_size=32, buffer_rows=64, epochs=40, seed=0)
    trained = Transcoder(384, 384, 256, k=8, seed=0).fit(store, samples=5000, batch_size=32)
    raw = Transcoder(384, 384, 256, k=8, seed=0)
    f_trained, f_raw = (t.fidelity(model, texts, 0, tokenizer=tok) for t in (trained, raw))  # type: ignore[arg-type]
    assert f_trained.clean == 0.0
    assert sorted(f_trained.effects) == ["mean", "sae", "zero"]
    assert f_trained.loss_recovered > f_raw.loss_recovered
    assert f_trained.loss_recovered > 0.5
