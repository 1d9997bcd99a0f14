"""Tiny CLINC150 / BANKING77 copies in the upstream file formats, and the download check
both loaders share (importable as ``intent_files``: pytest puts ``tests/tasks`` on the
path for the test files beside it)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import ModuleType

import pytest


def write_clinc150(root: Path, domains: int = 2, intents: int = 7, per_intent: int = 6,
                   data: dict | None = None) -> Path:
    """root/clinc150 with `domains` x `intents` intents; utterances name their intent."""
    folder = root / "clinc150"
    folder.mkdir(parents=True)
    domain_map = {f"domain{d}": [f"d{d}_intent{i}" for i in range(intents)]
                  for d in range(domains)}
    if data is None:
        rows = [[f"please do {intent} number {n}", intent]
                for names in domain_map.values() for intent in names for n in range(per_intent)]
        data = {"train": rows[::3], "val": rows[1::3], "test": rows[2::3],
                "oos_train": [["what is love", "oos"]], "oos_val": [["sing to me", "oos"]] * 3,
                "oos_test": [[f"unrelated thing {n}", "oos"] for n in range(5)]}
    (folder / "data_full.json").write_text(json.dumps(data, indent=2))
    (folder / "domains.json").write_text(json.dumps(domain_map))
    return folder


def write_banking77(root: Path, train_csv: str, test_csv: str = "text,category\n",
                    categories: list[str] | None = None) -> Path:
    folder = root / "banking77"
    folder.mkdir(parents=True)
    (folder / "train.csv").write_text(train_csv)
    (folder / "test.csv").write_text(test_csv)
    (folder / "categories.json").write_text(json.dumps(categories or ["card_arrival", "fee"]))
    return folder


def check_download_from_a_local_mirror(module: ModuleType, dataset: str, upstream: Path,
                                       tmp_path: Path, local_server, monkeypatch) -> None:
    """``download_<dataset>`` of ``module`` fetches the files of ``upstream`` (served by
    ``local_server`` in place of the pinned URLs), keeps them when their checksums match,
    and refuses (leaving it untouched) a local file changed by hand."""
    files = getattr(module, f"{dataset.upper()}_FILES")
    for name in files:
        (local_server.folder / name).write_bytes((upstream / name).read_bytes())
    monkeypatch.setattr(module, f"{dataset.upper()}_URLS",
                        {name: local_server.url_of(name) for name in files})
    monkeypatch.setattr(module, f"{dataset.upper()}_SHA256", {
        name: hashlib.sha256((upstream / name).read_bytes()).hexdigest() for name in files})
    download = getattr(module, f"download_{dataset}")
    folder = download(tmp_path / "root")
    assert folder == tmp_path / "root" / dataset
    assert sorted(p.name for p in folder.iterdir()) == sorted(files)
    assert all((folder / n).read_bytes() == (upstream / n).read_bytes() for n in files)
    assert len(local_server.requests) == len(files)
    assert download(tmp_path / "root") == folder  # kept: checksums match, nothing fetched
    assert len(local_server.requests) == len(files)
    # a changed local file is refused and left as it is
    first = folder / files[0]
    first.write_text("edited by hand")
    with pytest.raises(ValueError, match=rf"{first.name} has sha256 [0-9a-f]{{64}}, expected "
                                         r"[0-9a-f]{64}: .*left untouched"):
        download(tmp_path / "root")
    assert first.read_text() == "edited by hand"


def check_pinned_checksums(folder: Path, digests: dict[str, str]) -> None:
    """The pinned upstream SHA-256s are those of the shared copy in ``folder`` (skipped when
    it is not there)."""
    from attnmeta.files import file_digest

    if not folder.is_dir():
        pytest.skip(f"{folder} not found (set ATTNMETA_DATA)")
    for name, digest in digests.items():
        assert file_digest(folder / name, "sha256") == digest, folder / name
