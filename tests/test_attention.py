"""Attention against naive float64 references, nn.MultiheadAttention, gradcheck, torch.func."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from attnmeta import kernels
from attnmeta.attention import MultiHeadAttention, TransformerBlock, scaled_dot_product_attention

TIGHT = dict(rtol=0.0, atol=1e-12)
# vmap over the fused CPU kernel falls back to a per-example loop and warns about it.
pytestmark = pytest.mark.filterwarnings("ignore:There is a performance drop:UserWarning")


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def naive_attention(q, k, v, additive=None):
    """softmax(Q Kᵀ / √d_k + mask) V with explicit loops over the leading dims, in numpy."""
    q, k, v = (np.asarray(t.detach(), dtype=np.float64) for t in (q, k, v))
    lead = np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    l_q, l_k, d_k, d_v = q.shape[-2], k.shape[-2], q.shape[-1], v.shape[-1]
    if additive is not None:
        additive = np.broadcast_to(np.asarray(additive, dtype=np.float64), lead + (l_q, l_k))
    out = np.zeros(lead + (l_q, d_v))
    weights = np.zeros(lead + (l_q, l_k))
    for idx in np.ndindex(*lead):
        qi = np.broadcast_to(q, lead + q.shape[-2:])[idx]
        ki = np.broadcast_to(k, lead + k.shape[-2:])[idx]
        vi = np.broadcast_to(v, lead + v.shape[-2:])[idx]
        for a in range(l_q):
            scores = np.array([sum(qi[a, d] * ki[b, d] for d in range(d_k)) for b in range(l_k)])
            scores = scores / math.sqrt(d_k)
            if additive is not None:
                scores = scores + additive[idx][a]
            e = np.exp(scores - scores.max())
            weights[idx][a] = e / e.sum()
            out[idx][a] = weights[idx][a] @ vi
    return torch.from_numpy(out), torch.from_numpy(weights)


# --------------------------------------------------------------------------- functional


@pytest.mark.parametrize(
    "q_shape,k_shape,v_shape",
    [
        ((5, 4), (6, 4), (6, 4)),  # no leading dims
        ((2, 3, 5, 4), (2, 3, 6, 4), (2, 3, 6, 7)),  # batch + head dims, d_k != d_v
        ((2, 1, 5, 3), (2, 3, 6, 3), (2, 3, 6, 2)),  # broadcast over the head dim of q
    ],
)
def test_sdpa_matches_naive_formula(q_shape, k_shape, v_shape):
    q, k, v = randn(*q_shape, seed=1), randn(*k_shape, seed=2), randn(*v_shape, seed=3)
    ref_out, ref_w = naive_attention(q, k, v)
    lead = torch.broadcast_shapes(q_shape[:-2], k_shape[:-2])
    fused = scaled_dot_product_attention(q, k, v)
    assert fused.shape == lead + (q_shape[-2], v_shape[-1])
    torch.testing.assert_close(fused, ref_out, **TIGHT)
    plain = scaled_dot_product_attention(q, k, v, fused=False)
    torch.testing.assert_close(plain, ref_out, **TIGHT)
    out, w = scaled_dot_product_attention(q, k, v, return_weights=True)
    assert w.shape == lead + (q_shape[-2], k_shape[-2])
    torch.testing.assert_close(out, ref_out, **TIGHT)
    torch.testing.assert_close(w, ref_w, **TIGHT)
    torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[:-1], dtype=w.dtype), **TIGHT)
    assert (w > 0).all()


def test_sdpa_scale_is_sqrt_dk_not_dv():
    # d_k = 1, d_v = 9: one query, two keys with known scores -> known weights.
    q = torch.tensor([[2.0]], dtype=torch.float64)
    k = torch.tensor([[1.0], [0.0]], dtype=torch.float64)
    v = randn(2, 9)
    _, w = scaled_dot_product_attention(q, k, v, return_weights=True)
    p = math.exp(2.0) / (math.exp(2.0) + 1.0)  # scores 2/√1 and 0
    torch.testing.assert_close(w, torch.tensor([[p, 1 - p]], dtype=torch.float64), **TIGHT)


def test_declared_double_backward_switches_to_plain_path():
    q, k, v = randn(2, 4, 3, seed=1), randn(2, 5, 3, seed=2), randn(2, 5, 6, seed=3)
    ref, _ = naive_attention(q, k, v)
    with kernels.differentiable(double_backward=True):
        torch.testing.assert_close(scaled_dot_product_attention(q, k, v), ref, **TIGHT)
    torch.testing.assert_close(scaled_dot_product_attention(q, k, v), ref, **TIGHT)


def _bool_mask(l_q: int, l_k: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    mask = torch.rand(2, 1, l_q, l_k, generator=gen) > 0.5
    mask[..., 0] = True  # every query keeps at least one key
    return mask


@pytest.mark.parametrize("kind", ["random", "causal"])
def test_bool_and_additive_masks_agree_with_naive(kind):
    l_q, l_k = 5, 5 if kind == "causal" else 6
    q, k, v = randn(2, 3, l_q, 4, seed=1), randn(2, 3, l_k, 4, seed=2), randn(2, 3, l_k, 3, seed=3)
    if kind == "causal":
        keep = torch.ones(l_q, l_k, dtype=torch.bool).tril()
    else:
        keep = _bool_mask(l_q, l_k, seed=7)
    assert not keep.all()  # the mask really drops something
    additive = torch.zeros(keep.shape, dtype=torch.float64).masked_fill(~keep, float("-inf"))
    ref_out, ref_w = naive_attention(q, k, v, additive=additive.numpy())

    for mask in (keep, additive):
        fused = scaled_dot_product_attention(q, k, v, mask=mask)
        torch.testing.assert_close(fused, ref_out, **TIGHT)
        out, w = scaled_dot_product_attention(q, k, v, mask=mask, return_weights=True)
        torch.testing.assert_close(out, ref_out, **TIGHT)
        torch.testing.assert_close(w, ref_w, **TIGHT)
        dropped = (~keep).expand_as(w)
        assert (w[dropped] == 0).all()  # exactly zero, not merely small
        assert (w[~dropped] > 0).all()
        torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[:-1], dtype=w.dtype), **TIGHT)

    if kind == "causal":
        # the first query can only see the first key: its output is exactly v[..., 0, :]
        out = scaled_dot_product_attention(q, k, v, mask=keep)
        torch.testing.assert_close(out[..., 0, :], v[..., 0, :], **TIGHT)


def test_finite_additive_mask_is_a_score_bias():
    q, k, v = randn(3, 4, 5, seed=1), randn(3, 6, 5, seed=2), randn(3, 6, 2, seed=3)
    bias = randn(4, 6, seed=4)
    ref_out, ref_w = naive_attention(q, k, v, additive=bias.numpy())
    torch.testing.assert_close(scaled_dot_product_attention(q, k, v, mask=bias), ref_out, **TIGHT)
    out, w = scaled_dot_product_attention(q, k, v, mask=bias, return_weights=True)
    torch.testing.assert_close(out, ref_out, **TIGHT)
    torch.testing.assert_close(w, ref_w, **TIGHT)


def test_sdpa_shape_errors_name_the_dims():
    with pytest.raises(ValueError, match=r"query dim 4 != key dim 3"):
        scaled_dot_product_attention(randn(2, 5, 4), randn(2, 6, 3), randn(2, 6, 3))
    with pytest.raises(ValueError, match=r"6 keys but 7 values"):
        scaled_dot_product_attention(randn(2, 5, 4), randn(2, 6, 4), randn(2, 7, 3))


def test_sdpa_gradcheck_fused_and_weights_paths():
    q = randn(2, 3, 4, seed=1).requires_grad_()
    k = randn(2, 4, 4, seed=2).requires_grad_()
    v = randn(2, 4, 2, seed=3).requires_grad_()
    mask = torch.ones(3, 4, dtype=torch.bool).tril(1)
    assert torch.autograd.gradcheck(lambda a, b, c: scaled_dot_product_attention(a, b, c), (q, k, v))
    assert torch.autograd.gradcheck(
        lambda a, b, c: scaled_dot_product_attention(a, b, c, mask=mask), (q, k, v)
    )
    assert torch.autograd.gradcheck(
        lambda a, b, c: scaled_dot_product_attention(a, b, c, mask=mask, return_weights=True),
        (q, k, v),
    )
    # the weights path supports double backward (second-order MAML relies on it)
    assert torch.autograd.gradgradcheck(
        lambda a, b, c: scaled_dot_product_attention(a, b, c, return_weights=True), (q, k, v)
    )


# --------------------------------------------------------------------------- MultiHeadAttention


def make_mha(d_model=8, n_heads=2, seed=0, **kwargs) -> MultiHeadAttention:
    torch.manual_seed(seed)
    mha = MultiHeadAttention(d_model, n_heads, **kwargs).double().eval()
    with torch.no_grad():  # non-zero biases, so that a dropped bias would be noticed
        for i, (name, p) in enumerate(mha.named_parameters()):
            if name.endswith("bias"):
                p.copy_(randn(*p.shape, seed=1000 + i))
    return mha


def torch_mha_like(mha: MultiHeadAttention) -> nn.MultiheadAttention:
    ref = nn.MultiheadAttention(mha.d_model, mha.n_heads, batch_first=True).double().eval()
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([mha.w_q.weight, mha.w_k.weight, mha.w_v.weight]))
        ref.in_proj_bias.copy_(torch.cat([mha.w_q.bias, mha.w_k.bias, mha.w_v.bias]))
        ref.out_proj.weight.copy_(mha.w_o.weight)
        ref.out_proj.bias.copy_(mha.w_o.bias)
    return ref


def naive_mha(params: dict, n_heads, d_k, d_v, query, key, value, keep=None):
    """Per-head loop over the module's own weight matrices (``params`` as in state_dict)."""
    outs, weights = [], []
    additive = None
    if keep is not None:
        additive = torch.zeros(keep.shape, dtype=torch.float64).masked_fill(~keep, float("-inf"))
    for h in range(n_heads):
        sq, sv = slice(h * d_k, (h + 1) * d_k), slice(h * d_v, (h + 1) * d_v)
        q = query @ params["w_q.weight"][sq].T + params["w_q.bias"][sq]
        k = key @ params["w_k.weight"][sq].T + params["w_k.bias"][sq]
        v = value @ params["w_v.weight"][sv].T + params["w_v.bias"][sv]
        mask_h = None
        if additive is not None:  # [L_q, L_k] or [B, 1 or H, L_q, L_k]
            a = additive
            if a.dim() == 4:
                a = a[:, 0 if a.shape[1] == 1 else h]
            mask_h = a.numpy()
        o, w = naive_attention(q, k, v, additive=mask_h)
        outs.append(o)
        weights.append(w)
    concat = torch.cat(outs, dim=-1)
    out = concat @ params["w_o.weight"].detach().T + params["w_o.bias"].detach()
    return out, torch.stack(weights, dim=1)


