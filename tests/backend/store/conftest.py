"""`pss precompute` sets torch's thread count for its process; tests that call it in-process restore it."""

import pytest
import torch


@pytest.fixture
def keep_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
