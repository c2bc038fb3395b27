"""Exact per-sample parameter saliency: the mean of |dL_n/dW| over each filter, batched.

For a conv layer, sample n's weight gradient is ``G_n @ unfold(X_n)^T`` (per group), where ``X_n`` is the
op's input and ``G_n`` the gradient of sample n's loss w.r.t. the op's output (Linear rows: ``G_n^T X_n``,
see linear.py). The op-level interception of intercept.py keeps ``X``; a hook on the output tensor receives
``G`` during a backward pass that computes no weight gradient at all (we differentiate w.r.t. the input
only). Each layer's per-sample gradients are then formed in small tiles and reduced to ``[B, Cout]`` while the tile is still in cache, so memory stays at one training step's.

In eval mode the samples of a batch do not interact, so the gradient of the summed loss w.r.t. ``X_n``'s
layer output is exactly sample n's own gradient.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .intercept import ConvCall, WeightOpHandler, WeightOpMode, WeightUse, rows_by_sample, sample_dim
from .kernels import abs_grad_sum
from .layout import FilterLayout, LayerSpan
from .linear import linear_abs_mean, linear_weight_grads
from .model_calls import eval_mode, logits_of, model_device_dtype, per_sample_loop

# Per-sample gradients of deep layers are large and cheap to compute: writing them to memory and reading
# them back would cost more than the matmul itself. Tiles of this size stay in the CPU's last-level cache
# and still hold enough samples for one bmm call to split across cores (per-layer timings on the 2-core
# VM: docs/benchmarks.md).
_CPU_TILE_BYTES = 8 << 20
_GPU_TILE_BYTES = 1 << 28
# With many output positions, the CPU conv library's own weight-gradient kernel, run with the batch as conv
# groups, is the fastest way to form per-sample gradients; with few, one matmul over gathered windows is.
_GROUPED_CONV_MIN_POSITIONS = 100
_GROUPED_BUDGET_SCALE = 2

ProgressFn = Callable[[int, int], None]
_log = logging.getLogger(__name__)


def filter_saliency(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    batch_size: int = 64,
    layout: FilterLayout | None = None,
    progress: ProgressFn | None = None,
) -> torch.Tensor:
    """Per-sample mean ``|d CrossEntropy(model(x_n), y_n) / dW|`` for every conv filter, model in eval mode.

    Returns ``[N, layout.num_filters]`` on ``images``' device: float64 if the model computes in float64,
    float32 otherwise. Work runs on the model's device in micro-batches of ``batch_size``, halved for the rest
    of the call whenever one runs out of device memory. The model is left exactly as found (train/eval
    flags, hooks, ``requires_grad``, ``.grad``), also when this raises.
    ``progress(done, total)`` is called after each micro-batch.
    """
    layout = layout or FilterLayout.from_model(model)
    if images.dim() < 2 or labels.dim() != 1 or images.shape[0] != labels.shape[0]:
        raise ValueError(f"need images [N, ...] and labels [N]; got {tuple(images.shape)} and {tuple(labels.shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device, dtype = model_device_dtype(model)
    out_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    total = images.shape[0]
    result = torch.empty(total, layout.num_filters, dtype=out_dtype, device=images.device)
    slow_layers: set[str] = set()
    logged: set[str] = set()
    with eval_mode(model):
        start, size = 0, batch_size
        while start < total:
            x = images[start : start + size].to(device=device, dtype=dtype)
            y = labels[start : start + size].to(device=device)
            try:
                chunk = _batch_profile(model, layout, x, y, slow_layers)
            except torch.OutOfMemoryError:
                if size == 1:
                    raise
                del x, y
                size //= 2  # split large batches automatically: the rest of the run keeps the smaller size
                _log.warning("out of memory at a micro-batch of %d; continuing with %d", size * 2, size)
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                continue
            if slow_layers - logged:
                _log.warning("exact slow path (one autograd call per sample) for layers the fast path cannot "
                             "take: %s", ", ".join(sorted(slow_layers - logged)))
                logged |= slow_layers
            result[start : start + chunk.shape[0]] = chunk.to(result.device, out_dtype)
            start += chunk.shape[0]
            if progress is not None:
                progress(start, total)
    return result


def _batch_profile(model: nn.Module, layout: FilterLayout, x: torch.Tensor, y: torch.Tensor,
                   slow_layers: set[str] | None = None) -> torch.Tensor:
    """Raw saliency of one micro-batch: one forward, one backward that reaches every op on a filter weight.

    ``slow_layers`` collects the names of layers that took the exact slow path."""
    with SaliencyRecorder(model, layout, differentiable=False) as recorder:
        recorder.backward(F.cross_entropy(logits_of(recorder.forward(x)), y, reduction="sum"))
        if slow_layers is not None:
            slow_layers.update(span.name for span in recorder.slow_spans)
        return recorder.profile(y)


@dataclass(eq=False)
class _Record:
    """One op's use of a watched weight, seen in the forward pass; ``fired`` once its output gradient came."""

    use: WeightUse
    fired: bool = False


