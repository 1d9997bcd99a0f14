"""attnmeta.tasks.registry: the data sets ``data.dataset`` names."""

from __future__ import annotations

import pytest

from attnmeta.errors import ConfigError
from attnmeta.tasks import DATASETS, DatasetEntry
from attnmeta.tasks.registry import dataset_named


def test_an_unknown_data_set_is_a_config_error_listing_the_registered_ones():
    assert {"banking77", "clinc150"} <= set(DATASETS)
    assert dataset_named("banking77") is DATASETS["banking77"]
    with pytest.raises(ConfigError, match=r"'data.dataset' is 'nonesuch': expected one of "
                                          r".*'banking77'"):
        dataset_named("nonesuch")


def test_an_entry_reads_images_or_sentences_not_both():
    with pytest.raises(ValueError, match="either load"):
        DatasetEntry()
