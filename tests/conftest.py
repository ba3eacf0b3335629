import sys
from pathlib import Path

import pytest
import torch

# Lets test modules import the shared fixtures in tests/ (shapes.py, tiny_sam.py).
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """The nets under test are tiny: one thread is fastest, and far faster on a busy
    2-core machine, where extra threads only add contention."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