def test_mha_self_attention_matches_torch():
    mha = make_mha(8, 2)
    ref = torch_mha_like(mha)
    x = randn(3, 5, 8, seed=11)
    with torch.no_grad():
        ref_out, ref_w = ref(x, x, x, need_weights=True, average_attn_weights=False)
        out, w = mha(x, need_weights=True)
        fused_out, none = mha(x)
    assert none is None
    assert out.shape == (3, 5, 8) and w.shape == (3, 2, 5, 5)
    torch.testing.assert_close(out, ref_out, **TIGHT)
    torch.testing.assert_close(fused_out, ref_out, **TIGHT)
    torch.testing.assert_close(w, ref_w, **TIGHT)
    with torch.no_grad():
        _, avg = ref(x, x, x, need_weights=True)  # default: averaged over heads
    torch.testing.assert_close(w.mean(1), avg, **TIGHT)


def test_mha_cross_attention_matches_torch():
    mha = make_mha(12, 3, seed=1)
    ref = torch_mha_like(mha)
    query, key, value = randn(2, 4, 12, seed=1), randn(2, 7, 12, seed=2), randn(2, 7, 12, seed=3)
    with torch.no_grad():
        ref_out, ref_w = ref(query, key, value, need_weights=True, average_attn_weights=False)
        out, w = mha(query, key, value, need_weights=True)
        fused_out, _ = mha(query, key, value)
        # value=None means values are the keys
        kv_out, _ = mha(query, key)
        ref_kv, _ = ref(query, key, key)
    assert out.shape == (2, 4, 12) and w.shape == (2, 3, 4, 7)
    torch.testing.assert_close(out, ref_out, **TIGHT)
    torch.testing.assert_close(fused_out, ref_out, **TIGHT)
    torch.testing.assert_close(w, ref_w, **TIGHT)
    torch.testing.assert_close(kv_out, ref_kv, **TIGHT)


