"""A transcoder's latents as units (issue 24): read where the MLP reads, beside the neurons in
one pass; their values and directions against independent computations."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F

import superposition as sp
from conftest import tiny_model
from superposition.probe.locate import linear_weight
from superposition.units import UnitBasis, collect_units

TEXTS = [f"the cat number {i} sat on the mat and looked at {i + 1} dogs" for i in range(9)] + [
    "a short one",
    "another text about cats that is somewhat longer than most",
]


def _relu_tc(d_in: int, d_out: int, seed: int) -> sp.Transcoder:
    tc = sp.Transcoder(d_in, d_out, 3 * d_in, kind="relu", seed=seed)
    with torch.no_grad():  # a bias that leaves some latents on and some off
        tc.b_enc.copy_(torch.randn(tc.d_sae, generator=torch.Generator().manual_seed(seed)))
    return tc


def test_a_transcoder_basis_reads_mlp_in_and_points_through_the_output_projection() -> None:
    tc = _relu_tc(6, 5, seed=0)
    w_out = torch.randn(5, 11, dtype=torch.float64)
    basis = UnitBasis.transcoder(tc, neurons_out=w_out)
    assert (basis.kind, basis.site, basis.n_neurons, basis.n_units) == (
        "transcoder",
        "mlp_in",
        6,
        18,
    )
    x = torch.randn(40, 6)
    # ReLU transcoder, written out: relu(x W_enc + b_enc) (no decoder bias is subtracted).
    want = F.relu(x.double() @ tc.W_enc.double() + tc.b_enc.double())
    torch.testing.assert_close(basis.encode(x).double(), want, atol=1e-5, rtol=1e-5)
    # Neuron j's loading: W_dec[i] . W_out[:, j], what the latent writes against what j writes.
    want_dirs = torch.stack(
        [torch.stack([tc.W_dec[i].double() @ w_out[:, j] for j in range(11)]) for i in range(18)]
    )
    torch.testing.assert_close(basis.directions.double(), want_dirs, atol=1e-4, rtol=1e-4)
    bare = UnitBasis.of(tc, 6)
    assert bare.kind == "transcoder"
    assert not bare.has_directions
    with pytest.raises(ValueError, match="no directions over the neurons"):
        _ = bare.directions


def test_a_transcoder_basis_refuses_bad_input() -> None:
    tc = _relu_tc(6, 5, seed=1)
    with pytest.raises(ValueError, match=r"\[d_out=5, n_neurons\], got shape \(7, 11\)"):
        UnitBasis.transcoder(tc, neurons_out=torch.zeros(7, 11))
    with pytest.raises(TypeError, match="must be a Transcoder"):
        UnitBasis.transcoder(sp.SparseAutoencoder(6, 12, k=2))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"UnitBasis.transcoder"):
        UnitBasis.sae(tc)


@pytest.mark.parametrize("name", ["bert", "gpt2"])
def test_neurons_and_transcoder_latents_in_one_pass_equal_separate_runs(
    name: str, tokenizer: Any
) -> None:
    model, n = tiny_model(name)
    both = sp.ActivationProbe(
        model, site=["neurons", "mlp_in"], tokenizer=tokenizer, batch_size=4, progress=False
    )
    neurons, mlp_in = both.run(TEXTS)
    w_out = linear_weight(both.sites[0].module)
    assert w_out is not None
    assert w_out.shape[1] == n
    tc = _relu_tc(mlp_in.n_neurons, w_out.shape[0], seed=2)
    basis = UnitBasis.transcoder(tc, neurons_out=w_out)
    got_n, got_t = collect_units(both, TEXTS, [None, basis], top_k=4, samples=2)
    assert got_t.module_name == mlp_in.module_name
    assert got_n.module_name == neurons.module_name
    # Independently: each latent's largest value over the corpus, from the probe's mlp_in rows.
    z = F.relu(mlp_in.values.double() @ tc.W_enc.double() + tc.b_enc.double())
    torch.testing.assert_close(got_t.max_activation.double(), z.max(0).values, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got_n.max_activation, neurons.values.max(0).values)
    top = got_t.top(int(z.max(0).values.argmax()))[0]
    row = int(z.max(1).values.argmax())
    assert (top.text_index, top.position) == (
        int(mlp_in.text_index[row]),
        int(mlp_in.position[row]),
    )
    # The same records as a probe of mlp_in alone.
    alone = sp.ActivationProbe(model, site="mlp_in", tokenizer=tokenizer, progress=False)
    sep = collect_units(alone, TEXTS, basis, top_k=4, samples=2)
    for k, v in sep.top_arrays().items():
        torch.testing.assert_close(got_t.top_arrays()[k], v, equal_nan=True, atol=1e-5, rtol=1e-5)


def test_a_transcoder_without_its_site_is_refused_before_the_model_runs(tokenizer: Any) -> None:
    model, _ = tiny_model("bert")
    probe = sp.ActivationProbe(model, tokenizer=tokenizer, progress=False)
    tc = _relu_tc(32, 32, seed=3)
    calls = []
    handle = model.register_forward_hook(lambda *a: calls.append(1))
    try:
        with pytest.raises(
            ValueError, match=r"read the 'mlp_in' site.*site=\['neurons', 'mlp_in'\]"
        ):
            collect_units(probe, TEXTS, [None, tc])
    finally:
        handle.remove()
    assert not calls


@pytest.mark.parametrize("site", ["resid_post", "mlp_out"])
def test_an_sae_of_another_site_reads_that_site_beside_the_neurons(
    site: str, tokenizer: Any
) -> None:
    """An SAE made for another site of the block (as SAELens's residual-stream releases are)
    reads it in the same pass as the neurons; its basis has no directions over the neurons,
    and a probe without its site is refused before the model runs."""
    model, n = tiny_model("gpt2")
    probe = sp.ActivationProbe(
        model, site=["neurons", site], tokenizer=tokenizer, batch_size=4, progress=False
    )
    neurons, acts = probe.run(TEXTS)
    sae = sp.SparseAutoencoder(acts.n_neurons, 24, kind="relu", seed=4)
    with torch.no_grad():
        sae.b_enc.copy_(torch.randn(24, generator=torch.Generator().manual_seed(4)))
    sae.site, sae.layer = site, 0
    basis = UnitBasis.sae(sae)
    assert basis.site == site
    assert not basis.has_directions
    with pytest.raises(ValueError, match="no directions over the neurons"):
        basis.directions  # noqa: B018
    for units in (sae, basis):
        got_n, got_s = collect_units(probe, TEXTS, [None, units], top_k=3, samples=2)
        z = sae.encode(acts.values).double()
        torch.testing.assert_close(got_s.max_activation.double(), z.max(0).values)
        torch.testing.assert_close(got_n.max_activation, neurons.values.max(0).values)
        assert got_n.n_units == n
        assert got_s.n_units == 24
    only_neurons = sp.ActivationProbe(model, tokenizer=tokenizer, progress=False)
    calls = []
    handle = model.register_forward_hook(lambda *a: calls.append(1))
    try:
        with pytest.raises(ValueError, match=f"this SAE read the '{site}' site"):
            collect_units(only_neurons, TEXTS, [None, sae])
    finally:
        handle.remove()
    assert not calls
