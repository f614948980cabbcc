import pytest
import torch


@pytest.fixture
def one_torch_thread():
    """torch on one thread for the test (exports and conversions), as it was before afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
