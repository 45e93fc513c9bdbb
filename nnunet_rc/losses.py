"""Loss terms used by nnunet_rc trainers (pure PyTorch).

:func:`consistency_loss` is the RandConv/GIN-style consistency regularizer (methods.md, RC section):
the KL divergence of the softmax of each view to the views' mean, i.e. the Jensen-Shannon divergence
for two views.
"""
from __future__ import annotations

import torch

__all__ = ["consistency_loss"]


def consistency_loss(*logits: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Mean KL divergence of every view's class distribution to the views' mean distribution.

    ``L = (1/V) Σ_v KL(p_v || m)``, ``p_v = softmax(logits_v)`` over the class axis 1,
    ``m = (1/V) Σ_v p_v``; the KL is summed over classes and averaged over samples and voxels.
    Args: ``V >= 2`` logit tensors of identical shape ``(B, K, *spatial)``. Returns a scalar fp32
    tensor, ``0`` iff all views agree, at most ``log V``; computed in fp32 even under autocast.
    """
    if len(logits) < 2:
        raise ValueError(f"consistency_loss needs at least two views, got {len(logits)}")
    shape = logits[0].shape
    if any(z.shape != shape for z in logits):
        raise ValueError(f"consistency_loss: views differ in shape: {[tuple(z.shape) for z in logits]}")
    probs = [torch.softmax(z.float(), dim=1) for z in logits]
    mean = torch.stack(probs).mean(0)
    log_mean = mean.clamp_min(eps).log()
    kl = [(p * (p.clamp_min(eps).log() - log_mean)).sum(1).mean() for p in probs]
    return torch.stack(kl).mean()
