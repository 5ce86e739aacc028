"""Every site of a block (``probe/sites.py``, ``probe/hooks.py``, ``probe/capture.py``), checked
against computations that use no hook of the library: the model's own ``hidden_states``, its
MLP modules called by hand, and modules replaced by hand-written wrappers."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from conftest import ARCHS, replaced_module, tiny_model
from superposition import ActivationProbe
from superposition.probe import SITES, locate_sites, parse_hook_name
from superposition.probe.capture import forward_function
from superposition.sae.edit import edit

IDS = torch.tensor([[101, 2023, 2003, 1037, 3231, 102], [101, 7592, 2088, 102, 0, 0]])
MASK = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
INPUTS = {"input_ids": IDS, "attention_mask": MASK}


def _block(model: nn.Module, layer: int) -> nn.Module:
    """The block of ``layer``, found by hand per architecture."""
    root = forward_function(model)
    for path in ("encoder.layer", "transformer.layer", "h", "layers", "decoder.layers", "block"):
        try:
            return root.get_submodule(f"{path}.{layer}")
        except AttributeError:
            continue
    if hasattr(root, "encoder") and hasattr(root.encoder, "albert_layer_groups"):
        return root.encoder.albert_layer_groups[0].albert_layers[0]  # one shared layer
    raise AssertionError(f"no block found in {type(model).__name__}")


# mlp_in -> mlp_out with the MLP's own modules, called by hand (no hooks)
_MLP_BY_HAND: dict[str, Callable[[nn.Module, Tensor], Tensor]] = {
    **{
        a: lambda b, x: b.output.dense(b.intermediate(x))
        for a in ("bert", "roberta", "electra", "deberta-v2")
    },
    "distilbert": lambda b, x: b.ffn(x),
    "albert": lambda b, x: b.ffn_output(b.activation(b.ffn(x))),
    **{
        a: lambda b, x: b.mlp(x)
        for a in ("gpt2", "gptj", "gpt_neox", "falcon", "llama", "mistral", "qwen2", "gemma")
    },
    "phi": lambda b, x: b.mlp(x),
    "opt": lambda b, x: b.fc2(b.activation_fn(b.fc1(x))),
    "bloom": lambda b, x: b.mlp.dense_4h_to_h(b.mlp.gelu_impl(b.mlp.dense_h_to_4h(x))),
    "t5": lambda b, x: b.layer[1].DenseReluDense(x),
}


def _hooks(model: nn.Module) -> int:
    """Hooks on the model's modules (0 unless a test leaked one: ``_reference`` asks a copy)."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def _reference(model: nn.Module) -> tuple[Any, ...]:
    """The model's own hidden states on INPUTS (the encoder's, for T5). Asked of a copy:
    transformers installs hooks of its own for ``output_hidden_states``, for good, and the
    tiny models are shared between tests."""
    with torch.no_grad():
        out = forward_function(copy.deepcopy(model))(**INPUTS, output_hidden_states=True)
    return tuple(out.hidden_states)


def test_every_architecture_has_a_by_hand_mlp() -> None:
    assert set(_MLP_BY_HAND) == set(ARCHS)


@pytest.mark.parametrize("name", ARCHS)
def test_residual_sites_equal_the_models_hidden_states(name: str) -> None:
    model, _ = tiny_model(name)
    hidden = _reference(model)
    real = MASK.bool()
    pre, post = ActivationProbe(model, layer=0, site=["resid_pre", "hook_resid_post"]).run(INPUTS)
    torch.testing.assert_close(pre.values, hidden[0][real].float())
    torch.testing.assert_close(post.values, hidden[1][real].float())
    (last,) = ActivationProbe(model, layer=[-1], site="resid_pre").run(INPUTS)
    torch.testing.assert_close(last.values, hidden[-2][real].float())


