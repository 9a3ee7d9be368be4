"""OneReward training loss (paper Eq. 3) and read-outs of the Yes/No answer.

The reward is P(Yes) renormalised over the two answer tokens: softmax([logit_Yes, logit_No])[0],
which equals sigmoid(logit_Yes - logit_No). We call logit_Yes - logit_No the *log-odds*; it is
unbounded, which makes it the better RL reward signal once a tiny model saturates.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def log_odds(last_logits: torch.Tensor, yes_token_id: int, no_token_id: int) -> torch.Tensor:
    """logit(Yes) - logit(No) from last-position logits of shape [B, vocab]; returns [B] float32."""
    return (last_logits[:, yes_token_id] - last_logits[:, no_token_id]).float()


def p_yes(log_odds_values: torch.Tensor) -> torch.Tensor:
    """P(Yes) under the softmax restricted to {Yes, No}: sigmoid of the log-odds."""
    return torch.sigmoid(log_odds_values)


def yes_no_cross_entropy(log_odds_values: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over {Yes, No}; labels are 1 for Yes, 0 for No, or soft targets in
    [0, 1] (the probability of Yes, e.g. a pair's ``p_winner``).

    Two-class softmax cross-entropy equals binary cross-entropy on the log-odds, which is the
    numerically stable form, and it takes soft targets as they are. With a soft target p the
    minimum is the entropy of p (reached at P(Yes) = p), not 0, so soft-label losses sit above
    hard-label ones on the same pairs.
    """
    return F.binary_cross_entropy_with_logits(log_odds_values, labels.to(log_odds_values.dtype))


def onereward_loss(log_odds_winner_first: torch.Tensor, log_odds_loser_first: torch.Tensor) -> torch.Tensor:
    """Paper Eq. 3: -1/2 E[log P(Yes | w, l, q) + log P(No | l, w, q)].

    Both arguments are [B] log-odds for the same B pairs in the two orders.
    """
    return 0.5 * (F.softplus(-log_odds_winner_first) + F.softplus(log_odds_loser_first)).mean()