class SaliencyRecorder(WeightOpHandler):
    """Sees every conv / linear op on a layout's weights to turn one backward pass into per-sample saliency.

    Uses are counted during the forward pass. A filter used once gets its |gradient| reduced tile by tile; a
    filter used several times, or through a weight transform, gets its full per-sample gradient summed over
    uses (and carried back to the parameter by the chain rule) before |.|. Weights reaching the loss in ways
    no op here shows (a watched weight multiplied into an activation, a token layout that does not tell the
    samples apart) take the exact slow path: one autograd call per sample, for those weights only.

    ``differentiable=True`` keeps the graph so the profile itself can be differentiated (input-space
    saliency); then the backward must run with ``create_graph=True``.
    """

    def __init__(self, model: nn.Module, layout: FilterLayout, *, differentiable: bool):
        self.model = model
        self.layout = layout
        self.differentiable = differentiable
        params = dict(model.named_parameters())
        missing = [span.name for span in layout.spans if span.name not in params]
        if missing:
            raise ValueError(f"layout does not match the model: no parameter {missing[0]!r}")
        self._weights = [params[span.name] for span in layout.spans]
        self._span_of = {id(w): span for w, span in zip(self._weights, layout.spans)}
        constants = [*model.buffers(), *(p for p in model.parameters() if id(p) not in self._span_of)]
        self._mode = WeightOpMode(self._weights, constants, self, twice_differentiable=differentiable)
        self._ranges: dict[LayerSpan, list[tuple[int, int]]] = {}
        self._records: list[_Record] = []
        self._rows: dict[LayerSpan, torch.Tensor] = {}  # [B, filters] reduced per-use parts
        self._full: dict[LayerSpan, torch.Tensor] = {}  # [B, filters, fan_in] gradients summed over uses
        self._other: set[LayerSpan] = set()
        self._flags: list[bool] = []
        self._roots: list[torch.Tensor] = []  # outputs of recorded ops that no recorded op precedes
        self._after_record: dict = {}  # autograd node -> whether a recorded op's output lies on its way back
        self.input: torch.Tensor | None = None

    def __enter__(self) -> "SaliencyRecorder":
        # weights must require grad for a transformed weight to keep the graph back to its parameter; the
        # backward asks for the input's gradient only, so no weight gradient is ever computed or stored
        self._flags = [w.requires_grad for w in self._weights]
        self._grad_mode = torch.enable_grad()
        self._grad_mode.__enter__()
        for w in self._weights:
            w.requires_grad_(True)
        return self

    def __exit__(self, *exc) -> None:
        for w, flag in zip(self._weights, self._flags):
            w.requires_grad_(flag)
        self._grad_mode.__exit__(*exc)
        # the mode and this recorder refer to each other: free the per-sample state now, not at the next GC
        self._records.clear()
        self._rows.clear()
        self._full.clear()
        self._roots.clear()
        self._after_record.clear()

    def forward(self, x: torch.Tensor):
        """The model's output on a leaf copy of ``x`` that requires grad: the backward target that reaches
        every op; ``self.input`` is that copy."""
        self.input = x.detach().requires_grad_(True)
        with self._mode:
            return self.model(self.input)

    def backward(self, loss: torch.Tensor) -> None:
        """The backward pass that fires every recorded op's hook (not differentiable).

        It stops at the outputs of the first recorded ops: everything behind them, the gradient of the input
        included (for a one-channel stem the costliest conv backward of the model), is never computed.
        A hook sees the full gradient of its output either way: all of the loss's paths to it are run."""
        torch.autograd.grad(loss, self._roots or [self.input], allow_unused=True)

    # -- forward: which ops use which weights --------------------------------------------------------------

    def conv(self, x, call: ConvCall, use: WeightUse, out):
        record = self._record(x, use, out)
        if record is not None:
            out.register_hook(functools.partial(self._on_conv_grad, call, x, x._version, record))
        return out

    def linear(self, x, use: WeightUse, out, dim):
        batch = self.input.shape[0]
        dim = sample_dim(x.shape, batch) if dim is None else dim
        if dim is None or x.dim() <= dim or x.shape[dim] % batch:
            self.other_use(use.params)
            return out
        record = self._record(x, use, out)
        if record is not None:
            out.register_hook(functools.partial(self._on_linear_grad, x, x._version, dim, record))
        return out

    def other_use(self, params) -> None:
        self._other.update(self._span_of[id(p)] for p in params)

    def _record(self, x: torch.Tensor, use: WeightUse, out: torch.Tensor) -> _Record | None:
        if not out.requires_grad:
            return None
        if not self._follows_record(x):
            self._roots.append(out)
        self._after_record[out.grad_fn] = True
        for span, rows in self._rows_of(use):
            self._ranges.setdefault(span, []).append(rows)
        record = _Record(use)
        self._records.append(record)
        return record

    def _follows_record(self, x: torch.Tensor) -> bool:
        """Whether ``x`` was computed from a recorded op's output: a walk back through its autograd graph that
        visits each node once per forward pass (results are kept in ``_after_record``)."""
        known = self._after_record
        pending = [x.grad_fn]
        while pending:
            node = pending[-1]
            if node is None or node in known:
                pending.pop()
                continue
            inputs = [n for n, _ in node.next_functions if n is not None]
            unknown = [n for n in inputs if n not in known]
            if unknown:
                pending.extend(unknown)
                continue
            pending.pop()
            known[node] = any(known[n] for n in inputs)
        return x.grad_fn is not None and known[x.grad_fn]

    def _rows_of(self, use: WeightUse) -> list[tuple[LayerSpan, tuple[int, int]]]:
        if use.direct:
            return [(self._span_of[id(use.params[0])], (use.row_start, use.row_start + use.weight.shape[0]))]
        return [(span, (0, span.num_filters)) for span in (self._span_of[id(p)] for p in use.params)]

    # -- backward: per-sample gradients, reduced ---------------------------------------------------------

    def _check_unchanged(self, record: _Record, x: torch.Tensor, version: int) -> None:
        if x._version != version:
            name = self._span_of[id(record.use.params[0])].name
            raise RuntimeError(
                f"the input of {name} was modified in place after the op ran; its weight gradient can no longer be formed"
            )

    def _exclusive(self, record: _Record) -> bool:
        """The use is the only one of its filters and takes the weight as it is: reduce it on its own."""
        if not record.use.direct:
            return False
        ((span, (start, stop)),) = self._rows_of(record.use)
        return sum(1 for a, b in self._ranges[span] if a < stop and start < b) == 1

    def _on_conv_grad(self, call: ConvCall, x, version: int, record: _Record, grad) -> None:
        self._check_unchanged(record, x, version)
        grad = grad if self.differentiable else grad.detach()
        x = call.padded(x)
        if self._exclusive(record):
            self._add_rows(record, per_sample_abs_mean(call, x, grad, differentiable=self.differentiable))
        else:
            self._add_full(record, per_sample_weight_grads(call, x, grad))
        record.fired = True

    def _on_linear_grad(self, x, version: int, dim: int, record: _Record, grad) -> None:
        self._check_unchanged(record, x, version)
        grad = grad if self.differentiable else grad.detach()
        batch = self.input.shape[0]
        xs, gs = rows_by_sample(x, batch, dim), rows_by_sample(grad, batch, dim)
        if self._exclusive(record):
            self._add_rows(record, linear_abs_mean(xs, gs, differentiable=self.differentiable))
        else:
            self._add_full(record, linear_weight_grads(xs, gs))
        record.fired = True

    def _add_rows(self, record: _Record, values: torch.Tensor) -> None:
        ((span, (start, stop)),) = self._rows_of(record.use)
        rows = self._rows.get(span)
        if rows is None:
            rows = self._rows[span] = values.new_zeros(values.shape[0], span.num_filters)
        rows[:, start:stop] += values

    def _add_full(self, record: _Record, grads: torch.Tensor) -> None:
        """``grads [B, rows, ...]``: per-sample gradients of the weight the op used."""
        batch = grads.shape[0]
        use = record.use
        if use.direct:
            parts = [(self._rows_of(use)[0], grads.reshape(batch, use.weight.shape[0], -1))]
        else:  # chain rule back to the parameters, one sample at a time (the transform is weight-sized)
            grads = grads.reshape(batch, *use.weight.shape)
            per_sample = [
                torch.autograd.grad(use.weight, use.params, g, retain_graph=True,
                                    create_graph=self.differentiable, allow_unused=True)
                for g in grads
            ]
            parts = []
            for i, param in enumerate(use.params):
                stacked = torch.stack([torch.zeros_like(param) if g[i] is None else g[i] for g in per_sample])
                span = self._span_of[id(param)]
                parts.append(((span, (0, span.num_filters)), stacked.reshape(batch, param.shape[0], -1)))
        for (span, (start, stop)), part in parts:
            full = self._full.get(span)
            if full is None:
                full = self._full[span] = part.new_zeros(batch, span.num_filters, part.shape[2])
            full[:, start:stop] += part

    # -- the result --------------------------------------------------------------------------------------

    @property
    def slow_spans(self) -> list[LayerSpan]:
        """Layers the ops could not account for: weights used otherwise, or whose gradient never came."""
        unfired = {span for r in self._records if not r.fired for span, _ in self._rows_of(r.use)}
        return [span for span in self.layout.spans if span in self._other or span in unfired]

    def profile(self, labels: torch.Tensor) -> torch.Tensor:
        """``[batch, num_filters]`` raw saliency; filters whose weights the loss does not reach are 0."""
        x = self.input
        slow = self.slow_spans
        exact = {}
        if slow:
            values = per_sample_loop(self.model, [self._weights[self.layout.spans.index(s)] for s in slow], x,
                                     labels, create_graph=self.differentiable)
            exact = dict(zip(slow, values.split([s.num_filters for s in slow], dim=1)))
        pieces = []
        for span in self.layout.spans:
            piece = exact.get(span)
            if piece is None:
                piece = self._rows.get(span)
                full = self._full.get(span)
                if full is not None:
                    reduced = full.abs().mean(dim=2)
                    piece = reduced if piece is None else piece + reduced
            if piece is None:
                piece = x.new_zeros(x.shape[0], span.num_filters)
            pieces.append(piece.to(x.dtype))
        return torch.cat(pieces, dim=1)


