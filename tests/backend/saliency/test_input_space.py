"""input_saliency against eq. 3 computed directly with double backward through the weight gradients."""

import pytest
import torch
import torch.nn.functional as F

from backend.saliency import FilterLayout, SaliencyStats, filter_saliency, input_saliency

from .models import ConvBnNet, VariantsNet, randomize_batchnorm


def eq3_reference(model, image, label, stats, top_k, boost, chosen=None, layout=None):
    layout = layout or FilterLayout.from_model(model)
    params = dict(model.named_parameters())
    weights = [params[name] for name, _, _ in layout.layers]
    x = image[None].clone().requires_grad_(True)
    loss = F.cross_entropy(model(x), torch.tensor([label]))
    grads = torch.autograd.grad(loss, weights, create_graph=True)
    profile = stats.standardize(torch.cat([g.abs().flatten(1).mean(1) for g in grads]))
    boosted = profile.detach().clone()
    boosted[boosted.topk(top_k).indices if chosen is None else torch.tensor(chosen)] *= boost
    distance = 1 - F.cosine_similarity(profile, boosted, dim=0)
    (grad,) = torch.autograd.grad(distance, x)
    return grad[0].abs().amax(dim=0)


@pytest.mark.parametrize("factory,shape,classes", [(ConvBnNet, (1, 12, 12), 3), (VariantsNet, (3, 17, 15), 5)])
def test_matches_double_backward_reference(factory, shape, classes):
    model = randomize_batchnorm(factory()).double().eval()
    images = torch.randn(8, *shape, dtype=torch.float64)
    labels = torch.randint(0, classes, (8,))
    stats = SaliencyStats().update(filter_saliency(model, images, labels))
    heat = input_saliency(model, images[0], int(labels[0]), stats, top_k=3, boost=100.0)
    expected = eq3_reference(model, images[0], int(labels[0]), stats, 3, 100.0)
    assert heat.shape == shape[1:]
    assert (heat >= 0).all() and heat.max() > 0
    torch.testing.assert_close(heat, expected, rtol=1e-8, atol=1e-12 * float(expected.max()))
    assert all(p.grad is None for p in model.parameters())


def test_top_k_changes_the_map_and_arguments_are_checked():
    model = randomize_batchnorm(ConvBnNet()).double().eval()
    images, labels = torch.randn(6, 1, 12, 12, dtype=torch.float64), torch.randint(0, 3, (6,))
    stats = SaliencyStats().update(filter_saliency(model, images, labels))
    a = input_saliency(model, images[1], labels[1], stats, top_k=1)
    b = input_saliency(model, images[1], labels[1], stats, top_k=10)
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="top_k"):
        input_saliency(model, images[1], labels[1], stats, top_k=0)
    with pytest.raises(ValueError, match="boost"):
        input_saliency(model, images[1], labels[1], stats, boost=-1.0)
    with pytest.raises(ValueError, match="one image"):
        input_saliency(model, images[:2], labels[1], stats)


def test_explicit_filters_are_boosted_exactly():
    model = randomize_batchnorm(VariantsNet()).double().eval()
    images, labels = torch.randn(6, 3, 17, 15, dtype=torch.float64), torch.randint(0, 5, (6,))
    stats = SaliencyStats().update(filter_saliency(model, images, labels))
    num_filters = FilterLayout.from_model(model).num_filters
    chosen = [num_filters - 1, 2]
    heat = input_saliency(model, images[0], int(labels[0]), stats, boost=100.0, filters=chosen)
    expected = eq3_reference(model, images[0], int(labels[0]), stats, 1, 100.0, chosen)
    torch.testing.assert_close(heat, expected, rtol=1e-8, atol=1e-12 * float(expected.max()))
    assert not torch.allclose(heat, input_saliency(model, images[0], int(labels[0]), stats, top_k=2))
    for bad in ([], [num_filters], [-1]):
        with pytest.raises(ValueError, match="filters must be"):
            input_saliency(model, images[0], int(labels[0]), stats, filters=bad)
