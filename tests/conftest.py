"""Puts ``tests/`` on ``sys.path`` (pytest does so for a conftest), so test files can
import the shared helpers of ``support.py``."""
