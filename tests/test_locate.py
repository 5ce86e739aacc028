"""locate: the architecture table, the structural fallback, layer specs and their errors."""

from __future__ import annotations

from typing import Any

import pytest
from torch import nn

from conftest import ARCHS, tiny_model
from superposition.probe import ARCHITECTURES, locate_mlp, n_layers


@pytest.mark.parametrize("name", ARCHS)
def test_every_tiny_architecture_is_in_the_table(name: str) -> None:
    model, _ = tiny_model(name)
    assert model.config.model_type in ARCHITECTURES
    sites = locate_mlp(model, "all")
    assert len(sites) == (3 if name == "albert" else 2)
    for site in sites:
        assert dict(model.named_modules())[site.module_name] is site.module


def test_bert_uses_the_mlp_output_not_the_attention_output() -> None:
    model, _ = tiny_model("bert")
    assert [s.module_name for s in locate_mlp(model, "all")] == [
        "encoder.layer.0.output.dense",
        "encoder.layer.1.output.dense",
    ]


def test_albert_layers_are_calls_of_one_shared_module() -> None:
    model, _ = tiny_model("albert")
    sites = locate_mlp(model, "all")
    assert {s.module_name for s in sites} == {
        "encoder.albert_layer_groups.0.albert_layers.0.ffn_output"
    }
    assert [s.call_index for s in sites] == [0, 1, 2]


def test_task_heads_resolve_through_the_base_model() -> None:
    from transformers import BertConfig, BertForMaskedLM

    model = BertForMaskedLM(
        BertConfig(vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=2)
    )
    assert locate_mlp(model, -1)[0].module_name == "bert.encoder.layer.1.output.dense"


def test_t5_probes_the_encoder() -> None:
    model, _ = tiny_model("t5")
    assert locate_mlp(model, 0)[0].module_name == "encoder.block.0.layer.1.DenseReluDense.wo"


@pytest.mark.parametrize(
    ("layer", "expected"),
    [(0, [0]), (-1, [1]), ([1, 0], [1, 0]), ([-2], [0]), ("all", [0, 1])],
)
def test_layer_specs(layer: Any, expected: list[int]) -> None:
    model, _ = tiny_model("gpt2")
    assert [s.layer for s in locate_mlp(model, layer)] == expected
    assert n_layers(model) == 2


def _unknown(model: nn.Module, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model.config, "model_type", "mystery")


def test_structural_fallback_finds_an_unknown_bert(
    bert: nn.Module, monkeypatch: pytest.MonkeyPatch
) -> None:
    _unknown(bert, monkeypatch)
    assert [s.module_name for s in locate_mlp(bert, "all")] == [
        "encoder.layer.0.output.dense",
        "encoder.layer.1.output.dense",
    ]


def test_structural_fallback_handles_conv1d(monkeypatch: pytest.MonkeyPatch) -> None:
    import copy

    model = copy.deepcopy(tiny_model("gpt2")[0])
    _unknown(model, monkeypatch)
    assert locate_mlp(model, 1)[0].module_name == "h.1.mlp.c_proj"


def test_explicit_module_path_with_layer_placeholder(bert: nn.Module) -> None:
    sites = locate_mlp(bert, -1, module="encoder.layer.{layer}.intermediate.dense")
    assert sites[0].module_name == "encoder.layer.1.intermediate.dense"


# --------------------------------------------------------------------------- errors


class Blocks(nn.Module):
    """An unknown architecture: two blocks, each with two hidden->hidden-from-wider layers."""

    def __init__(self, ambiguous: bool) -> None:
        super().__init__()
        self.config = type("Config", (), {"hidden_size": 4, "model_type": "mystery"})()
        width = [8, 8] if ambiguous else []
        self.blocks = nn.ModuleList(nn.ModuleList(nn.Linear(w, 4) for w in width) for _ in range(2))


@pytest.mark.parametrize(
    ("ambiguous", "match"),
    [
        (True, r"cannot find the MLP of Blocks .*found 2 layers .*pass module=\"blocks.\{layer\}"),
        (False, r"cannot find the MLP of Blocks .*found no layer .*expected exactly one"),
    ],
)
def test_ambiguous_or_empty_structure_says_how_to_pass_module(ambiguous: bool, match: str) -> None:
    with pytest.raises(LookupError, match=match):
        locate_mlp(Blocks(ambiguous))


def test_a_plain_module_without_blocks() -> None:
    with pytest.raises(LookupError, match=r"cannot find the MLP of Linear: .*pass module="):
        locate_mlp(nn.Linear(2, 2))


def test_no_hidden_size() -> None:
    model = nn.Sequential(nn.ModuleList([nn.Linear(8, 4), nn.Linear(8, 4)]))
    with pytest.raises(LookupError, match="no hidden size"):
        locate_mlp(model)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (
            {"layer": 2},
            ValueError,
            r"layer 2 is out of range for GPT2Model with 2 layers \(valid: -2..1\)",
        ),
        ({"layer": -3}, ValueError, r"layer -3 is out of range .*\(valid: -2..1\)"),
        (
            {"layer": "first"},
            ValueError,
            r"layer must be an int, a list of ints or \"all\", got 'first'",
        ),
        ({"layer": 1.5}, TypeError, 'layer must be an int, a list of ints or "all", got float'),
        ({"layer": []}, ValueError, "must name at least one layer"),
        ({"layer": [0, "1"]}, TypeError, "layer indices must be ints, got '1'"),
        ({"layer": [0, -2]}, ValueError, "layer -2 is requested twice"),
        ({"module": 3}, TypeError, "module must be a dotted path string"),
        ({"module": "h.9.mlp"}, LookupError, r"module='h.9.mlp' is not a submodule of GPT2Model"),
        (
            {"module": "x.{layer}.y"},
            LookupError,
            r"matches no submodule of GPT2Model \(tried 'x.0.y'\)",
        ),
        (
            {"module": "h.0.mlp.c_proj", "layer": 1},
            ValueError,
            "names a single module, so layer must be 0",
        ),
    ],
)
def test_errors(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    model, _ = tiny_model("gpt2")
    with pytest.raises(error, match=match):
        locate_mlp(model, **kwargs)


def test_not_a_module() -> None:
    with pytest.raises(TypeError, match=r"model must be a torch.nn.Module .*got str"):
        locate_mlp("bert-base-uncased")  # type: ignore[arg-type]


def test_albert_with_inner_groups_asks_for_module() -> None:
    from transformers import AlbertConfig, AlbertModel

    model = AlbertModel(
        AlbertConfig(
            vocab_size=40, embedding_size=8, hidden_size=16, num_hidden_layers=2,
            num_attention_heads=2, intermediate_size=24, inner_group_num=2,
        )
    )  # fmt: skip
    with pytest.raises(LookupError, match=r"inner_group_num=2\); pass module="):
        locate_mlp(model)
