"""Causal attention for CPU training: batched matmuls in query chunks, with a hand-written backward.

On CPU the fused SDPA kernels lose to plain matmuls plus an fp32 softmax (its backward alone ran
5x its forward on the 2-core AMX Xeon), so `model.causal_attention` sends CPU training here. The
queries go in up to 4 chunks and each chunk multiplies only the keys at or before its end, which
skips 3/8 of the T x T products.

Why a custom backward: left to autograd, the key gradient of `q @ k.T` comes out as (hd, T) per
head, and the gradients of the chunks' overlapping key ranges are summed through zero-padded
slices; torch.compile then fuses that transpose-and-sum into the rotary/norm backward as a strided
kernel that took 21 ms of a d4 and 59 ms of a d6 bf16 step (5.6 and 14 ms this way; steps 4-7%
faster). Here dk = dS^T q and dv = P^T dO come out (T, hd) contiguous, and each key block sums
the chunks that saw it. The softmax backward is autograd's own
formula, dS = P * (dP - rowsum(dP * P)), on the fp32 probabilities, so the numbers match the
autograd path up to summation order.

Shape legend: B batch, H heads (k, v already repeated to H for grouped-query attention), T time,
hd head dim; Tc a chunk's queries.
"""

from __future__ import annotations

import torch

MAX_CHUNKS = 4  # measured fwd+bwd per layer, B8 H2 T512 hd128 bf16: one chunk 56 ms, four 37 ms
MIN_CHUNK = 128  # shorter chunks make matmuls too small to run near the peak


def chunk_bounds(T: int) -> list[tuple[int, int]]:
    """[lo, hi) query ranges of the chunks, as even as integers allow."""
    n = max(1, min(MAX_CHUNKS, T // MIN_CHUNK))
    edges = [round(i * T / n) for i in range(n + 1)]
    return list(zip(edges[:-1], edges[1:], strict=True))


def _future_mask(lo: int, hi: int, device: torch.device) -> torch.Tensor:
    """(hi - lo, hi) True where key j comes after query lo + i."""
    return torch.arange(hi, device=device)[None, :] > torch.arange(lo, hi, device=device)[:, None]


def _sum_key_blocks(parts: list[torch.Tensor], bounds: list[tuple[int, int]]) -> torch.Tensor:
    """parts[c] (B, H, hi_c, hd) holds chunk c's gradient for keys [0, hi_c); key block j is seen
    by chunks j.. , so its gradient is their sum over its rows (fp32, then the parts' dtype)."""
    blocks = []
    for j, (lo, hi) in enumerate(bounds):
        total = parts[j][:, :, lo:hi].float()
        for part in parts[j + 1 :]:
            total = total + part[:, :, lo:hi].float()
        blocks.append(total)
    return torch.cat(blocks, dim=2).to(parts[0].dtype)


class _ChunkedCausalAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        scale = q.size(-1) ** -0.5
        bounds = chunk_bounds(q.size(2))
        outs, saved = [], []
        for lo, hi in bounds:
            scores = (q[:, :, lo:hi] @ k[:, :, :hi].mT).float() * scale  # (B, H, Tc, hi)
            probs = scores.masked_fill(_future_mask(lo, hi, q.device), float("-inf")).softmax(dim=-1)
            probs_v = probs.to(v.dtype)
            outs.append(probs_v @ v[:, :, :hi])
            saved += [probs, probs_v]
        ctx.save_for_backward(q, k, v, *saved)
        return torch.cat(outs, dim=2) if len(outs) > 1 else outs[0]

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        q, k, v, *saved = ctx.saved_tensors
        scale = q.size(-1) ** -0.5
        bounds = chunk_bounds(q.size(2))
        grad_out = grad_out.to(v.dtype)
        dq, dk_parts, dv_parts = [], [], []
        for c, (lo, hi) in enumerate(bounds):
            probs, probs_v = saved[2 * c], saved[2 * c + 1]
            d_out = grad_out[:, :, lo:hi]
            d_probs = (d_out @ v[:, :, :hi].mT).float()
            d_scores = (probs * (d_probs - (d_probs * probs).sum(-1, keepdim=True)) * scale).to(q.dtype)
            dq.append(d_scores @ k[:, :, :hi])
            dk_parts.append(d_scores.mT @ q[:, :, lo:hi])
            dv_parts.append(probs_v.mT @ d_out)
        dq = torch.cat(dq, dim=2) if len(dq) > 1 else dq[0]
        return dq, _sum_key_blocks(dk_parts, bounds), _sum_key_blocks(dv_parts, bounds)


def chunked_causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Causal attention of q over k, v, all (B, H, T, hd), as softmax(q k^T / sqrt(hd)) v."""
    return _ChunkedCausalAttention.apply(q, k, v)