@pytest.mark.parametrize("name", ARCHS)
def test_mlp_sites_agree_with_the_mlp_called_by_hand(name: str) -> None:
    """``mlp_out`` is the MLP applied (by hand) to ``mlp_in``, and the output projection applied
    to the neurons; all three sites come from one pass."""
    model, width = tiny_model(name)
    layer = 1 if name != "albert" else 2  # ALBERT: a later call of its one shared layer
    probe = ActivationProbe(model, layer=layer, site=["mlp_in", "neurons", "mlp_out"])
    mlp_in, neurons, mlp_out = probe.run(INPUTS)
    assert [a.site for a in (mlp_in, neurons, mlp_out)] == ["mlp_in", "neurons", "mlp_out"]
    assert neurons.n_neurons == width
    assert mlp_in.n_neurons == mlp_out.n_neurons == 32
    block = _block(model, layer)
    (proj,) = [p.module for p in locate_sites(model, layer, "neurons")]
    with torch.no_grad():
        by_hand = _MLP_BY_HAND[name](block, mlp_in.values[None])[0]
        projected = proj(neurons.values[None])[0]
    torch.testing.assert_close(mlp_out.values, by_hand, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(mlp_out.values, projected, rtol=1e-5, atol=1e-5)
    assert not torch.equal(mlp_in.values, mlp_out.values)


def test_sites_of_several_layers_come_from_one_pass_in_the_order_asked() -> None:
    model, _ = tiny_model("gpt2")
    probe = ActivationProbe(model, layer=[1, 0], site=["resid_post", "resid_pre"])
    out = probe.run(INPUTS)
    assert [(a.layer, a.site) for a in out] == [
        (1, "resid_post"),
        (1, "resid_pre"),
        (0, "resid_post"),
        (0, "resid_pre"),
    ]
    torch.testing.assert_close(out[3].values, _reference(model)[0][MASK.bool()])
    torch.testing.assert_close(out[2].values, out[1].values)  # block 0 feeds block 1


def test_the_forward_pass_stops_after_the_deepest_site() -> None:
    model, _ = tiny_model("llama")
    calls = []
    handle = model.layers[1].register_forward_pre_hook(lambda m, a: calls.append(1))
    try:
        ActivationProbe(model, layer=0, site=["resid_post", "mlp_in"]).run(INPUTS)
        assert calls == []
        ActivationProbe(model, layer=1, site="resid_pre").run(INPUTS)
        assert calls == [1]  # resid_pre of layer 1 is read as layer 1 starts
    finally:
        handle.remove()


def test_captured_batches_carry_text_index_position_and_every_site() -> None:
    model, _ = tiny_model("bert")
    probe = ActivationProbe(model, layer=0, site=["neurons", "mlp_out"], batch_size=1)
    batches = list(probe.capture(INPUTS))
    assert len(batches) == 2
    rows = sum(c.n_rows for c in batches)
    assert rows == int(MASK.sum())
    whole = {a.site: a for a in probe.run(INPUTS)}
    for c in batches:
        for site in ("neurons", "mlp_out"):
            ref = whole[site].values[whole[site].text_index == c.text_index[0]]
            torch.testing.assert_close(c[site].float(), ref)
        assert c.position.tolist() == list(range(c.n_rows))
        assert c.token_ids.tolist() == IDS[int(c.text_index[0])][: c.n_rows].tolist()


# ---------------------------------------------------------------- edits against modules by hand


class _Wrapped(nn.Module):
    """``inner`` with ``fn`` applied to its first input (``"input"``) or output (``"output"``,
    the first element of a tuple) on every call."""

    def __init__(self, inner: nn.Module, fn: Callable[[Tensor], Tensor], where: str) -> None:
        super().__init__()
        self.inner, self.fn, self.where = inner, fn, where

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:  # T5 reads wo.weight.dtype
            return getattr(super().__getattr__("inner"), name)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self.where == "input":
            if args:
                args = (self.fn(args[0]), *args[1:])
            else:
                kwargs = {**kwargs, "hidden_states": self.fn(kwargs["hidden_states"])}
            return self.inner(*args, **kwargs)
        out = self.inner(*args, **kwargs)
        if isinstance(out, Tensor):
            return self.fn(out)
        return type(out)((self.fn(out[0]), *out[1:]))


def _last_hidden(model: nn.Module) -> Tensor:
    with torch.no_grad():
        out: Tensor = forward_function(model)(**INPUTS).last_hidden_state
    return out


@pytest.mark.parametrize("site", SITES)
@pytest.mark.parametrize("name", ["bert", "distilbert", "gpt2", "llama", "opt", "t5", "gpt_neox"])
def test_an_edit_at_a_site_equals_replacing_the_module_by_hand(name: str, site: str) -> None:
    model, _ = tiny_model(name)

    def fn(x: Tensor) -> Tensor:
        return 0.5 * x + 0.25

    before = _hooks(model)
    clean = _last_hidden(model)
    with edit(model, 0, fn, site=site) as point:
        edited = _last_hidden(model)
    assert _hooks(model) == before
    name_in_root = point.module_name
    root = forward_function(model)
    if root is not model:  # T5: sites are named from the full model, the encoder runs
        name_in_root = name_in_root.removeprefix("encoder.")
    inner = root.get_submodule(name_in_root)
    with replaced_module(root, name_in_root, _Wrapped(inner, fn, point.direction)):
        by_hand = _last_hidden(model)
    torch.testing.assert_close(edited, by_hand)
    assert not torch.allclose(edited, clean)


def test_an_edit_of_a_shared_module_changes_only_its_layers_call() -> None:
    """ALBERT runs one layer module three times: an edit at layer 1 touches the second call."""
    model, _ = tiny_model("albert")
    hooks = _hooks(model)
    before = ActivationProbe(model, layer="all", site="resid_post").run(INPUTS)
    seen: list[Tensor] = []
    with edit(model, 1, lambda x: seen.append(x) or x * 0, site="resid_post"):
        after = ActivationProbe(model, layer="all", site="resid_post").run(INPUTS)
    assert len(seen) == 1
    torch.testing.assert_close(after[0].values, before[0].values)
    assert float(after[1].values.abs().max()) == 0.0
    assert _hooks(model) == hooks


# ---------------------------------------------------------------- hooks never leak


@pytest.mark.parametrize("site", SITES)
@pytest.mark.parametrize("name", ["bert", "gpt2", "llama", "t5", "albert"])
def test_hooks_are_gone_after_an_exception_at_every_site(name: str, site: str) -> None:
    model, _ = tiny_model(name)
    hooks = _hooks(model)
    (point,) = locate_sites(model, 0, site)

    def boom(*_: Any) -> None:
        raise KeyError("injected")

    handle = point.module.register_forward_pre_hook(boom)
    try:
        with pytest.raises(KeyError, match="injected"):
            ActivationProbe(model, layer=0, site=site).run(INPUTS)
        assert _hooks(model) == hooks + 1  # only the injected one
    finally:
        handle.remove()

    def bad(x: Tensor) -> Tensor:
        raise ValueError("the edit failed")

    with pytest.raises(ValueError, match="the edit failed"), edit(model, 0, bad, site=site):
        _last_hidden(model)
    with (
        pytest.raises(RuntimeError, match="must return a tensor of the input's shape"),
        edit(model, 0, lambda x: x[..., :1], site=site),
    ):
        _last_hidden(model)
    assert _hooks(model) == hooks


def test_edits_and_captures_nest() -> None:
    model, _ = tiny_model("gpt2")
    hooks = _hooks(model)
    with edit(model, 0, lambda x: x * 0, site="mlp_out"):
        inner = ActivationProbe(model, layer=0, site="mlp_out").run(INPUTS)
        with edit(model, 0, lambda x: x + 1, site="mlp_out"):
            both = ActivationProbe(model, layer=0, site="mlp_out").run(INPUTS)
    assert float(inner.values.abs().max()) == 0.0
    torch.testing.assert_close(both.values, torch.ones_like(both.values))
    assert _hooks(model) == hooks


# ---------------------------------------------------------------- names and errors


def test_transformer_lens_names_are_aliases() -> None:
    model, _ = tiny_model("gpt2")
    a = locate_sites(model, 0, ["ln2.hook_normalized", "mlp.hook_post", "hook_resid_post"])
    assert [p.site for p in a] == ["mlp_in", "neurons", "resid_post"]
    (b,) = locate_sites(model, 0, "mlp_in")
    assert b == a[0]
    # TransformerLens's hook_mlp_in reads before the norm: not what the MLP reads.
    with pytest.raises(ValueError, match="before the MLP's norm"):
        locate_sites(model, 0, "hook_mlp_in")
    assert parse_hook_name("blocks.1.hook_mlp_out") == (1, "mlp_out")
    with pytest.raises(ValueError, match=r"hook name must look like 'blocks.<layer>.<hook>'"):
        parse_hook_name("blocks.1.attn.hook_z")


def test_a_site_asked_twice_is_refused_even_under_an_alias() -> None:
    model, _ = tiny_model("gpt2")
    with pytest.raises(ValueError, match=r"site 'ln2\.hook_normalized' is requested twice"):
        ActivationProbe(model, site=["mlp_in", "ln2.hook_normalized"])


def test_an_unknown_site_lists_the_valid_ones() -> None:
    model, _ = tiny_model("gpt2")
    with pytest.raises(ValueError, match=r"site must be one of \['neurons', 'mlp_in'"):
        ActivationProbe(model, site="attn_out")


def test_mlp_sites_of_an_unknown_architecture_say_how_to_name_them() -> None:
    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.up, self.down = nn.Linear(8, 16), nn.Linear(16, 8)

        def forward(self, x: Tensor) -> Tensor:
            return x + self.down(torch.relu(self.up(x)))

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.blocks = nn.ModuleList([Block(), Block()])

        def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
            x = torch.nn.functional.one_hot(input_ids, 8).float()
            for b in self.blocks:
                x = b(x)
            return x

    net = Net()
    with pytest.raises(LookupError, match=r'module=\{"mlp_out": "path.to.layers.\{layer\}'):
        locate_sites(net, 0, "mlp_out")
    with pytest.raises(ValueError, match="names the neurons' module only, but site='mlp_out'"):
        locate_sites(net, 0, "mlp_out", module="blocks.{layer}.down")
    (pre,) = locate_sites(net, -1, "resid_pre")  # the blocks are found by structure
    assert pre.module_name == "blocks.1"
    points = locate_sites(
        net, 1, ["neurons", "mlp_out", "resid_post"],
        module={"neurons": "blocks.{layer}.down", "mlp_out": "blocks.{layer}.down",
                "resid_post": "blocks.{layer}"},
    )  # fmt: skip
    assert [(p.module_name, p.direction) for p in points] == [
        ("blocks.1.down", "input"),
        ("blocks.1.down", "output"),
        ("blocks.1", "output"),
    ]
    ids = {"input_ids": torch.tensor([[1, 2, 3]]), "attention_mask": torch.ones(1, 3)}
    probe = ActivationProbe(
        net, layer=1, site=["neurons", "mlp_out"],
        module={"neurons": "blocks.{layer}.down", "mlp_out": "blocks.{layer}.down"},
    )  # fmt: skip
    neurons, out = probe.run(ids)
    with torch.no_grad():
        torch.testing.assert_close(out.values, net.blocks[1].down(neurons.values))
