"""attnmeta: attention and meta-learning in PyTorch."""

__version__ = "0.1.0"