def per_sample_abs_mean(
    conv: nn.Conv2d, x: torch.Tensor, grad: torch.Tensor, *, differentiable: bool = False
) -> torch.Tensor:
    """``[B, Cout]``: mean over each filter's weights of |sample n's weight gradient|, tile by tile."""
    fan_in = conv.weight[0].numel()
    x, padding = _explicit_padding(conv, x)
    if differentiable:
        return torch.cat([tile.abs().sum(dim=2) for _, tile in _weight_grad_tiles(conv, x, grad, padding)]) / fan_in
    fused = abs_grad_sum(x, grad, conv.kernel_size, conv.stride, padding, conv.dilation, conv.groups)
    if fused is not None:
        return fused.div_(fan_in)
    if _depthwise_on_cpu(conv, x):
        return _depthwise_weight_grads(conv, x, grad, padding).abs_().sum(dim=2).div_(fan_in)
    out = torch.empty(x.shape[0], grad.shape[1], device=grad.device, dtype=grad.dtype)
    positions = grad.shape[2] * grad.shape[3]
    if not x.is_cuda and positions >= _GROUPED_CONV_MIN_POSITIONS:
        tiles = _batch_as_groups_tiles(conv, x, grad, padding)
    elif conv.groups != 1:
        tiles = _weight_grad_tiles(conv, x, grad, padding)
    else:
        tiles = _strided_window_tiles(conv, x, grad, padding)
    for start, tile in tiles:  # tile: [c, Cout, ...] per-sample gradient entries, any order after Cout
        torch.sum(tile.abs_(), dim=tuple(range(2, tile.dim())), out=out[start : start + tile.shape[0]])
    return out.div_(fan_in)


