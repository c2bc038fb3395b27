"""The compiled per-sample |dL/dW| kernel against the torch path it replaces, and its clean fallback."""

import shutil

import pytest
import torch
from torch import nn
import torch.nn.functional as F

from backend.saliency import filter_saliency, kernels, reference_filter_saliency
from backend.saliency.profile import per_sample_abs_mean

from .models import randomize_batchnorm
from .test_profile import assert_float64_match

# (Cin, Cout, input H x W, conv kwargs): channels per group are multiples of 16, so every SIMD width applies;
# Cout per group of 13, 9 and 5 leaves rows over after the kernel's row blocks, 3x3 taps of 16 channels an odd
# number of k-blocks
CONVS = [
    (32, 32, (6, 6), dict(kernel_size=3, padding=1)),
    (16, 13, (9, 7), dict(kernel_size=3, stride=2, padding=1)),
    (32, 18, (11, 11), dict(kernel_size=3, padding=2, dilation=2, groups=2)),
    (64, 36, (10, 9), dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 2), dilation=(1, 3), groups=4)),
    (48, 20, (5, 5), dict(kernel_size=1, stride=2)),
    (16, 8, (4, 4), dict(kernel_size=5, padding="same")),
    (16, 8, (7, 7), dict(kernel_size=3, padding=1, padding_mode="reflect")),
]


def torch_path(monkeypatch) -> None:
    monkeypatch.setattr("backend.saliency.profile.abs_grad_sum", lambda *args: None)


needs_kernel = pytest.mark.skipif(kernels._library() is None, reason="no C compiler: the torch path is used")


def test_kernel_is_built_where_a_compiler_exists():
    if shutil.which("gcc") is None and shutil.which("cc") is None:
        pytest.skip("no C compiler here")
    assert kernels._library() is not None
    assert kernels.kernel_status().startswith("compiled C kernel")


@needs_kernel
@pytest.mark.parametrize("cin,cout,size,kwargs", CONVS)
@pytest.mark.parametrize("dtype,tolerance", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_kernel_matches_torch_path(monkeypatch, cin, cout, size, kwargs, dtype, tolerance):
    torch.manual_seed(0)
    conv = nn.Conv2d(cin, cout, bias=False, **kwargs).to(dtype)
    x = torch.randn(5, cin, *size, dtype=dtype)
    grad = torch.randn_like(conv(x))
    fused = per_sample_abs_mean(conv, x, grad)
    torch_path(monkeypatch)
    expected = per_sample_abs_mean(conv.double(), x.double(), grad.double())
    assert fused.dtype == dtype and fused.shape == (5, cout)
    assert ((fused.double() - expected).abs() / expected).max().item() <= tolerance


@needs_kernel
def test_kernel_result_does_not_depend_on_threads():
    conv = nn.Conv2d(32, 24, 3, padding=1, bias=False)
    x, grad = torch.randn(7, 32, 5, 5), torch.randn(7, 24, 5, 5)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = per_sample_abs_mean(conv, x, grad)
        torch.set_num_threads(3)
        three = per_sample_abs_mean(conv, x, grad)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, three)
    assert per_sample_abs_mean(conv, x[:0], grad[:0]).shape == (0, 24)


def test_kernel_declines_what_it_does_not_cover():
    x, grad = torch.randn(2, 12, 5, 5), torch.randn(2, 12, 5, 5)
    args = ((3, 3), (1, 1), (1, 1), (1, 1))
    assert kernels.abs_grad_sum(x, grad, *args, 12) is None  # depthwise: one channel per group
    assert kernels.abs_grad_sum(x.half(), grad.half(), *args, 1) is None
    assert kernels.abs_grad_sum(x[:, :3], grad, *args, 1) is None  # 3 input channels