def test_mha_mask_matches_torch_inverted_bool():
    mha = make_mha(8, 4, seed=2)
    ref = torch_mha_like(mha)
    query, key = randn(2, 5, 8, seed=1), randn(2, 6, 8, seed=2)
    keep = _bool_mask(5, 6, seed=3)[0, 0]  # [L_q, L_k], True = attend
    assert not keep.all()
    with torch.no_grad():
        ref_out, ref_w = ref(query, key, key, attn_mask=~keep, need_weights=True,
                             average_attn_weights=False)
        for fused in (True, False):
            out, w = mha(query, key, mask=keep, need_weights=not fused)
            torch.testing.assert_close(out, ref_out, **TIGHT)
        torch.testing.assert_close(w, ref_w, **TIGHT)
        assert (w.masked_select(~keep) == 0).all()

        # a per-example mask [B, 1, L_q, L_k] against torch's [B*H, L_q, L_k]
        per_example = _bool_mask(5, 6, seed=4)  # [2, 1, 5, 6]
        ref_out, ref_w = ref(query, key, key, attn_mask=(~per_example).repeat(1, 4, 1, 1).flatten(0, 1),
                             need_weights=True, average_attn_weights=False)
        out, w = mha(query, key, mask=per_example, need_weights=True)
        fused_out, _ = mha(query, key, mask=per_example)
    torch.testing.assert_close(out, ref_out, **TIGHT)
    torch.testing.assert_close(fused_out, ref_out, **TIGHT)
    torch.testing.assert_close(w, ref_w, **TIGHT)