def per_sample_weight_grads(conv: nn.Conv2d, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """``[B, Cout, Cin/groups * kh * kw]``: every sample's full weight gradient (for weights used twice)."""
    x, padding = _explicit_padding(conv, x)
    if _depthwise_on_cpu(conv, x):
        return _depthwise_weight_grads(conv, x, grad, padding)
    return torch.cat([tile for _, tile in _weight_grad_tiles(conv, x, grad, padding)])


def _depthwise_on_cpu(conv: nn.Conv2d, x: torch.Tensor) -> bool:
    # a one-channel stem (groups == 1) is faster through the grouped weight-gradient path (docs/benchmarks.md)
    return not x.is_cuda and x.shape[1] == conv.groups > 1


def _depthwise_weight_grads(
    conv: nn.Conv2d, x: torch.Tensor, grad: torch.Tensor, padding: tuple[int, int]
) -> torch.Tensor:
    """``[B, Cout, kh * kw]`` per-sample gradients of a depthwise conv (one input channel per group).

    Sample n's gradient for filter o is the cross-correlation of its input channel with its output gradient
    ``g[n, o]`` used as a kernel: the conv's stride becomes that kernel's dilation and its dilation the
    stride. With the batch folded into the channels, one grouped forward conv computes them all; the CPU
    conv library runs that many times faster than its weight-gradient kernel on the same groups (a 7x7
    depthwise conv of ConvNeXt: docs/benchmarks.md)."""
    batch, channels, height, width = x.shape
    cout, out_h, out_w = grad.shape[1:]
    kh, kw = conv.kernel_size
    if cout != channels:  # a channel multiplier: filter o reads input channel o // (cout / channels)
        x = x.repeat_interleave(cout // channels, dim=1)
    grads = F.conv2d(
        x.reshape(1, batch * cout, height, width),
        grad.reshape(batch * cout, 1, out_h, out_w),
        stride=conv.dilation,
        padding=padding,
        dilation=conv.stride,
        groups=batch * cout,
    )
    # rows and columns past the last tap exist when the strided output left input rows unread
    return grads[0, :, :kh, :kw].reshape(batch, cout, kh * kw)


def _samples_per_tile(x: torch.Tensor, bytes_per_sample: int, budget_scale: int = 1) -> int:
    budget = (_GPU_TILE_BYTES if x.is_cuda else _CPU_TILE_BYTES) * budget_scale
    return max(1, min(x.shape[0], budget // max(1, bytes_per_sample)))


def _weight_grad_tiles(
    conv: nn.Conv2d, x: torch.Tensor, grad: torch.Tensor, padding: tuple[int, int]
) -> Iterator[tuple[int, torch.Tensor]]:
    """Yields ``(first_sample, [c, Cout, K])`` full per-sample weight gradients (any conv, differentiable).

    ``K = Cin/groups * kh * kw`` in the weight's own order, so reused weights can be summed over uses."""
    batch, cin = x.shape[:2]
    cout, groups = grad.shape[1], conv.groups
    kh, kw = conv.kernel_size
    fan_in = cin // groups * kh * kw
    positions = grad.shape[2] * grad.shape[3]
    step = _samples_per_tile(x, (cin * kh * kw * positions + cout * fan_in) * x.element_size())
    for start in range(0, batch, step):
        c = min(step, batch - start)
        cols = F.unfold(x[start : start + c], (kh, kw), dilation=conv.dilation, padding=padding, stride=conv.stride)
        cols = cols.view(c * groups, fan_in, positions)
        g = grad[start : start + c].reshape(c * groups, cout // groups, positions)
        yield start, torch.bmm(g, cols.transpose(1, 2)).view(c, cout, fan_in)


def _batch_as_groups_tiles(
    conv: nn.Conv2d, x: torch.Tensor, grad: torch.Tensor, padding: tuple[int, int]
) -> Iterator[tuple[int, torch.Tensor]]:
    """Per-sample gradients ``[c, Cout, K]`` from the conv backend's weight-gradient kernel.

    A batch of c samples seen as one sample with ``c * groups`` groups has exactly the per-sample weight
    gradients as its (grouped) weight gradient; the input and output gradient are free reshapes."""
    batch, cin, height, width = x.shape
    cout, out_h, out_w = grad.shape[1:]
    groups = conv.groups
    kh, kw = conv.kernel_size
    fan_in = cin // groups * kh * kw
    # the conv kernel reduces over positions internally, so its output (not the input) bounds the tile;
    # larger tiles amortize its per-call set-up
    step = _samples_per_tile(x, cout * fan_in * x.element_size(), budget_scale=_GROUPED_BUDGET_SCALE)
    for start in range(0, batch, step):
        c = min(step, batch - start)
        shape = (c * cout, cin // groups, kh, kw)
        (_, weight_grad, _) = torch.ops.aten.convolution_backward(
            grad[start : start + c].reshape(1, c * cout, out_h, out_w),
            x[start : start + c].reshape(1, c * cin, height, width),
            grad.new_empty(shape),
            None,
            list(conv.stride),
            list(padding),
            list(conv.dilation),
            False,
            [0, 0],
            c * groups,
            [False, True, False],
        )
        yield start, weight_grad.view(c, cout, fan_in)


def _channels_last_padded(x: torch.Tensor, padding: tuple[int, int]) -> torch.Tensor:
    """``[B, H + 2ph, W + 2pw, C]`` zero-padded copy: every kernel window becomes a plain strided view."""
    batch, channels, height, width = x.shape
    ph, pw = padding
    padded = x.new_zeros(batch, height + 2 * ph, width + 2 * pw, channels)
    padded[:, ph : ph + height, pw : pw + width] = x.permute(0, 2, 3, 1)
    return padded


def _strided_window_tiles(
    conv: nn.Conv2d, x: torch.Tensor, grad: torch.Tensor, padding: tuple[int, int]
) -> Iterator[tuple[int, torch.Tensor]]:
    """Per-sample gradients ``[c, Cout, kh*kw*Cin]`` (entries permuted, fine for |.| sums), groups == 1.

    The input windows are gathered from a channels-last copy, where each is ``Cin`` contiguous values: a
    fast copy, unlike ``unfold``'s element-wise gather."""
    batch, cin = x.shape[:2]
    cout, out_h, out_w = grad.shape[1:]
    kh, kw = conv.kernel_size
    padded = _channels_last_padded(x, padding)
    sb, sh, sw, sc = padded.stride()
    windows = padded.as_strided(
        (batch, out_h, out_w, kh, kw, cin),
        (sb, conv.stride[0] * sh, conv.stride[1] * sw, conv.dilation[0] * sh, conv.dilation[1] * sw, sc),
    )
    positions, fan_in = out_h * out_w, kh * kw * cin
    grad = grad.reshape(batch, cout, positions)
    step = _samples_per_tile(x, (positions * fan_in + cout * fan_in) * x.element_size())
    for start in range(0, batch, step):
        cols = windows[start : start + step].reshape(-1, positions, fan_in)
        yield start, torch.bmm(grad[start : start + step], cols)


def _explicit_padding(conv: nn.Conv2d, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    """The conv's padding as unfold needs it: numeric, or applied to ``x`` (string or non-zero modes)."""
    if conv.padding_mode == "zeros" and not isinstance(conv.padding, str):
        return x, tuple(conv.padding)
    mode = "constant" if conv.padding_mode == "zeros" else conv.padding_mode
    return F.pad(x, conv._reversed_padding_repeated_twice, mode=mode), (0, 0)
