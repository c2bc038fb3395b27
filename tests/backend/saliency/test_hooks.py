"""The engine's one hook helper: every hook it installs is gone afterwards, also when the block raises."""

from __future__ import annotations

import pytest
import torch

from backend.saliency import FilterLayout, HookSet, profile_batch, prune_filters
from tests.precompute.tiny import tiny_model


def _hook_count(model) -> int:
    return sum(len(m._forward_hooks) for m in model.modules())


def test_hookset_removes_its_hooks_when_the_block_raises():
    model = tiny_model()
    seen = []
    with pytest.raises(RuntimeError, match="boom"):
        with HookSet([(m, lambda *_: seen.append(1)) for m in model.modules()]):
            model(torch.randn(1, 1, 8, 8))
            assert _hook_count(model) == len(list(model.modules()))
            raise RuntimeError("boom")
    assert seen and _hook_count(model) == 0


def test_per_row_keep_with_the_wrong_row_count_fails_and_leaves_no_hook():
    model = tiny_model()
    layout = FilterLayout.from_model(model)
    keep = torch.ones(3, layout.num_filters, dtype=torch.bool)
    keep[:, 0] = False
    with pytest.raises(ValueError, match="3 rows"), torch.no_grad(), prune_filters(model, layout=layout, keep=keep):
        model(torch.randn(2, 1, 8, 8))
    assert _hook_count(model) == 0


def test_profile_batch_features_are_the_heads_input_and_hooks_are_gone():
    torch.manual_seed(0)
    model = tiny_model()
    layout = FilterLayout.from_model(model)
    x, y = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 0])
    kept = []
    head = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    handle = head.register_forward_hook(lambda _m, args, _o: kept.append(args[0].detach()))
    with torch.no_grad():
        logits = model(x)
    handle.remove()
    out = profile_batch(model, layout, x, y, None)
    torch.testing.assert_close(out.features, torch.flatten(kept[0], 1))
    torch.testing.assert_close(out.logits, logits)
    assert out.raw.shape == (4, layout.num_filters) and _hook_count(model) == 0