class WideNet(nn.Module):
    """Convs the kernel covers (channels per group multiples of 16) among ones it does not."""

    def __init__(self, num_classes: int = 4):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.wide = nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=True)
        self.bn = nn.BatchNorm2d(32)
        self.grouped = nn.Conv2d(32, 26, 3, padding=2, dilation=2, groups=2, bias=False)
        self.head = nn.Linear(26, num_classes)

    def forward(self, x):
        x = F.relu(self.stem(x))
        x = F.relu(self.bn(self.wide(x)))
        return self.head(F.relu(self.grouped(x)).mean(dim=(2, 3)))


@pytest.mark.parametrize("kernel", [True, False], ids=["kernel", "torch-path"])
def test_filter_saliency_matches_reference_float64_with_and_without_kernel(monkeypatch, kernel):
    if kernel and kernels._library() is None:
        pytest.skip("no C compiler: the torch path is used")
    used = []  # per conv call: did the kernel compute it?

    def kernel_or_torch_path(*args):
        result = kernels.abs_grad_sum(*args) if kernel else None
        used.append(result is not None)
        return result

    monkeypatch.setattr("backend.saliency.profile.abs_grad_sum", kernel_or_torch_path)
    model = randomize_batchnorm(WideNet()).double()
    images, labels = torch.randn(5, 3, 9, 9, dtype=torch.float64), torch.randint(0, 4, (5,))
    assert_float64_match(filter_saliency(model, images, labels, batch_size=3), reference_filter_saliency(model, images, labels))
    # two micro-batches x three convs; the kernel takes the two with 16 channels per group
    assert len(used) == 6 and used.count(True) == (4 if kernel else 0)


def test_failed_build_falls_back_to_torch_path(monkeypatch, tmp_path):
    monkeypatch.setenv("PSS_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    assert kernels._library.__wrapped__() is None
    assert not list((tmp_path / "kernels").glob("*.so"))


def test_fresh_build_into_empty_cache(monkeypatch, tmp_path):
    if shutil.which("gcc") is None and shutil.which("cc") is None:
        pytest.skip("no C compiler here")
    monkeypatch.setenv("PSS_CACHE_DIR", str(tmp_path))
    library = kernels._library.__wrapped__()
    assert library is not None and library.pss_lanes_f32() >= 4
    built = list((tmp_path / "kernels").iterdir())
    assert len(built) == 1 and built[0].name.startswith("abs_grad-")  # no scratch files left behind


@needs_kernel
def test_compiler_without_openmp_still_builds_the_kernel(monkeypatch, tmp_path):
    compiler = tmp_path / "cc-without-openmp"
    compiler.write_text('#!/bin/sh\nfor a in "$@"; do [ "$a" = -fopenmp ] && { echo "no -fopenmp" >&2; exit 1; }; done\n'
                        f'exec {shutil.which("gcc") or shutil.which("cc")} "$@"\n')
    compiler.chmod(0o755)
    conv = nn.Conv2d(32, 24, 3, padding=1, bias=False)
    x, grad = torch.randn(7, 32, 5, 5), torch.randn(7, 24, 5, 5)
    with_openmp = per_sample_abs_mean(conv, x, grad)
    monkeypatch.setenv("PSS_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CC", str(compiler))
    library = kernels._library.__wrapped__()
    assert library is not None
    monkeypatch.setattr(kernels, "_library", lambda: library)
    assert torch.equal(per_sample_abs_mean(conv, x, grad), with_openmp)  # one thread, the same numbers


@needs_kernel
def test_kernel_reads_channels_last_tensors_in_place(monkeypatch):
    conv = nn.Conv2d(32, 16, 3, stride=2, padding=1, bias=False).double()
    x = torch.randn(3, 32, 9, 8, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    grad = torch.randn_like(conv(x)).contiguous(memory_format=torch.channels_last)
    fused = per_sample_abs_mean(conv, x, grad)
    torch_path(monkeypatch)
    expected = per_sample_abs_mean(conv, x.contiguous(), grad.contiguous())
    assert ((fused - expected).abs() / expected).max().item() <= 1e-12
