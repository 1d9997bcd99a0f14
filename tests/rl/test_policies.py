"""The attention policy sees exactly its recent live history, in rollouts and in training."""

from __future__ import annotations

import torch

from attnmeta.rl.policies import HistoryAttentionPolicy, MLPPolicy, recent_history_mask


def test_recent_history_mask_by_hand():
    alive = torch.tensor([[True, False, True, True]])
    mask = recent_history_mask(alive, window=2)[0, 0]
    expected = torch.tensor([[1, 0, 0, 0],      # step 0: itself
                             [1, 0, 0, 0],      # padding: the live step before it
                             [1, 0, 1, 0],      # step 2: steps 0 and 2 (the 1 skipped is padding)
                             [0, 0, 1, 1]],     # step 3: the 2 most recent live steps only
                            dtype=torch.bool)
    assert torch.equal(mask, expected)


def test_last_step_output_equals_the_full_sequence_pass():
    """The rollout feeds the policy a buffer of the last `window` live tokens (front-padded
    with zero tokens); its output must equal the whole-trajectory pass at that step."""
    torch.manual_seed(0)
    window = 4
    policy = HistoryAttentionPolicy(2, 2, window=window, d_model=8, n_heads=2, hidden=(8,)).double()
    alive = torch.tensor([1, 1, 1, 0, 0, 1, 1, 1, 1, 1], dtype=torch.float64)
    tokens = torch.randn(1, 10, policy.token_dim, dtype=torch.float64)
    tokens[..., -1] = alive
    full = policy(tokens)
    for t in torch.nonzero(alive).flatten().tolist():
        live = [j for j in range(t + 1) if alive[j] > 0][-window:]
        buffer = torch.zeros(1, window, policy.token_dim, dtype=torch.float64)
        buffer[0, window - len(live):] = tokens[0, live]
        torch.testing.assert_close(policy(buffer, last_only=True), full[:, t],
                                   rtol=1e-12, atol=1e-12)


def test_gaussian_policies_output_mean_and_learned_log_std():
    policy = MLPPolicy(2, 2, hidden=(5,), init_log_std=-0.5)
    outputs = policy(torch.zeros(3, 7, 2))
    assert outputs.shape == (3, 7, 4)
    assert torch.all(outputs[..., 2:] == -0.5)
    assert policy(torch.zeros(3, 7, 2), last_only=True).shape == (3, 4)
