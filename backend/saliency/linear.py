"""Per-sample saliency of Linear weights: each output row is one filter.

Sample n's gradient of a Linear weight is ``sum_t g_nt x_nt^T`` over its tokens t (``G_n^T X_n``). With one
token it is an outer product, and the mean of ``|g_o x_i|`` over i is ``|g_o| * mean|x|``: nothing is formed.
With many (transformers), the gradient is formed in tiles of samples x rows and reduced to ``[B, rows]`` at
once, as the conv path does. On CPU, whole samples per tile: splitting rows into cache-sized blocks made the
matmuls so small that they ran 2-3x slower (vit_b_16's 3072x768 MLP weight, 197 tokens, 2 threads).
"""

from __future__ import annotations

import torch

_CPU_TILE_BYTES = 32 << 20
_GPU_TILE_BYTES = 1 << 28


def linear_abs_mean(x: torch.Tensor, grad: torch.Tensor, *, differentiable: bool = False) -> torch.Tensor:
    """``[B, out]``: mean over each row's inputs of |sample n's weight gradient|, from ``x [B, T, in]`` and
    the output gradient ``grad [B, T, out]``."""
    batch, tokens, fan_in = x.shape
    out_features = grad.shape[2]
    if tokens == 1:
        return grad[:, 0].abs() * x[:, 0].abs().mean(dim=1, keepdim=True)
    budget = (_GPU_TILE_BYTES if x.is_cuda else _CPU_TILE_BYTES) // (fan_in * x.element_size())
    rows = max(1, min(out_features, budget))
    samples = max(1, min(batch, budget // out_features))
    blocks = []
    for start in range(0, batch, samples):
        stop = min(batch, start + samples)
        pieces = [
            _abs_sum(torch.bmm(grad[start:stop, :, first : first + rows].transpose(1, 2), x[start:stop]),
                     differentiable)
            for first in range(0, out_features, rows)
        ]
        blocks.append(torch.cat(pieces, dim=1) if len(pieces) > 1 else pieces[0])
    return (torch.cat(blocks) if len(blocks) > 1 else blocks[0]) / fan_in


def _abs_sum(tile: torch.Tensor, differentiable: bool) -> torch.Tensor:
    """Sum of |.| over the last dim; in place where no graph is kept (``vector_norm(ord=1)`` is slower)."""
    return (tile.abs() if differentiable else tile.abs_()).sum(dim=2)


def linear_weight_grads(x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """``[B, out, in]``: every sample's full weight gradient (for weights used more than once)."""
    return torch.bmm(grad.transpose(1, 2), x)
