"""The closed-form gradients of the toy models (the rule is in :mod:`superposition.toy.train`'s
docstring): preallocated batch-sized buffers per model variant, and :func:`gradients`, the
gradient the training loop uses, exposed so that it can be checked against autograd."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from superposition.toy.model import ToyModel

__all__ = ["gradients"]

_FEATURE_MAJOR_BELOW = 16  # features
_threshold_backward = torch.ops.aten.threshold_backward.grad_input


def _feature_major(n_features: int) -> bool:
    """Whether batches are stored ``[instances, features, batch]`` rather than batch-major.

    Tall-skinny products with a handful of features (``[1024, 5] @ [5, 2]``) are several times
    slower in MKL than the same products laid out wide (``[2, 5] @ [5, 1024]``); from about
    16 features the batch-major layout is faster again (``benchmarks/bench_toy.py``).
    """
    return n_features < _FEATURE_MAJOR_BELOW


class _Buffers:
    """Preallocated batch-sized tensors and the gradient rule of one model variant.

    The hidden activations are stored transposed, ``hT: [instances, hidden + 1, batch]`` (the
    last row is the ones that carry the bias), and the batch either batch-major
    (``[instances, batch, features]``) or, for few features, feature-major
    (``[instances, features, batch]``): the layouts in which the products are fastest.
    """

    def __init__(
        self, P: Tensor, activation: str, n_hidden: int, importance: Tensor, batch_size: int
    ) -> None:
        inst, _, feats = P.shape
        hid = n_hidden
        dev, dt = P.device, P.dtype
        self.activation = activation
        self.feature_major = _feature_major(feats)
        self.batch_shape = (
            (inst, feats, batch_size) if self.feature_major else (inst, batch_size, feats)
        )
        self.hid = hid
        self.P = P
        self.W = P[:, :hid]
        tied = activation != "abs"
        self.Pout_full = P if tied else P[:, hid:]  # [I, hid+1, F]: output weights and bias
        self.Wout = P[:, :hid] if tied else P[:, hid : 2 * hid]
        self.G = torch.zeros_like(P)
        self.Gout = self.G if tied else self.G[:, hid:]
        self.GW = self.G[:, :hid]
        # dhᵀx lands here, then adds to GW: a batched product into GW's own strided rows
        # falls back to one product per instance (several times slower for small models)
        self.GWx = torch.empty(inst, hid, feats, device=dev, dtype=dt)
        self.target = None if tied else torch.empty(self.batch_shape, device=dev, dtype=dt)
        self.hT_aug = torch.empty(inst, hid + 1, batch_size, device=dev, dtype=dt)
        self.hT_aug[:, hid] = 1.0
        # h = Wx is computed into hT (contiguous, like a copy of W): a batched product with
        # strided operands or output (W and the rows of hT_aug are) runs one instance at a time
        self.Wc = torch.empty(inst, hid, feats, device=dev, dtype=dt)
        self.hT = torch.empty(inst, hid, batch_size, device=dev, dtype=dt)
        self.t = torch.empty(self.batch_shape, device=dev, dtype=dt)
        self.o = torch.empty_like(self.t) if activation != "linear" else self.t
        self.dhT = torch.empty(inst, hid, batch_size, device=dev, dtype=dt)
        imp = importance.to(dev, dt)
        self.w = (2.0 / (batch_size * feats)) * imp[:, None, :]
        self.importance = imp[:, :, None] if self.feature_major else imp[:, None, :]
        self.Ww = torch.empty(inst, hid, feats, device=dev, dtype=dt)

    def new_batch(self) -> Tensor:
        """An empty batch buffer in this layout (``[instances, batch, features]`` view)."""
        x = torch.empty(self.batch_shape, device=self.P.device, dtype=self.P.dtype)
        return x.transpose(1, 2) if self.feature_major else x

    def gradients(self, x: Tensor) -> Tensor:
        """Loss gradient w.r.t. the packed parameters for the batch ``x``, into ``G``.

        ``x`` is a buffer from :meth:`new_batch` (``[instances, batch, features]`` view).
        """
        fm = self.feature_major
        xs = x.transpose(1, 2) if fm else x  # the batch in its storage layout
        hT, t, o = self.hT, self.t, self.o
        torch.bmm(self.Wc.copy_(self.W), xs if fm else xs.mT, out=hT)
        if self.activation in ("relu_hidden", "abs"):
            hT.relu_()
        self.hT_aug[:, : self.hid].copy_(hT)
        target = xs
        if self.target is not None:
            target = torch.abs(xs, out=self.target)
        if fm:
            lhs, rhs = self.Pout_full.mT, self.hT_aug  # o: [F, B] = Poutᵀ h_aug
        else:
            lhs, rhs = self.hT_aug.mT, self.Pout_full  # o: [B, F] = h_aug Pout
        if self.activation == "linear":
            torch.baddbmm(xs, lhs, rhs, beta=-1, out=t)  # o - x in one matmul
        else:
            torch.bmm(lhs, rhs, out=o)
            torch.sub(o, target, out=t)
            _threshold_backward(t, o, 0, grad_input=t)  # ReLU output: no gradient where o <= 0
        torch.bmm(self.hT_aug, t.mT if fm else t, out=self.Gout)  # [hᵀt; Σ_batch t]
        self.Gout.mul_(self.w)
        torch.mul(self.Wout, self.w, out=self.Ww)
        torch.bmm(self.Ww, t if fm else t.mT, out=self.dhT)
        if self.activation in ("relu_hidden", "abs"):
            _threshold_backward(self.dhT, hT, 0, grad_input=self.dhT)
        if self.activation == "abs":
            torch.bmm(self.dhT, x, out=self.GW)
        else:
            self.GW.add_(torch.bmm(self.dhT, x, out=self.GWx))
        return self.G

    def losses(self, x: Tensor) -> Tensor:
        """``[instances]`` loss of each instance on the batch ``x`` of the last
        :meth:`gradients` call (:meth:`ToyModel.losses`, from the outputs already computed).

        Each instance's sum runs over its own contiguous block, so the value does not depend
        on which other instances share the buffers.
        """
        xs = x.transpose(1, 2) if self.feature_major else x
        target = xs if self.target is None else self.target
        # y - target: o - x for the linear model (already in t), else ReLU(o) - target
        err = self.t if self.activation == "linear" else torch.relu(self.o).sub_(target)
        inst = err.shape[0]
        total = (err.square() * self.importance).view(inst, -1).sum(1)
        return total / (err.shape[1] * err.shape[2])


def gradients(model: ToyModel, x: Tensor, importance: Tensor | float = 1.0) -> Tensor:
    """Closed-form gradient of ``model.loss(x, importance)`` w.r.t. ``model.params``.

    The gradient the training loop uses, exposed so that it can be checked against autograd.

    Args:
        model: the model.
        x: ``[batch, instances, n_features]``.
        importance: ``[instances, n_features]`` or a float.

    Returns:
        ``[instances, rows, n_features]``, laid out like ``model.params``.

    Examples:
        >>> from superposition.toy.model import ToyModel
        >>> model = ToyModel(4, 2, n_instances=2, seed=0)
        >>> x = torch.rand(8, 2, 4)
        >>> model.loss(x).backward()
        >>> torch.allclose(gradients(model, x), model.params.grad, atol=1e-6)
        True
    """
    x = model._check_x(x)
    imp = torch.as_tensor(importance, dtype=x.dtype, device=x.device).expand(
        model.n_instances, model.n_features
    )
    with torch.no_grad():
        buf = _Buffers(model.params.data, model.activation, model.n_hidden, imp, x.shape[0])
        xb = buf.new_batch()
        xb.copy_(x.transpose(0, 1))
        return buf.gradients(xb).clone()
