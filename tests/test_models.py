"""load_model: names resolved before any load, quiet loading of task checkpoints, devices."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

from superposition.probe import DEFAULT_MODEL, ActivationProbe, load_model


@pytest.fixture
def no_download(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record (and refuse) every attempt to load from the hub: a fast failure never gets there."""
    import transformers

    calls: list[str] = []

    def refuse(name: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(str(name))
        raise AssertionError(f"from_pretrained({name!r}) was called")

    for cls in (transformers.AutoModel, transformers.AutoTokenizer):
        monkeypatch.setattr(cls, "from_pretrained", refuse)
    return calls


def test_an_unknown_name_offline_fails_without_trying_to_load(
    no_download: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ValueError, match="neither a local folder nor in the Hugging Face") as e:
        load_model("no-such-org/no-such-model")
    assert "HF_HUB_OFFLINE=1" in str(e.value)
    assert "\n" not in str(e.value)
    assert no_download == []


def test_an_unknown_name_with_the_hub_unreachable_fails_at_once(
    no_download: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    # Online, but the hub is a closed local port: one refused connection, no retry loop.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ValueError, match="neither a local folder nor reachable") as e:
        load_model("no-such-org/no-such-model")
    message = str(e.value)
    assert "cannot connect to http://127.0.0.1:9" in message
    assert "HF_HUB_OFFLINE=1" in message
    assert no_download == []


def test_a_missing_folder_is_named_as_such(no_download: list[str], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"neither a local folder \(no such directory\)"):
        load_model(tmp_path / "no-such-model")
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(ValueError, match="is a file; expected a model folder"):
        load_model(tmp_path / "a-file")
    assert no_download == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a torch without a usable GPU")
def test_cuda_without_cuda_is_a_value_error(no_download: list[str]) -> None:
    with pytest.raises(ValueError, match=r"device='cuda' was asked for, but .*use device='cpu'"):
        load_model(device="cuda")
    assert no_download == []


def test_a_device_that_is_not_one(no_download: list[str]) -> None:
    with pytest.raises(ValueError, match=r"device must be a torch device .* got 'gpu0'"):
        load_model(device="gpu0")


def test_the_shipped_model_is_known_by_its_name(minilm_path: str) -> None:
    model, tokenizer = load_model()
    assert model.name_or_path == DEFAULT_MODEL
    acts = ActivationProbe(model).run(["Hello there"])  # its tokenizer is still found
    assert acts.model_name == DEFAULT_MODEL
    assert "site-packages" not in repr(acts)
    assert acts.tokens == tokenizer.convert_ids_to_tokens(tokenizer("Hello there")["input_ids"])
    # Its model name is the shipped copy too: nothing is downloaded.
    again, _ = load_model(DEFAULT_MODEL)
    assert again.name_or_path == DEFAULT_MODEL


def _save_causal_lm(folder: Path, tokenizer: Any, drop: str | None = None) -> None:
    import transformers as tf

    torch.manual_seed(0)
    config = tf.LlamaConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=24,
        tie_word_embeddings=False,  # so the checkpoint has an lm_head the base model lacks
    )
    tf.LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    if drop is not None:
        from safetensors.torch import load_file, save_file

        path = folder / "model.safetensors"
        tensors = load_file(path)
        del tensors[drop]
        save_file(tensors, path, metadata={"format": "pt"})


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def hf_log() -> Any:
    """What transformers logs (its own handler writes to the stderr of its first use)."""
    records = _Records()
    logger = logging.getLogger("transformers")
    logger.addHandler(records)
    try:
        yield records
    finally:
        logger.removeHandler(records)


def test_a_causal_lm_checkpoint_loads_its_base_model_quietly(
    tmp_path: Path, tokenizer: Any, hf_log: _Records
) -> None:
    _save_causal_lm(tmp_path, tokenizer)
    hf_log.messages.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model, _ = load_model(tmp_path)
    assert type(model).__name__ == "LlamaModel"
    assert hf_log.messages == []


def test_weights_missing_from_a_checkpoint_give_one_warning(
    tmp_path: Path, tokenizer: Any, hf_log: _Records
) -> None:
    _save_causal_lm(tmp_path, tokenizer, drop="model.norm.weight")
    hf_log.messages.clear()
    with pytest.warns(UserWarning, match=r"1 weights of LlamaModel .* randomly initialised") as rec:
        load_model(tmp_path)
    assert len(rec) == 1
    assert "norm.weight" in str(rec[0].message)
    assert hf_log.messages == []
