"""The pretrain kind's cosine classifier: imprinted weights (Qi et al., CVPR 2018)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from attnmeta.learners.classifier import CosineClassifier
from attnmeta.learners.protonet import prototype_logits, prototypes


def test_imprinted_weights_are_the_class_means_of_unit_features():
    torch.manual_seed(0)
    features, labels = torch.randn(11, 5), torch.tensor([0, 1, 2, 0, 1, 2, 0, 2, 2, 1, 0])
    classifier = CosineClassifier(5, 3, scale=7.0)
    classifier.imprint(features, labels)
    for c in range(3):  # naive: the mean of the class's rows, each divided by its norm
        rows = [features[i] / features[i].norm() for i in range(11) if labels[i] == c]
        torch.testing.assert_close(classifier.weight[c], torch.stack(rows).mean(0))
    # so the imprinted classifier is cosine prototypes of the same examples, scaled
    queries = torch.randn(4, 5)
    expected = 7.0 * prototype_logits(queries[None], prototypes(F.normalize(features, dim=-1)[None],
                                                                labels[None], 3), "cosine")[0]
    torch.testing.assert_close(classifier(queries), expected)


def test_imprinting_needs_every_class():
    classifier = CosineClassifier(4, 3)
    with pytest.raises(ValueError, match=r"1 without examples.*every one of the 3 classes"):
        classifier.imprint(torch.randn(4, 4), torch.tensor([0, 0, 1, 1]))
