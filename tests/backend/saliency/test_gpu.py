"""The engine on CUDA: same definition, same tolerances (TF32 off, since it changes float32 results)."""

import pytest
import torch
import torchvision

from backend.saliency import SaliencyStats, filter_saliency, input_saliency, prune_filters, reference_filter_saliency

from .models import ConvBnNet, VariantsNet, randomize_batchnorm

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def _no_tf32():
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.mark.parametrize("factory,shape,classes", [(VariantsNet, (3, 17, 15), 5), (ConvBnNet, (1, 12, 12), 3)])
def test_float64_on_cuda_matches_cpu_reference(factory, shape, classes):
    model = randomize_batchnorm(factory()).double()
    images, labels = torch.randn(6, *shape, dtype=torch.float64), torch.randint(0, classes, (6,))
    expected = reference_filter_saliency(model, images, labels)
    got = filter_saliency(model.cuda(), images.cuda(), labels.cuda())
    assert got.is_cuda
    torch.testing.assert_close(got.cpu(), expected, rtol=1e-8, atol=1e-12 * float(expected.abs().max()))


@pytest.mark.parametrize("name", ["resnet50", "densenet121", "mobilenet_v3_small"])
def test_float32_on_cuda_per_sample_norm(name):
    model = randomize_batchnorm(torchvision.models.get_model(name, weights=None, num_classes=10)).cuda()
    images, labels = torch.randn(8, 3, 96, 96, device="cuda"), torch.randint(0, 10, (8,), device="cuda")
    got = filter_saliency(model, images, labels).double()
    expected = reference_filter_saliency(model.double(), images.double(), labels)
    assert ((got - expected).norm(dim=1) / expected.norm(dim=1)).max().item() <= 1e-4


def test_input_saliency_and_pruning_on_cuda():
    model = randomize_batchnorm(ConvBnNet()).cuda().eval()
    images, labels = torch.randn(8, 1, 12, 12, device="cuda"), torch.randint(0, 3, (8,), device="cuda")
    stats = SaliencyStats().update(filter_saliency(model, images, labels))
    heat = input_saliency(model, images[0], labels[0], stats, top_k=3)
    assert heat.is_cuda and heat.shape == (12, 12) and heat.max() > 0
    with torch.no_grad(), prune_filters(model, [0, 1, 2, 3, 4, 5]):
        out = model(images)
    assert torch.allclose(out, out[:1].expand_as(out))  # all of conv1 off: the input no longer matters
