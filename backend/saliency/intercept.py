"""Every conv2d / linear op whose weight is a watched parameter, however the model calls it.

A ``TorchFunctionMode`` sees each torch call of the forward pass: ``nn.Conv2d`` and its subclasses,
``F.conv2d`` in a custom ``forward``, ``nn.Linear``, ``F.linear``. A tensor computed from watched parameters
alone (a weight parametrization, weight standardization, a transpose) carries its source parameters with it,
so an op whose weight is such a tensor is traced back to the parameters the optimizer updates.
``nn.MultiheadAttention`` runs its projections inside one fused function: that call is split into the
projections, done here where they can be seen, and the attention itself: computed here per head when the
call has no masks or extras (ViTs), otherwise run by torch's function with identity projections (exact:
``x @ I == x``, at the cost of four E x E matmuls per token).
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

_CONV_SIGNATURE = inspect.signature(lambda input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1: None)
_LINEAR_SIGNATURE = inspect.signature(lambda input, weight, bias=None: None)
_ATTENTION_SIGNATURE = inspect.signature(F.multi_head_attention_forward)
_ATTENTION_WEIGHTS = ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight", "out_proj_weight")


@dataclass(frozen=True)
class WeightUse:
    """The weight tensor an op used and the watched parameters it comes from.

    ``direct``: the weight is rows ``row_start:row_start + weight.shape[0]`` of ``params[0]`` itself, so its
    gradient is that parameter's; otherwise it was computed from ``params`` (chain rule through autograd)."""

    weight: torch.Tensor
    params: tuple[torch.Tensor, ...]
    direct: bool
    row_start: int = 0


