"""What every figure module shares: input validation, figure helpers, colours, saving."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from superposition import metrics
from superposition._io import atomic_path

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Colormap, Normalize
    from matplotlib.figure import Figure
    from numpy.typing import NDArray

_W_DOC = "[instances, n_hidden, n_features]"
_X_DOC = "[tokens, neurons]"


# --------------------------------------------------------------------------- validation helpers


def _float_tensor(x: object, name: str, ndim: int, shape_doc: str) -> Tensor:
    """``x`` as a detached CPU float tensor of exactly ``ndim`` dims, or a ValueError."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor or numpy.ndarray of shape {shape_doc}, "
            f"got {type(x).__name__}"
        )
    # metrics owns the shape/dtype/finiteness messages, so both modules word them alike.
    x = metrics.check_tensor(x.detach().cpu(), name, ndim, shape_doc, exact=True)
    # Half precision has no NumPy twin (bfloat16) and too little range for Gram matrices.
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def _toy_weights(W: object, min_instances: int = 1) -> Tensor:
    """Validate toy weights; a single ``[n_hidden, n_features]`` matrix becomes one instance."""
    if isinstance(W, (Tensor, np.ndarray)) and W.ndim == 2:
        W = W[None]
    W = _float_tensor(W, "W", 3, _W_DOC)
    if W.shape[0] < min_instances or W.shape[-1] == 0 or W.shape[-2] == 0:
        raise ValueError(
            f"W must have shape {_W_DOC} with at least one instance, hidden dimension and "
            f"feature, got shape {tuple(W.shape)}"
        )
    return W


def _probabilities(p: object, n: int, name: str = "feature_probability") -> NDArray[np.float64]:
    """``n`` values in (0, 1] as a float64 array, or a ValueError naming ``name``."""
    arr = np.asarray(p.detach().cpu() if isinstance(p, Tensor) else p, dtype=np.float64)
    arr = np.atleast_1d(arr)
    if arr.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), one value per entry, got {arr.shape}")
    if not bool(np.all((arr > 0) & (arr <= 1))):
        raise ValueError(f"{name} must be in (0, 1], got {arr.tolist()!r}")
    return arr


def _activations(X: object) -> Tensor:
    X = _float_tensor(X, "X", 2, _X_DOC)
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(
            f"X must have shape {_X_DOC} with at least one token and one neuron, "
            f"got shape {tuple(X.shape)}"
        )
    return X


# --------------------------------------------------------------------------- figure helpers


def _new_figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _root(ax: Axes) -> Figure:
    """The top-level figure of ``ax`` (its ``.figure`` is a SubFigure inside subfigures)."""
    from matplotlib.figure import Figure

    fig = ax.figure
    return fig if isinstance(fig, Figure) else fig.figure


def _panel(ax: Axes | None, width: float = 6.0, height: float = 4.5) -> tuple[Figure, Axes]:
    if ax is None:
        fig = _new_figure(width, height)
        return fig, fig.add_subplot()
    return _root(ax), ax


def _require(obj: object, accessor: str, what: str, names: tuple[str, ...]) -> None:
    """The duck-typing check of the plot accessors, with an error that says what is missing."""
    for name in names:
        if not hasattr(obj, name):
            raise TypeError(f"{accessor} needs {what}, {type(obj).__name__} has no .{name}")


# --------------------------------------------------------------------------- saving


def save_figure(fig: Figure, path: str | os.PathLike[str], *, dpi: float = 150) -> Path:
    """Write ``fig`` to ``path`` atomically: a failed save leaves no half-written file.

    The figure is written to a hidden temporary file in the same folder and moved into place
    with :func:`os.replace`, so readers see either the old file or the complete new one; its
    permissions follow the umask. The format follows the suffix (``.png``, ``.svg``, ``.pdf``, ...).

    Args:
        fig: the figure.
        path: destination; its folder must exist.
        dpi: resolution of raster output.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Examples:
        >>> import tempfile, torch
        >>> from superposition.plot import activation_sums
        >>> fig = activation_sums(torch.rand(10, 20))
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     saved = save_figure(fig, f"{folder}/sums.png")
        ...     saved.stat().st_size > 0
        True
    """
    target = Path(path)
    # Explicit format: without a suffix matplotlib would append ".png" to the temporary name.
    fmt = target.suffix[1:].lower() or "png"
    with atomic_path(target) as temp:
        fig.savefig(temp, dpi=dpi, format=fmt)
    return target


# --------------------------------------------------------------------------- colour helpers


def _cmap(name: str) -> Colormap:
    import matplotlib

    return matplotlib.colormaps[name]


def _mappable(name: str, norm: Normalize) -> ScalarMappable:
    from matplotlib.cm import ScalarMappable

    return ScalarMappable(norm=norm, cmap=_cmap(name))