@pytest.mark.parametrize("d_model,n_heads", [(6, 2), (7, 2)])  # 7 % 2 != 0 is fine with d_k, d_v
def test_mha_separate_dk_dv_matches_per_head_loop(d_model, n_heads):
    mha = make_mha(d_model, n_heads, d_k=3, d_v=5, seed=3)
    assert mha.w_q.weight.shape == (n_heads * 3, d_model)
    assert mha.w_v.weight.shape == (n_heads * 5, d_model)
    assert mha.w_o.weight.shape == (d_model, n_heads * 5)
    query, key, value = randn(2, 4, d_model, seed=1), randn(2, 6, d_model, seed=2), randn(2, 6, d_model, seed=3)
    keep = _bool_mask(4, 6, seed=5)
    params = dict(mha.named_parameters())
    with torch.no_grad():
        for mask in (None, keep):
            ref_out, ref_w = naive_mha(params, n_heads, 3, 5, query, key, value, keep=mask)
            out, w = mha(query, key, value, mask=mask, need_weights=True)
            fused_out, _ = mha(query, key, value, mask=mask)
            assert out.shape == (2, 4, d_model) and w.shape == (2, n_heads, 4, 6)
            torch.testing.assert_close(out, ref_out, **TIGHT)
            torch.testing.assert_close(fused_out, ref_out, **TIGHT)
            torch.testing.assert_close(w, ref_w, **TIGHT)


def test_mha_without_bias():
    mha = MultiHeadAttention(6, 3, bias=False).double()
    assert all(lin.bias is None for lin in (mha.w_q, mha.w_k, mha.w_v, mha.w_o))
    x = randn(2, 3, 6)
    zeros = {f"{n}.bias": torch.zeros(mha.get_submodule(n).out_features, dtype=torch.float64)
             for n in ("w_q", "w_k", "w_v", "w_o")}
    params = {**dict(mha.named_parameters()), **zeros}
    with torch.no_grad():
        ref_out, _ = naive_mha(params, 3, 2, 2, x, x, x)
        torch.testing.assert_close(mha(x)[0], ref_out, **TIGHT)


def test_mha_shape_errors():
    with pytest.raises(ValueError, match=r"d_model=10 is not divisible by n_heads=3"):
        MultiHeadAttention(10, 3)
    with pytest.raises(ValueError, match=r"d_model=10 is not divisible by n_heads=3"):
        MultiHeadAttention(10, 3, d_k=4)  # d_v still missing
    mha = MultiHeadAttention(8, 2)
    with pytest.raises(ValueError, match=r"3 keys but 4 values"):
        mha(torch.randn(1, 5, 8), torch.randn(1, 3, 8), torch.randn(1, 4, 8))


def test_mha_gradcheck_inputs_and_parameters():
    mha = make_mha(4, 2, d_k=3, d_v=2, seed=4)
    names = [n for n, _ in mha.named_parameters()]
    params = [p.detach().clone().requires_grad_() for _, p in mha.named_parameters()]
    query = randn(2, 3, 4, seed=1).requires_grad_()
    key = randn(2, 4, 4, seed=2).requires_grad_()
    keep = torch.ones(3, 4, dtype=torch.bool).tril(1)

    def call(need_weights):
        def f(query, key, *ps):
            out, w = functional_call(mha, dict(zip(names, ps)), (query, key),
                                     dict(mask=keep, need_weights=need_weights))
            return (out, w) if need_weights else out
        return f

    assert torch.autograd.gradcheck(call(False), (query, key, *params))
    assert torch.autograd.gradcheck(call(True), (query, key, *params))