@dataclass(frozen=True)
class ConvCall:
    """A 2-D convolution's settings, with the attribute names of ``nn.Conv2d`` that the conv kernels read.

    ``pad`` (F.pad order) is string padding made explicit: apply it to the input, then ``padding`` is 0."""

    weight: torch.Tensor
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int
    pad: tuple[int, int, int, int] | None = None
    padding_mode: str = "zeros"

    @property
    def kernel_size(self) -> tuple[int, int]:
        return tuple(self.weight.shape[2:])

    @property
    def out_channels(self) -> int:
        return self.weight.shape[0]

    @property
    def in_channels(self) -> int:
        return self.weight.shape[1] * self.groups

    def padded(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.pad is None else F.pad(x, self.pad)


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


def conv_call(weight: torch.Tensor, stride, padding, dilation, groups: int) -> ConvCall:
    stride, dilation = _pair(stride), _pair(dilation)
    if padding == "valid":
        padding = 0
    if padding == "same":
        pad = []
        for size, rate in zip(reversed(weight.shape[2:]), reversed(dilation)):
            total = rate * (size - 1)
            pad += [total // 2, total - total // 2]
        return ConvCall(weight, stride, (0, 0), dilation, groups, tuple(pad))
    return ConvCall(weight, stride, _pair(padding), dilation, groups)


def sample_dim(shape: torch.Size, batch: int) -> int | None:
    """Which dim of a token tensor ``[..., features]`` holds the samples, in outer-major order.

    0 for ``[B, ...]`` and ``[B * k, ...]`` (windows), 1 for sequence-first ``[L, B, E]``; None when the shape
    cannot tell (the caller then takes the exact slow path rather than guess)."""
    if batch == 1:
        return 0
    if len(shape) < 2:
        return None
    first = shape[0] % batch == 0
    second = len(shape) >= 3 and shape[1] == batch
    if first and not second:
        return 0
    if second and not first:
        return 1
    return None


def rows_by_sample(t: torch.Tensor, batch: int, dim: int) -> torch.Tensor:
    """``[batch, rows, features]`` view of a token tensor whose samples are outermost along ``dim``."""
    return t.movedim(dim, 0).reshape(batch, -1, t.shape[-1])


class WeightOpHandler:
    """What a ``WeightOpMode`` calls: each may return a replacement for the op's output."""

    def conv(self, x: torch.Tensor, call: ConvCall, use: WeightUse, out: torch.Tensor) -> torch.Tensor:
        return out

    def linear(self, x: torch.Tensor, use: WeightUse, out: torch.Tensor, dim: int | None) -> torch.Tensor:
        """``dim``: the samples' dim of ``x`` and ``out`` when the caller knows it, else None."""
        return out

    def batch_norm(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        return out

    def other_use(self, params: Iterable[torch.Tensor]) -> None:
        """The parameters reached the loss through an op this mode cannot see inside."""


class WeightOpMode(TorchFunctionMode):
    """Routes the forward pass's conv2d / linear / batch_norm calls on watched weights to a handler.

    ``constants`` (buffers, unwatched parameters) may mix with watched parameters in a weight's computation
    without making it an activation. ``twice_differentiable`` computes attention with explicit softmax
    weights, which (unlike the fused CPU kernel) can be differentiated twice."""

    def __init__(self, watched: Iterable[torch.Tensor], constants: Iterable[torch.Tensor], handler: WeightOpHandler,
                 *, twice_differentiable: bool = False):
        super().__init__()
        self.twice_differentiable = twice_differentiable
        self._watched = {id(p): p for p in watched}
        self._constants = {id(t) for t in constants} - set(self._watched)
        self._derived: dict[int, tuple[weakref.ref, tuple[torch.Tensor, ...]]] = {}
        self.handler = handler

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.conv2d:
            return self._conv(func, args, kwargs)
        if func is F.linear:
            return self._linear(func, args, kwargs)
        if func is F.multi_head_attention_forward:
            return self._attention(func, args, kwargs)
        out = func(*args, **kwargs)
        self._follow(args, kwargs, out)
        if func is F.batch_norm:
            return self.handler.batch_norm(args[0] if args else kwargs["input"], out)
        return out

    def sources(self, t) -> tuple[torch.Tensor, ...]:
        """The watched parameters ``t`` is, or was computed from alone; () for anything else."""
        if not isinstance(t, torch.Tensor):
            return ()
        if id(t) in self._watched:
            return (t,)
        entry = self._derived.get(id(t))
        if entry is None or entry[0]() is not t:
            return ()
        return entry[1]

    def _follow(self, args, kwargs, out) -> None:
        """Outputs of ops on watched weights and constants only are derived weights; other ops using a
        watched weight are uses the handler cannot see inside."""
        found: dict[int, torch.Tensor] = {}
        mixed = False
        for t in _tensors(args, kwargs):
            sources = self.sources(t)
            found.update((id(p), p) for p in sources)
            mixed = mixed or (not sources and id(t) not in self._constants)
        if not found:
            return
        outputs = list(_tensors((out,), {}))
        if mixed or not outputs:
            if outputs:
                self.handler.other_use(found.values())
            return
        self._derived = {k: v for k, v in self._derived.items() if v[0]() is not None}
        for t in outputs:
            self._derived[id(t)] = (weakref.ref(t), tuple(found.values()))

    def _use(self, weight: torch.Tensor, rows: tuple[int, int] | None = None) -> WeightUse | None:
        sources = self.sources(weight)
        if not sources:
            return None
        if rows is not None:
            weight = weight[rows[0] : rows[1]]
        direct = len(sources) == 1 and sources[0] is (weight if rows is None else weight._base)
        return WeightUse(weight, sources, direct, rows[0] if rows is not None else 0)

    def _others(self, *tensors) -> None:
        """A watched weight passed as an op's activation or bias is a use the handler does not see."""
        found = [p for t in tensors for p in self.sources(t)]
        if found:
            self.handler.other_use(found)

    def _conv(self, func, args, kwargs):
        bound = _CONV_SIGNATURE.bind(*args, **kwargs).arguments
        x, weight = bound["input"], bound["weight"]
        out = func(*args, **kwargs)
        self._others(x, bound.get("bias"))
        use = self._use(weight)
        if use is None:
            return out
        if x.dim() != 4:
            self.handler.other_use(use.params)
            return out
        call = conv_call(weight, bound.get("stride", 1), bound.get("padding", 0), bound.get("dilation", 1),
                         bound.get("groups", 1))
        return self.handler.conv(x, call, use, out)

    def _linear(self, func, args, kwargs):
        bound = _LINEAR_SIGNATURE.bind(*args, **kwargs).arguments
        out = func(*args, **kwargs)
        self._others(bound["input"], bound.get("bias"))
        use = self._use(bound["weight"])
        return out if use is None else self.handler.linear(bound["input"], use, out, None)

    def _project(self, x, weight, bias, rows=None) -> torch.Tensor:
        """One projection of an attention call, seen by the handler like any linear op."""
        use = self._use(weight, rows)
        if rows is not None:
            weight, bias = weight[rows[0] : rows[1]], None if bias is None else bias[rows[0] : rows[1]]
        out = F.linear(x, weight if use is None else use.weight, bias)
        return out if use is None else self.handler.linear(x, use, out, 1)

    def _attention(self, func, args, kwargs):
        bound = _ATTENTION_SIGNATURE.bind(*args, **kwargs)
        bound.apply_defaults()
        a = dict(bound.arguments)
        query, key, value = a["query"], a["key"], a["value"]
        if not any(self.sources(a[name]) for name in _ATTENTION_WEIGHTS):
            return func(*args, **kwargs)
        if query.dim() != 3:  # unbatched: no samples to tell apart
            self.handler.other_use(p for name in _ATTENTION_WEIGHTS for p in self.sources(a[name]))
            return func(*args, **kwargs)
        size = a["embed_dim_to_check"]
        bias = a["in_proj_bias"]
        if a["use_separate_proj_weight"]:
            biases = (None,) * 3 if bias is None else bias.chunk(3)
            names = ("q_proj_weight", "k_proj_weight", "v_proj_weight")
            q, k, v = (self._project(t, a[n], b) for t, n, b in zip((query, key, value), names, biases))
        elif query is key and key is value:
            q, k, v = self._project(query, a["in_proj_weight"], bias).chunk(3, dim=-1)
        else:
            q, k, v = (self._project(t, a["in_proj_weight"], bias, (i * size, (i + 1) * size))
                       for i, t in enumerate((query, key, value)))
        out_weight, out_bias = a["out_proj_weight"], a["out_proj_bias"]
        if not self.twice_differentiable and _plain_attention(a):
            return self._project(_heads_attention(q, k, v, a["num_heads"]), out_weight, out_bias), None
        eye = torch.eye(size, dtype=q.dtype, device=q.device)
        a.update(query=q, key=k, value=v, in_proj_weight=None, in_proj_bias=None, use_separate_proj_weight=True,
                 q_proj_weight=eye, k_proj_weight=eye, v_proj_weight=eye, out_proj_weight=eye, out_proj_bias=None)
        wanted = a["need_weights"]
        if self.twice_differentiable:
            a["need_weights"] = True
        out, weights = func(**a)
        weights = weights if wanted else None
        return self._project(out, out_weight, out_bias), weights


def _plain_attention(a: dict) -> bool:
    """No masks, extra key/value rows, attention weights or active dropout: softmax(q k^T / sqrt(d)) v per
    head is all the call computes, and it can be computed here without identity projections."""
    extras = ("attn_mask", "key_padding_mask", "bias_k", "bias_v", "static_k", "static_v")
    return (all(a[name] is None for name in extras) and not a["add_zero_attn"] and not a["need_weights"]
            and not a["is_causal"] and (a["dropout_p"] == 0.0 or not a["training"]))


def _heads_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """``[L, N, E]`` attention of projected sequence-first ``q [L, N, E]``, ``k, v [S, N, E]``, as
    ``F.multi_head_attention_forward`` computes it after its projections."""
    length, batch, size = q.shape

    def split(t: torch.Tensor) -> torch.Tensor:  # [T, N, E] -> [N, heads, T, E / heads]
        return t.reshape(t.shape[0], batch * heads, size // heads).transpose(0, 1).view(batch, heads, t.shape[0], -1)

    out = F.scaled_dot_product_attention(split(q), split(k), split(v))
    return out.permute(2, 0, 1, 3).reshape(length, batch, size)


def _tensors(args, kwargs) -> Iterator[torch.Tensor]:
    for value in (*args, *kwargs.values()):
        if isinstance(value, torch.Tensor):
            yield value
        elif isinstance(value, (list, tuple)):
            yield from (v for v in value if isinstance(v, torch.Tensor))
