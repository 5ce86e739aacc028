"""The registry of SAE kinds (superposition.sae.kinds): one file per kind, one registry line."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import pytest
import torch
from torch import Tensor

from superposition.sae import KINDS, Kind, SparseAutoencoder, SyntheticFeatures
from superposition.sae.gradients import Step
from superposition.sae.kinds import REGISTRY, build, kind_class
from superposition.sae.kinds.base import DenseKind
from superposition.sae.train import gradients


def test_the_kind_type_kinds_and_registry_agree() -> None:
    assert tuple(REGISTRY) == KINDS == get_args(Kind)
    assert all(cls.name == name for name, cls in REGISTRY.items())


def test_an_unknown_kind_lists_the_kinds_there_are() -> None:
    with pytest.raises(
        ValueError, match=r"kind must be one of \('topk', 'batchtopk', .*got 'gelu'"
    ):
        kind_class("gelu")


def test_an_option_no_kind_takes_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'shift'; kind='topk' takes"):
        SparseAutoencoder(4, 8, k=2, shift=1.0)


def test_hyperparameters_of_another_kind_are_refused_naming_the_kinds_that_take_them() -> None:
    with pytest.raises(ValueError, match=r"l0 only applies to kind='jumprelu', not 'relu'"):
        build("relu", 4, 8, {"l0": 1.0})


def test_dead_latents_are_refused_for_a_kind_without_a_dead_latent_loss() -> None:
    sae = SparseAutoencoder(4, 8, kind="relu", seed=0)
    with pytest.raises(ValueError, match=r"dead only applies to kinds with a loss on dead"):
        gradients(sae, torch.randn(3, 4), dead=torch.ones(8, dtype=torch.bool))


@dataclass(frozen=True)
class _Shifted(DenseKind):
    """A kind as a new file would write it: ReLU(pre - shift), with a hyperparameter passed
    as a constructor option and a parameter slot of its own (unused by the loss)."""

    name = "test_shifted"

    shift: float

    @classmethod
    def create(cls, d_in: int, d_sae: int, **given: Any) -> _Shifted:
        return cls(shift=float(given.get("shift") or 0.0))

    def extra_parameters(self, d_in: int, d_sae: int) -> dict[str, int]:
        return {"gain": d_sae}

    def init_parameters(self, views: Mapping[str, Tensor]) -> None:
        views["gain"].fill_(2.0)

    def encode(self, sae: SparseAutoencoder, pre: Tensor) -> Tensor:
        return (pre - self.shift).relu()

    def gate(self, step: Step, pre: Tensor) -> tuple[Tensor, Tensor]:
        z = (pre - self.shift).relu()
        return z > 0, z


def test_a_kind_added_by_registering_one_class_trains_saves_and_loads(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(REGISTRY, "test_shifted", _Shifted)
    sae = SparseAutoencoder(6, 16, kind="test_shifted", shift=0.1, seed=0, dtype=torch.float64)  # type: ignore[arg-type]
    assert repr(sae).startswith(
        "SparseAutoencoder(d_in=6, d_sae=16, kind='test_shifted', shift=0.1"
    )
    assert sae.params.numel() == 2 * 6 * 16 + 6 + 16 + 16
    # The hand-written gradient is autograd's.
    x = torch.randn(32, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    params = sae.params.detach().clone().requires_grad_(True)
    views = sae._views(params)
    pre = (x - views["b_dec"]) @ views["encT"].T + views["b_enc"]
    z = (pre - 0.1).relu()
    loss = (z @ views["W_dec"] + views["b_dec"] - x).square().sum(1).mean()
    loss.backward()
    assert params.grad is not None
    torch.testing.assert_close(gradients(sae, x), params.grad)
    truth = SyntheticFeatures(16, 6, firing_probability=0.2, seed=0)
    sae.fit(truth, samples=512, batch_size=64)
    sae.save(tmp_path / "sae")
    assert json.loads((tmp_path / "sae.json").read_text())["config"]["shift"] == 0.1
    back = SparseAutoencoder.load(tmp_path / "sae")
    assert torch.equal(back.params, sae.params)
    assert torch.equal(
        back._views(back.params)["gain"], torch.full((16,), 2.0, dtype=torch.float64)
    )
    torch.testing.assert_close(back.encode(x), sae.encode(x))
