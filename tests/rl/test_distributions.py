"""attnmeta.rl.distributions: log-probabilities against torch.distributions, sampling
statistics and the features a history policy reads."""

from __future__ import annotations

import torch

from attnmeta.rl.distributions import Categorical, DiagonalGaussian


def test_gaussian_log_prob_equals_torch_distributions():
    torch.manual_seed(0)
    mean, log_std = torch.randn(4, 2, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64)
    actions = torch.randn(4, 2, dtype=torch.float64)
    expected = torch.distributions.Normal(mean, log_std.exp()).log_prob(actions).sum(-1)
    got = DiagonalGaussian(2).log_prob(torch.cat([mean, log_std], -1), actions)
    torch.testing.assert_close(got, expected)


def test_gaussian_samples_have_the_mean_and_std_asked_for():
    outputs = torch.tensor([[1.0, -2.0, 0.0, -1.0]], dtype=torch.float64).expand(20000, 4)
    samples = DiagonalGaussian(2).sample(outputs, torch.Generator().manual_seed(0))
    torch.testing.assert_close(samples.mean(0), torch.tensor([1.0, -2.0], dtype=torch.float64),
                               atol=0.03, rtol=0)
    torch.testing.assert_close(samples.std(0), torch.tensor([1.0, torch.e ** -1],
                                                            dtype=torch.float64),
                               atol=0.02, rtol=0)
    assert DiagonalGaussian(2).action_features(torch.tensor([[1.5, -0.3]])).tolist() == \
        [[1.0, -0.30000001192092896]]  # clipped to [-1, 1], float32


def test_categorical_log_prob_equals_torch_distributions_and_features_are_one_hot():
    torch.manual_seed(1)
    logits = torch.randn(5, 4, dtype=torch.float64)
    actions = torch.tensor([[0.0], [3.0], [1.0], [1.0], [2.0]], dtype=torch.float64)
    expected = torch.distributions.Categorical(logits=logits).log_prob(actions[:, 0].long())
    distribution = Categorical(4)
    torch.testing.assert_close(distribution.log_prob(logits, actions), expected)
    assert distribution.action_features(actions[:2]).tolist() == [[1, 0, 0, 0], [0, 0, 0, 1]]
    assert (distribution.output_dim, distribution.action_columns, distribution.feature_dim) == \
        (4, 1, 4)


def test_categorical_samples_follow_the_softmax():
    logits = torch.log(torch.tensor([0.1, 0.6, 0.3], dtype=torch.float64)).expand(2, 10000, 3)
    samples = Categorical(3).sample(logits, torch.Generator().manual_seed(0))
    assert samples.shape == (2, 10000, 1) and samples.dtype == torch.float64
    frequencies = torch.bincount(samples.flatten().long(), minlength=3) / 20000
    torch.testing.assert_close(frequencies, torch.tensor([0.1, 0.6, 0.3]), atol=0.015, rtol=0)