# --------------------------------------------------------------------------- torch.func


@pytest.mark.parametrize("need_weights", [False, True])
def test_mha_functional_call_uses_the_given_parameters(need_weights):
    mha = make_mha(6, 2, d_k=2, d_v=4, seed=5)
    before = {n: p.detach().clone() for n, p in mha.named_parameters()}
    new = {n: randn(*p.shape, seed=100 + i) for i, (n, p) in enumerate(mha.named_parameters())}
    query, key = randn(2, 3, 6, seed=1), randn(2, 5, 6, seed=2)
    with torch.no_grad():
        out, w = functional_call(mha, new, (query, key), dict(need_weights=need_weights))
        ref_out, ref_w = naive_mha(new, 2, 2, 4, query, key, key)
        old_out, _ = mha(query, key)
        ref_old, _ = naive_mha(before, 2, 2, 4, query, key, key)
    torch.testing.assert_close(out, ref_out, **TIGHT)
    if need_weights:
        torch.testing.assert_close(w, ref_w, **TIGHT)
    else:
        assert w is None
    # the module's own parameters are untouched and still used outside functional_call
    for n, p in mha.named_parameters():
        assert torch.equal(p, before[n])
    torch.testing.assert_close(old_out, ref_old, **TIGHT)
    assert not torch.allclose(out, old_out)


@pytest.mark.parametrize("need_weights", [False, True])
def test_mha_vmap_matches_batched_call(need_weights):
    mha = make_mha(8, 2, seed=6)
    query, key = randn(4, 3, 8, seed=1), randn(4, 5, 8, seed=2)
    keep = _bool_mask(3, 5, seed=8)[0, 0]

    def single(q, k):  # one example, re-batched to B = 1 inside
        out, w = mha(q[None], k[None], mask=keep, need_weights=need_weights)
        return (out[0], w[0]) if need_weights else out[0]

    with torch.no_grad():
        mapped = torch.vmap(single)(query, key)
        out, w = mha(query, key, mask=keep, need_weights=need_weights)
    if need_weights:
        torch.testing.assert_close(mapped[0], out, **TIGHT)
        torch.testing.assert_close(mapped[1], w, **TIGHT)
    else:
        torch.testing.assert_close(mapped, out, **TIGHT)


@pytest.mark.parametrize("return_weights", [False, True])
def test_sdpa_vmap_over_leading_dim(return_weights):
    q, k, v = randn(3, 2, 4, 5, seed=1), randn(3, 2, 6, 5, seed=2), randn(3, 2, 6, 3, seed=3)
    f = lambda a, b, c: scaled_dot_product_attention(a, b, c, return_weights=return_weights)  # noqa: E731
    mapped = torch.vmap(f)(q, k, v)
    batched = f(q, k, v)
    ref_out, ref_w = naive_attention(q, k, v)
    if return_weights:
        torch.testing.assert_close(mapped[0], batched[0], **TIGHT)
        torch.testing.assert_close(mapped[1], ref_w, **TIGHT)
        mapped = mapped[0]
    torch.testing.assert_close(mapped, ref_out, **TIGHT)


