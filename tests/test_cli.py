"""The command line translates what a user can fix, once, into one ``Error:`` line; a bug
(any other exception, a plain ValueError included) surfaces with its traceback."""

from __future__ import annotations

import errno

import pytest
from click.testing import CliRunner

from attnmeta import errors
from attnmeta.cli import main


def download_raising(monkeypatch, error: BaseException):
    """``attnmeta download omniglot`` with the library's download raising ``error``."""
    def download_dataset(name: str, data_root: str | None) -> object:
        raise error

    monkeypatch.setattr("attnmeta.runs.build.download_dataset", download_dataset)
    return CliRunner().invoke(main, ["download", "omniglot"])


@pytest.mark.parametrize("bug", [TypeError("a bug"), KeyError("learner"),
                                 ValueError("not a user's error")])
def test_a_bug_surfaces_with_its_traceback(monkeypatch, bug):
    result = download_raising(monkeypatch, bug)
    assert result.exit_code == 1
    assert result.exception is bug  # not a SystemExit from click: the traceback is kept
    assert "Error:" not in result.output


@pytest.mark.parametrize("error", [errors.ConfigError("config key 'x' is 1:\nexpected 2"),
                                   errors.DataError("omniglot is missing"),
                                   errors.MissingDependencyError("pip install 'attnmeta[x]'"),
                                   errors.DivergedError("the loss is nan")])
def test_an_attnmeta_error_is_one_error_line(monkeypatch, error):
    result = download_raising(monkeypatch, error)
    assert result.exit_code == 1
    assert result.output.splitlines() == ["Error: " + " ".join(str(error).split())]


@pytest.mark.parametrize("error, shown", [
    (FileNotFoundError(errno.ENOENT, "No such file or directory", "/data/x"),
     "Error: /data/x: No such file or directory"),
    (PermissionError(errno.EACCES, "Permission denied", "/data"), "Error: /data: Permission denied"),
    (OSError(errno.ENOSPC, "No space left on device", "/data/y"),
     "Error: /data/y: No space left on device")])
def test_an_environmental_os_error_is_one_line_naming_the_file(monkeypatch, error, shown):
    result = download_raising(monkeypatch, error)
    assert result.exit_code == 1 and result.output.splitlines() == [shown]


def test_another_os_error_is_a_bug(monkeypatch):
    bug = OSError(errno.EBADF, "Bad file descriptor")
    result = download_raising(monkeypatch, bug)
    assert result.exception is bug and "Error:" not in result.output
