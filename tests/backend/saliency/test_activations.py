"""profile_batch's channel maxima: taken in the profile's own forward pass, equal to a plain forward's."""

import torch

from backend.saliency import FilterLayout, profile_batch
from backend.saliency.activations import owner_module

from .models import ConvBnNet, VariantsNet, randomize_batchnorm


def plain_maxima(model, layout, images):
    """Each filter's output channel, max over positions, from a no-grad forward with hooks written here."""
    outputs = {}
    handles = [owner_module(model, span.name).register_forward_hook(
        lambda _m, _a, out, name=span.name: outputs.setdefault(name, []).append(out.detach())) for span in layout.spans]
    with torch.no_grad():
        model(images)
    for handle in handles:
        handle.remove()
    return torch.cat([torch.stack([o.flatten(2).amax(2) for o in outputs[s.name]]).amax(0) for s in layout.spans], dim=1)


def test_maxima_equal_a_plain_forward_and_leave_the_profile_unchanged():
    for factory, shape, classes in ((ConvBnNet, (1, 12, 12), 3), (VariantsNet, (3, 17, 15), 5)):
        model = randomize_batchnorm(factory()).double().eval()
        layout = FilterLayout.from_model(model)
        images, labels = torch.randn(5, *shape, dtype=torch.float64), torch.randint(0, classes, (5,))
        plain = profile_batch(model, layout, images, labels, None)
        with_maxima = profile_batch(model, layout, images, labels, None, channel_maxima=True)
        assert plain.maxima is None
        torch.testing.assert_close(with_maxima.raw, plain.raw, rtol=0, atol=0)
        torch.testing.assert_close(with_maxima.maxima, plain_maxima(model, layout, images).float(), rtol=1e-6, atol=1e-6)
        assert all(not m._forward_hooks for m in model.modules())
