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


@pytest.fixture(autouse=True, scope="session")
def onnx_cache_of_the_session(tmp_path_factory):
    """Exported encoder graphs (attnmeta.fewshot.onnx_engine) go to a folder of this test
    session, not the user's cache."""
    import os

    previous = os.environ.get("ATTNMETA_CACHE")
    os.environ["ATTNMETA_CACHE"] = str(tmp_path_factory.mktemp("attnmeta-cache"))
    yield
    if previous is None:
        os.environ.pop("ATTNMETA_CACHE", None)
    else:
        os.environ["ATTNMETA_CACHE"] = previous
