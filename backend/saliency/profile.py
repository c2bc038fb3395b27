"""Exact per-sample parameter saliency: the mean of |dL_n/dW| over each conv filter, batched.

For a conv layer, sample n's weight gradient is ``G_n @ unfold(X_n)^T`` (per group), where ``X_n`` is the
layer's input and ``G_n`` the gradient of sample n's loss w.r.t. the layer's output. A forward hook keeps
``X``; a hook on the output tensor receives ``G`` during a backward pass that computes no weight gradient at
all (we differentiate w.r.t. the input only). Each layer's per-sample gradients are then formed in small
tiles and reduced to ``[B, Cout]`` while the tile is still in cache, so memory stays at one training step's.

In eval mode the samples of a batch do not interact, so the gradient of the summed loss w.r.t. ``X_n``'s
layer output is exactly sample n's own gradient.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from .hooks import HookSet
from .kernels import abs_grad_sum
from .layout import FilterLayout, LayerSpan

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
    with eval_mode(model):
        start, size = 0, batch_size
        while start < total:
            x = images[start : start + size].to(device=device, dtype=dtype)
            y = labels[start : start + size].to(device=device)
            try:
                chunk = _batch_profile(model, layout, x, y)
            except torch.OutOfMemoryError:
                if size == 1:
                    raise
                del x, y
                size //= 2  # split large batches automatically: the rest of the run keeps the smaller size
                _log.warning("out of memory at a micro-batch of %d; continuing with %d", size * 2, size)
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                continue
            result[start : start + chunk.shape[0]] = chunk.to(result.device, out_dtype)
            start += chunk.shape[0]
            if progress is not None:
                progress(start, total)
    return result


def _batch_profile(model: nn.Module, layout: FilterLayout, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Raw saliency of one micro-batch: one forward, one backward that reaches every conv output."""
    with SaliencyRecorder(model, layout, differentiable=False) as recorder:
        loss = F.cross_entropy(logits_of(model(recorder.track_input(x))), y, reduction="sum")
        torch.autograd.grad(loss, recorder.input)
        return recorder.profile(x.shape[0])


class SaliencyRecorder:
    """Hooks a model's convs to turn one backward pass into per-sample filter saliency.

    ``differentiable=True`` keeps the graph so the profile itself can be differentiated (input-space
    saliency); then the backward must run with ``create_graph=True``.
    """

    def __init__(self, model: nn.Module, layout: FilterLayout, *, differentiable: bool):
        self.model = model
        self.layout = layout
        self.differentiable = differentiable
        names = {span.name: span for span in layout.spans}
        params = dict(model.named_parameters())
        missing = [name for name in names if name not in params]
        if missing:
            raise ValueError(f"layout does not match the model: no parameter {missing[0]!r}")
        self._span_of = {id(params[name]): span for name, span in names.items()}
        self._convs = [
            m for m in model.modules() if isinstance(m, nn.Conv2d) and id(m.weight) in self._span_of
        ]
        for conv in self._convs:
            if type(conv).forward is not nn.Conv2d.forward or type(conv)._conv_forward is not nn.Conv2d._conv_forward:
                raise ValueError(
                    f"{type(conv).__name__} overrides Conv2d.forward, so its weight gradient cannot be formed "
                    "from its input and output; only plain nn.Conv2d layers are supported"
                )
        self._uses: dict[int, int] = {}
        self._parts: dict[LayerSpan, torch.Tensor] = {}
        self._reused: dict[LayerSpan, torch.Tensor] = {}
        self._hooks = HookSet((conv, self._on_forward) for conv in self._convs)
        self.input: torch.Tensor | None = None

    def __enter__(self) -> "SaliencyRecorder":
        self._hooks.__enter__()
        self._grad_mode = torch.enable_grad()
        self._grad_mode.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._grad_mode.__exit__(*exc)
        self._hooks.remove()

    def track_input(self, x: torch.Tensor) -> torch.Tensor:
        """A leaf copy of ``x`` that requires grad: the backward target that reaches every conv output."""
        self.input = x.detach().requires_grad_(True)
        return self.input

    def _on_forward(self, conv: nn.Conv2d, args: tuple, output: torch.Tensor) -> None:
        if not output.requires_grad:
            return
        x = args[0]
        key = id(conv.weight)
        self._uses[key] = self._uses.get(key, 0) + 1
        output.register_hook(functools.partial(self._on_output_grad, conv, x, x._version))

    def _on_output_grad(self, conv: nn.Conv2d, x: torch.Tensor, version: int, grad: torch.Tensor) -> None:
        span = self._span_of[id(conv.weight)]
        if x._version != version:
            raise RuntimeError(
                f"the input of {span.name} was modified in place after the conv ran; "
                "its weight gradient can no longer be formed"
            )
        if not self.differentiable:
            grad = grad.detach()
        if self._uses[id(conv.weight)] > 1:  # the weight's gradient sums over uses: reduce only at the end
            full = per_sample_weight_grads(conv, x, grad)
            previous = self._reused.get(span)
            self._reused[span] = full if previous is None else previous + full
            return
        part = per_sample_abs_mean(conv, x, grad, differentiable=self.differentiable)
        previous = self._parts.get(span)
        self._parts[span] = part if previous is None else previous + part

    def profile(self, batch: int) -> torch.Tensor:
        """``[batch, num_filters]`` raw saliency; filters whose output never got a gradient are 0."""
        for span, full in self._reused.items():
            self._parts[span] = full.abs().mean(dim=2)
        self._reused.clear()
        ref = next(iter(self._parts.values()), None)
        kwargs = {"device": ref.device, "dtype": ref.dtype} if ref is not None else {}
        pieces = [
            self._parts.get(span, torch.zeros(batch, span.num_filters, **kwargs)) for span in self.layout.spans
        ]
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
    return torch.cat([tile for _, tile in _weight_grad_tiles(conv, x, grad, padding)])


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


def logits_of(output) -> torch.Tensor:
    """The logits tensor of a model's output (plain tensor, ``.logits``, or first element of a tuple)."""
    if isinstance(output, torch.Tensor):
        return output
    if hasattr(output, "logits"):
        return output.logits
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(f"cannot find logits in a model output of type {type(output).__name__}")


def model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Device and floating dtype of the model's first parameter (where its inputs must go)."""
    for param in model.parameters():
        return param.device, param.dtype if param.is_floating_point() else torch.float32
    raise ValueError("the model has no parameters")


@contextmanager
def eval_mode(model: nn.Module):
    """Eval mode for the duration, then every module's own train/eval flag restored."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with torch.inference_mode(False):
            yield
    finally:
        for module, training in modes:
            module.training = training
