"""prune_filters: exact zeros, equivalent to zeroed weights, invisible to other threads and tasks."""

import asyncio
import copy
import threading

import pytest
import torch
import torchvision
from torch import nn

from backend.saliency import FilterLayout, prune_filters

from .models import ConvBnNet, randomize_batchnorm


def zeroed_copy(model: nn.Module, filter_ids: list[int]) -> nn.Module:
    """The definition: those filters' weights, and the directly following BN's weight and bias, set to 0."""
    layout = FilterLayout.from_model(model)
    clone = copy.deepcopy(model)
    params = dict(clone.named_parameters())
    modules = dict(clone.named_modules())
    for filter_id in filter_ids:
        name, channel = layout.locate(filter_id)
        params[name].data[channel] = 0
        conv_name = name.removesuffix(".weight")
        bn_name = conv_name.replace("conv", "bn") if "conv" in conv_name else conv_name[:-1] + "1"
        bn = modules.get(bn_name)
        if isinstance(bn, nn.BatchNorm2d):
            bn.weight.data[channel] = 0
            bn.bias.data[channel] = 0
    return clone


def test_matches_zeroed_weights_and_batchnorm_on_resnet18():
    model = randomize_batchnorm(torchvision.models.resnet18(num_classes=10)).eval()
    layout = FilterLayout.from_model(model)
    # filters in conv1, a block conv and a downsample conv (downsample.0 -> downsample.1 is its BN)
    downsample = next(start for name, start, _ in layout.layers if "downsample" in name)
    filter_ids = [0, 5, layout.filter_range(3, 4)[0] + 2, downsample + 1]
    images = torch.randn(2, 3, 64, 64)
    with prune_filters(model, filter_ids):
        pruned = model(images)
    expected = zeroed_copy(model, filter_ids)(images)
    assert torch.allclose(pruned, expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(pruned, model(images), rtol=1e-3, atol=1e-3)


def test_feature_maps_are_exactly_zero_after_conv_and_batchnorm():
    model = randomize_batchnorm(ConvBnNet()).eval()
    seen = {}  # conv2's input is relu(bn1(conv1(x))): what the rest of the network sees of those filters
    model.conv2.register_forward_pre_hook(lambda m, args: seen.update(features=args[0].detach().clone()))
    with prune_filters(model, [1, 4]):
        model(torch.randn(3, 1, 12, 12))
    assert (seen["features"][:, [1, 4]] == 0).all()
    assert (seen["features"][:, [0, 2, 3, 5]] != 0).any()
    model(torch.randn(3, 1, 12, 12))
    assert (seen["features"][:, [1, 4]] != 0).any()  # and only inside the context


def test_parameters_untouched_and_hooks_removed():
    model = randomize_batchnorm(ConvBnNet()).eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with prune_filters(model, [0, 7, 9]):
        model(torch.randn(2, 1, 12, 12))
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert all(not m._forward_hooks for m in model.modules())


def test_concurrent_threads_see_only_their_own_pruning():
    torch.set_num_threads(1)  # more interleaving between Python threads
    try:
        model = randomize_batchnorm(ConvBnNet()).eval()
        images = torch.randn(4, 1, 12, 12)
        with torch.no_grad():
            plain = model(images)
            with prune_filters(model, [0, 1]):
                pruned_a = model(images)
            with prune_filters(model, [8, 9, 10]):
                pruned_b = model(images)
        assert not torch.equal(plain, pruned_a) and not torch.equal(pruned_a, pruned_b)
        errors, barrier = [], threading.Barrier(3)

        def worker(filter_ids, expected):
            barrier.wait()
            for _ in range(300):
                with torch.no_grad():
                    if filter_ids is None:
                        out = model(images)
                    else:
                        with prune_filters(model, filter_ids):
                            out = model(images)
                if not torch.equal(out, expected):
                    errors.append(filter_ids)

        threads = [
            threading.Thread(target=worker, args=args)
            for args in [(None, plain), ([0, 1], pruned_a), ([8, 9, 10], pruned_b)]
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
    finally:
        torch.set_num_threads(2)


def test_asyncio_tasks_are_isolated():
    model = randomize_batchnorm(ConvBnNet()).eval()
    images = torch.randn(2, 1, 12, 12)
    with torch.no_grad():
        plain = model(images)
        with prune_filters(model, [3]):
            pruned = model(images)

    async def pruning_task():
        with prune_filters(model, [3]):
            for _ in range(20):
                await asyncio.sleep(0)
                with torch.no_grad():
                    assert torch.equal(model(images), pruned)

    async def plain_task():
        for _ in range(20):
            await asyncio.sleep(0)
            with torch.no_grad():
                assert torch.equal(model(images), plain)

    async def main():
        await asyncio.gather(pruning_task(), plain_task())

    asyncio.run(main())


def test_unknown_filter_id_is_refused():
    with pytest.raises(IndexError):
        prune_filters(ConvBnNet(), [10_000])
