"""Puts ``tests/`` on ``sys.path`` (pytest does so for a conftest), so test files can
import the shared helpers of ``support.py``."""

import pytest
import torch


@pytest.fixture(autouse=True)
def restore_torch_threads():
    """A run's ``train.threads`` sets torch's process-wide thread count: put it back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
