"""attnmeta.tasks.data_root: where data sets live (argument, then $ATTNMETA_DATA, then the
default)."""

from __future__ import annotations

import pytest

from attnmeta.tasks.data_root import (DATA_ROOT_ENV_VAR, DEFAULT_DATA_ROOT, data_root_path,
                                      resolve_data_root)


def one_line_error(excinfo: pytest.ExceptionInfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_resolve_data_root_prefers_argument_then_env_then_default(tmp_path, monkeypatch):
    explicit, from_env, home = tmp_path / "explicit", tmp_path / "env", tmp_path / "home"
    default = home / ".cache" / "attnmeta" / "data"
    for folder in (explicit, from_env, default):
        folder.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv(DATA_ROOT_ENV_VAR, str(from_env))
    assert resolve_data_root(explicit) == explicit
    assert resolve_data_root(str(explicit)) == explicit
    assert resolve_data_root() == from_env
    monkeypatch.setenv(DATA_ROOT_ENV_VAR, "")  # empty means unset, not the working directory
    assert resolve_data_root() == default
    monkeypatch.delenv(DATA_ROOT_ENV_VAR)
    assert resolve_data_root(None) == default


def test_resolve_data_root_missing_paths_name_the_path_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv(DATA_ROOT_ENV_VAR, raising=False)
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as excinfo:
        resolve_data_root(missing)
    assert one_line_error(excinfo) == (f"data root {missing} (argument) does not exist: "
                                       f"pass --data-root or set ATTNMETA_DATA, or fetch a "
                                       f"data set with `attnmeta download`")
    monkeypatch.setenv(DATA_ROOT_ENV_VAR, str(missing))
    with pytest.raises(FileNotFoundError, match=r"\(\$ATTNMETA_DATA\) does not exist"):
        resolve_data_root()
    monkeypatch.delenv(DATA_ROOT_ENV_VAR)
    with pytest.raises(FileNotFoundError, match=r"home/\.cache/attnmeta/data \(default\) does not"):
        resolve_data_root()
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file, expected a directory"):
        resolve_data_root(a_file)



def test_data_root_path_chooses_the_same_root_without_requiring_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv(DATA_ROOT_ENV_VAR, str(tmp_path / "env"))
    assert data_root_path("~/mine") == tmp_path / "home" / "mine"  # ~ expanded
    assert data_root_path("") == tmp_path / "env"  # an empty argument is no argument
    monkeypatch.delenv(DATA_ROOT_ENV_VAR)
    assert data_root_path() == tmp_path / "home" / DEFAULT_DATA_ROOT.removeprefix("~/")
    assert not data_root_path().exists()