def test_vmap_grad_through_mha_with_plain_path():
    # per-example gradients via vmap(grad) equal a loop of autograd.grad calls
    mha = make_mha(4, 2, seed=7)
    params = {n: p.detach() for n, p in mha.named_parameters()}
    xs = randn(3, 5, 4, seed=9)

    def loss(ps, x):
        out, _ = functional_call(mha, ps, (x[None],))
        return out.pow(2).sum()

    with kernels.differentiable(vmap=True):
        per_example = torch.vmap(torch.func.grad(loss), in_dims=(None, 0))(params, xs)
    for i in range(3):
        ps = {n: p.clone().requires_grad_() for n, p in params.items()}
        grads = torch.autograd.grad(loss(ps, xs[i]), list(ps.values()))
        for (n, _), g in zip(ps.items(), grads):
            torch.testing.assert_close(per_example[n][i], g, rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------- TransformerBlock


def naive_layer_norm(x, weight, bias, eps):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


@pytest.mark.parametrize("d_k,d_v", [(None, None), (3, 5)])
def test_transformer_block_matches_naive_reference(d_k, d_v):
    torch.manual_seed(8)
    block = TransformerBlock(8, 2, mlp_ratio=2.0, d_k=d_k, d_v=d_v).double().eval()
    with torch.no_grad():  # non-trivial layer-norm affine parameters
        for i, norm in enumerate((block.norm_attn, block.norm_mlp)):  # and different per norm
            norm.weight.copy_(1 + 0.3 * randn(8, seed=1 + 2 * i))
            norm.bias.copy_(0.2 * randn(8, seed=2 + 2 * i))
    x = randn(2, 5, 8, seed=3)
    keep = torch.ones(5, 5, dtype=torch.bool).tril()
    p = dict(block.named_parameters())
    h_k, h_v = (d_k or 4), (d_v or 4)
    with torch.no_grad():
        attn_in = naive_layer_norm(x, p["norm_attn.weight"], p["norm_attn.bias"], block.norm_attn.eps)
        attn_params = {n[len("attn."):]: t for n, t in p.items() if n.startswith("attn.")}
        attended, ref_w = naive_mha(attn_params, 2, h_k, h_v, attn_in, attn_in, attn_in, keep=keep)
        h = x + attended
        mlp_in = naive_layer_norm(h, p["norm_mlp.weight"], p["norm_mlp.bias"], block.norm_mlp.eps)
        hidden = mlp_in @ p["mlp.0.weight"].T + p["mlp.0.bias"]
        hidden = 0.5 * hidden * (1 + torch.erf(hidden / math.sqrt(2)))  # exact GELU
        ref = h + hidden @ p["mlp.2.weight"].T + p["mlp.2.bias"]

        out, w = block(x, mask=keep, need_weights=True)
        fused_out, none = block(x, mask=keep)
    assert out.shape == x.shape and none is None
    torch.testing.assert_close(out, ref, **TIGHT)
    torch.testing.assert_close(fused_out, ref, **TIGHT)
    torch.testing.assert_close(w, ref_w, **TIGHT)


def test_layer_norm_matches_torch():
    torch.manual_seed(9)
    block = TransformerBlock(6, 3).double()
    x = randn(4, 3, 6, seed=4) * 5 + 2
    with torch.no_grad():
        block.norm_attn.weight.copy_(randn(6, seed=5))
        block.norm_attn.bias.copy_(randn(6, seed=6))
        ref = F.layer_norm(x, (6,), block.norm_attn.weight, block.norm_attn.bias, block.norm_attn.eps)
        torch.testing.assert_close(block.norm_attn(x), ref, rtol=1e-12, atol=1e-12)


def test_transformer_block_gradcheck():
    torch.manual_seed(10)
    block = TransformerBlock(4, 2, mlp_ratio=1.0).double().eval()
    x = randn(1, 3, 4, seed=1).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: block(t)[0], (x,))


def test_fully_masked_query_gets_zero_output_and_finite_gradients():
    from attnmeta.attention import scaled_dot_product_attention as sdpa

    q = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    k = torch.randn(2, 5, 4, dtype=torch.float64)
    v = torch.randn(2, 5, 6, dtype=torch.float64)
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[1] = False  # query 1 may attend to nothing
    out, weights = sdpa(q, k, v, mask=mask, return_weights=True)
    assert torch.equal(weights[:, 1], torch.zeros(2, 5, dtype=torch.float64))
    assert torch.equal(out[:, 1], torch.zeros(2, 6, dtype=torch.float64))
    out.sum().backward()
    assert torch.isfinite(q.grad).all() and torch.equal(q.grad[:, 1], torch.zeros(2, 4, dtype=torch.float64))
    reference = sdpa(q.detach()[:, [0, 2]], k, v, mask=mask[[0, 2]])
    torch.testing.assert_close(out[:, [0, 2]], reference)


def test_seed_attention_layer_signature_builds_the_same_module():
    from attnmeta.attention import AttentionLayer, MultiHeadAttention

    torch.manual_seed(0)
    seed_layer = AttentionLayer(12, 3, 5, 4)
    torch.manual_seed(0)
    mha = MultiHeadAttention(12, 4, d_k=3, d_v=5)
    x = torch.randn(2, 6, 12)
    torch.testing.assert_close(seed_layer(x)[0], mha(x)[0])
    assert (seed_layer.d_k, seed_layer.d_v, seed_layer.n_heads) == (3, 5, 4)
