"""attnmeta.learners.precision: the precision rule and the inference copy of a learner."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from attnmeta.errors import ConfigError
from attnmeta.learners.precision import (PRECISIONS, check_precision, forward_precision,
                                         inference_copy)
from attnmeta.learners.protonet import ProtoNet


class ByGradient(nn.Module):
    adapts_by_gradient = True
    display_name = "MAML"


def conv_protonet():
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten())
    learner = ProtoNet(encoder)
    with torch.no_grad():  # running statistics that folding must carry
        encoder[1].running_mean.uniform_(-1, 1)
        encoder[1].running_var.uniform_(0.5, 2)
    return learner.eval()


def test_precisions_and_the_float32_rule_for_gradient_learners():
    assert PRECISIONS == ("float32", "bfloat16")
    check_precision(conv_protonet(), "bfloat16")
    check_precision(ByGradient(), "float32")
    with pytest.raises(ConfigError, match=r"^train\.precision='bfloat16': expected 'float32' "
                                          r"for MAML, which adapts by gradient steps"):
        check_precision(ByGradient(), "bfloat16", "train.precision")
    with pytest.raises(ConfigError, match=r"^--precision='half': expected one of float32, bfloat16"):
        check_precision(conv_protonet(), "half", "--precision")


def test_forward_precision_autocasts_matrix_products_to_bfloat16_only_when_asked():
    layer = nn.Linear(3, 2)
    x = torch.randn(4, 3)
    with forward_precision(layer, "float32"):
        assert layer(x).dtype == torch.float32
    with forward_precision(layer, "bfloat16"):
        assert layer(x).dtype == torch.bfloat16
    with pytest.raises(ConfigError, match=r"precision='fp8'"):
        forward_precision(layer, "fp8")


def test_the_inference_copy_folds_batch_norm_and_computes_the_same_function():
    learner = conv_protonet()
    fast = inference_copy(learner)
    assert fast is not learner and not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in learner.modules())  # the original kept
    conv = next(m for m in fast.modules() if isinstance(m, nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    support_x, support_y, query_x = torch.randn(4, 1, 6, 6), torch.tensor([0, 0, 1, 1]), \
        torch.randn(3, 1, 6, 6)
    torch.testing.assert_close(fast.predict(support_x, support_y, query_x),
                               learner.predict(support_x, support_y, query_x),
                               rtol=1e-5, atol=1e-5)
    half = inference_copy(learner, "bfloat16")
    assert next(m for m in half.modules() if isinstance(m, nn.Conv2d)).weight.dtype == \
        torch.bfloat16


def test_a_gradient_learner_is_its_own_inference_copy():
    learner = ByGradient()
    assert inference_copy(learner) is learner


def test_an_unknown_precision_is_refused():
    from attnmeta.learners import ProtoNet
    from attnmeta.models import Conv4
    from attnmeta.train import forward_precision

    with pytest.raises(ValueError, match="precision='float16': expected one of float32, "
                                         "bfloat16"):
        forward_precision(ProtoNet(Conv4(out_dim=0, hidden=4)), "float16")

