"""FilterLayout bookkeeping, and the engine's promise to import only torch and numpy."""

import subprocess
import sys

import pytest
import torchvision

from backend.saliency import FilterLayout

from .models import ReuseNet, VariantsNet


def test_layout_follows_named_parameters_and_counts_shared_weights_once():
    layout = FilterLayout.from_model(ReuseNet())
    assert [name for name, _, _ in layout.layers] == ["stem.weight", "shared.weight"]
    assert layout.num_filters == 10


def test_locate_filter_range_and_round_trip():
    model = torchvision.models.resnet18(num_classes=3)
    layout = FilterLayout.from_model(model)
    convs = [(n, m) for n, m in model.named_modules() if m.__class__.__name__ == "Conv2d"]
    assert layout.num_filters == sum(m.out_channels for _, m in convs) == 4800
    assert layout.locate(0) == ("conv1.weight", 0)
    assert layout.locate(64) == ("layer1.0.conv1.weight", 0)
    assert layout.locate(layout.num_filters - 1) == (convs[-1][0] + ".weight", 511)
    start, stop = layout.filter_range(1, 3)
    assert (start, stop) == (64, 192)
    assert FilterLayout.from_dict(layout.to_dict()) == layout
    assert int(layout.layer_ids()[start]) == 1 and layout.filter_name(65) == "layer1.0.conv1[1]"
    with pytest.raises(IndexError):
        layout.locate(layout.num_filters)
    with pytest.raises(ValueError, match="selects no layer"):
        layout.filter_range(5, 5)


def test_layout_of_model_without_convs_is_an_error():
    import torch

    with pytest.raises(ValueError, match="no 2-D convolution weights"):
        FilterLayout.from_model(torch.nn.Linear(3, 2))
    assert FilterLayout.from_model(VariantsNet()).num_filters == 8 + 12 + 12 + 6 + 6 + 7


def test_engine_imports_no_web_or_index_libraries():
    code = (
        "import sys, backend.saliency, backend.render\n"
        "bad = [m for m in ('fastapi', 'dash', 'faiss', 'starlette', 'plotly', 'flask') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
