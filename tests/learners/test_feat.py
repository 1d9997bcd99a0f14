"""FEAT: adapted prototypes, permutation equivariance, and the contrastive regulariser."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attnmeta.learners.feat import FEAT
from attnmeta.tasks import Episode

TOL = dict(rtol=1e-10, atol=1e-12)


def make_feat(balance: float = 0.5) -> FEAT:
    torch.manual_seed(0)
    return FEAT(nn.Linear(4, 6), feature_dim=6, n_heads=2, dropout=0.0, temperature=2.0,
                aux_temperature=3.0, balance=balance).double()


def episode(tasks: int = 2, n_way: int = 3, shots: int = 2, queries: int = 2) -> Episode:
    gen = torch.Generator().manual_seed(1)
    support_y = torch.arange(n_way).repeat(shots).expand(tasks, -1)   # interleaved classes
    query_y = torch.arange(n_way).repeat(queries).expand(tasks, -1)
    return Episode(torch.randn(tasks, n_way * shots, 4, generator=gen, dtype=torch.float64),
                   support_y,
                   torch.randn(tasks, n_way * queries, 4, generator=gen, dtype=torch.float64),
                   query_y)


def reference_set_to_set(learner: FEAT, x: torch.Tensor) -> torch.Tensor:
    """LayerNorm(x + W_o concat_h softmax(Q_h K_hᵀ / √d_k) V_h), written out."""
    attn = learner.set_to_set.attn
    heads = []
    for h in range(attn.n_heads):
        rows = slice(h * attn.d_k, (h + 1) * attn.d_k)
        q = x @ attn.w_q.weight[rows].T + attn.w_q.bias[rows]
        k = x @ attn.w_k.weight[rows].T + attn.w_k.bias[rows]
        v = x @ attn.w_v.weight[rows].T + attn.w_v.bias[rows]
        heads.append(torch.softmax(q @ k.transpose(-2, -1) / attn.d_k**0.5, -1) @ v)
    attended = attn.w_o(torch.cat(heads, -1))
    norm = learner.set_to_set.norm
    return F.layer_norm(x + attended, (x.shape[-1],), norm.weight, norm.bias, norm.eps)


def test_logits_use_set_adapted_prototypes():
    learner, batch = make_feat(), episode()
    logits = learner.logits(batch.support_x, batch.support_y, batch.query_x)
    for t in range(2):
        z_s, z_q = learner.encoder(batch.support_x[t]), learner.encoder(batch.query_x[t])
        protos = torch.stack([z_s[batch.support_y[t] == c].mean(0) for c in range(3)])
        adapted = reference_set_to_set(learner, protos)
        expected = -((z_q[:, None] - adapted[None]) ** 2).sum(-1) / 2.0
        torch.testing.assert_close(logits[t], expected, **TOL)


def test_relabelling_classes_permutes_logits():
    learner, batch = make_feat(), episode()
    relabel = torch.tensor([2, 0, 1])
    logits = learner.logits(batch.support_x, batch.support_y, batch.query_x)
    relabelled = learner.logits(batch.support_x, relabel[batch.support_y], batch.query_x)
    torch.testing.assert_close(relabelled[..., relabel], logits, **TOL)


def test_training_loss_adds_the_contrastive_regulariser():
    learner, batch = make_feat(balance=0.5), episode()
    output = learner.training_step(batch)
    logits = learner.logits(batch.support_x, batch.support_y, batch.query_x)
    main = F.cross_entropy(logits.flatten(0, 1), batch.query_y.flatten())
    aux_terms = []
    for t in range(2):
        z = learner.encoder(torch.cat([batch.support_x[t], batch.query_x[t]]))
        y = torch.cat([batch.support_y[t], batch.query_y[t]])
        centres = torch.stack([reference_set_to_set(learner, z[y == c]).mean(0) for c in range(3)])
        aux_logits = -((z[:, None] - centres[None]) ** 2).sum(-1) / 3.0
        aux_terms.append(F.cross_entropy(aux_logits, y, reduction="none"))
    aux = torch.cat(aux_terms).mean()
    torch.testing.assert_close(output.loss, main + 0.5 * aux, **TOL)
    assert abs(output.metrics["contrastive_loss"] - aux.item()) < 1e-12
    output.loss.backward()
    assert learner.set_to_set.attn.w_q.weight.grad.abs().sum() > 0


def test_prototype_attention_is_a_distribution():
    learner, batch = make_feat(), episode()
    support_z = learner.encoder(batch.support_x)
    _, weights = learner.adapted_prototypes(support_z, batch.support_y, 3, need_weights=True)
    assert weights.shape == (2, 2, 3, 3)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 2, 3, dtype=torch.float64))
