"""attnmeta.learners.pretraining (to be renamed pretraining): the pretrain kind's cosine
classifier with imprinted weights (Qi et al., CVPR 2018), the supervised classifier and its
class batches."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from torch import nn

from attnmeta.learners.pretraining import ClassBatch, CosineClassifier, SupervisedClassifier
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


def test_class_batches_slice_and_count_examples():
    batch = ClassBatch(torch.arange(10.0).reshape(5, 2), torch.tensor([0, 1, 2, 1, 0]))
    part = batch.slice(1, 3)
    assert batch.num_examples == 5 and part.num_examples == 2 and len(part) == 2
    assert part.x.tolist() == [[2.0, 3.0], [4.0, 5.0]] and part.y.tolist() == [1, 2]


def test_a_training_step_is_cross_entropy_of_the_classifier_over_the_encoder():
    torch.manual_seed(0)
    encoder = nn.Linear(4, 3)
    learner = SupervisedClassifier(encoder, 3, 5, classifier="cosine", scale=4.0)
    batch = ClassBatch(torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 4, 0]))
    step = learner.training_step(batch)
    logits = 4.0 * F.normalize(encoder(batch.x), dim=-1) @ F.normalize(
        learner.classifier.weight, dim=-1).T
    torch.testing.assert_close(step.loss, F.cross_entropy(logits, batch.y))
    expected_accuracy = (logits.argmax(-1) == batch.y).float().mean().item()
    assert step.metrics["accuracy"] == pytest.approx(expected_accuracy)
    assert isinstance(SupervisedClassifier(encoder, 3, 5).classifier, nn.Linear)


def test_few_shot_prediction_is_prototypes_over_the_encoder():
    torch.manual_seed(1)
    learner = SupervisedClassifier(nn.Identity(), 3, 4, distance="sqeuclidean")
    support_x, support_y = torch.randn(6, 3), torch.tensor([0, 0, 1, 1, 2, 2])
    query_x = torch.randn(2, 3)
    means = torch.stack([support_x[support_y == c].mean(0) for c in range(3)])
    expected = -((query_x[:, None] - means[None]) ** 2).sum(-1)
    torch.testing.assert_close(learner.predict(support_x, support_y, query_x), expected)


@pytest.mark.parametrize("kwargs,message", [({"classifier": "svm"}, r"classifier='svm'"),
                                            ({"num_classes": 1}, r"num_classes=1: expected at")])
def test_a_bad_classifier_or_class_count_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SupervisedClassifier(nn.Identity(), 3, **{"num_classes": 4, **kwargs})
