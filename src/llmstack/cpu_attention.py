"""Causal attention for CPU training: batched matmuls, query chunks for long sequences, a hand-written backward.

On CPU the fused SDPA kernels lose to plain matmuls plus a softmax (its backward alone ran 5x its
forward on the 2-core AMX Xeon), so `model.causal_attention` sends CPU training here.

Inputs are the model's: q and k RMS-normalised per head (QK-norm), so every score q.k / sqrt(hd)
lies within [-sqrt(hd), sqrt(hd)] (Cauchy-Schwarz) and exp() of it cannot overflow fp32 for any
head dim up to 4096. The softmax therefore skips the usual max pass and normalises exp(scores) by
their sum: one pass over the (T, T) scores fewer, 2 ms of a 9.5 ms layer (d4 shape).

Chunks: sequences longer than SPLIT_ABOVE go in query chunks of at least MIN_CHUNK, each
multiplying only the keys at or before its end, which skips up to 3/8 of the T x T products. At
T <= 512 that saving costs more than it brings: the key prefixes must be copied (oneDNN takes a
batched operand only when its batches are packed) and the matmuls get small. Measured fwd+bwd per
layer, bf16, torch.compile, 2-core AMX Xeon, B*T = 4096 tokens, hd 128 (ms):

    shape          1 chunk   2 chunks   4 chunks
    T 256  H 2       6.0       7.4        6.9
    T 512  H 2       9.5      10.1       12.3
    T 512  H 3      15.2      15.8       17.1
    T 1024 H 2      18.5      16.6       15.4

The backward saves the probabilities once, in the compute dtype (bf16 when training in bf16), and
takes rowsum(dP * P) as rowsum(dO * O) (the same number, a (T, hd) product instead of (T, T)), then
dS = P * (dP - rowsum) as autograd would. dk = dS^T q and dv = P^T dO come out (T, hd) contiguous
and each key block sums the chunks that saw it (left to autograd, torch.compile fused a strided
transpose-and-sum of zero-padded slices into the rotary/norm backward: 21 ms of a d4 step).

Shape legend: B batch, H heads (k, v already repeated to H for grouped-query attention), T time,
hd head dim; Tc a chunk's queries.
"""

from __future__ import annotations

import torch

SPLIT_ABOVE = 512  # sequences up to this length go in one chunk (table above)
MIN_CHUNK = 256  # shorter chunks make matmuls too small to run near the peak
MAX_CHUNKS = 4


def chunk_bounds(T: int) -> list[tuple[int, int]]:
    """[lo, hi) query ranges of the chunks, as even as integers allow."""
    n = 1 if T <= SPLIT_ABOVE else min(MAX_CHUNKS, T // MIN_CHUNK)
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
        outs, probs = [], []
        for lo, hi in bounds:
            # in place: one fp32 (B, H, Tc, hi) buffer in eager mode (SFT runs eager); compile fuses it anyway
            weights = (q[:, :, lo:hi] @ k[:, :, :hi].mT).float().mul_(scale)
            weights.masked_fill_(_future_mask(lo, hi, q.device), float("-inf")).exp_()  # |scores| <= sqrt(hd)
            probs.append(weights.div_(weights.sum(-1, keepdim=True)).to(v.dtype))
            outs.append(probs[-1] @ v[:, :, :hi])
        out = torch.cat(outs, dim=2) if len(outs) > 1 else outs[0]
        ctx.save_for_backward(q, k, v, out, *probs)
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        q, k, v, out, *probs = ctx.saved_tensors
        scale = q.size(-1) ** -0.5
        bounds = chunk_bounds(q.size(2))
        grad_out = grad_out.to(v.dtype)
        row_dot = (grad_out.float() * out.float()).sum(-1, keepdim=True)  # = rowsum(dP * P), (B, H, T, 1)
        dq, dk_parts, dv_parts = [], [], []
        for (lo, hi), p in zip(bounds, probs, strict=True):
            d_out = grad_out[:, :, lo:hi]
            d_probs = (d_out @ v[:, :, :hi].mT).float()
            d_scores = d_probs.sub_(row_dot[:, :, lo:hi]).mul_(p).mul_(scale).to(q.dtype)
            dq.append(d_scores @ k[:, :, :hi])
            dk_parts.append(d_scores.mT @ q[:, :, lo:hi])
            dv_parts.append(p.mT @ d_out)
        dq = torch.cat(dq, dim=2) if len(dq) > 1 else dq[0]
        return dq, _sum_key_blocks(dk_parts, bounds), _sum_key_blocks(dv_parts, bounds)


def chunked_causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Causal attention of q over k, v, all (B, H, T, hd), as softmax(q k^T / sqrt(hd)) v; q and k
    RMS-normalised per head (see the module docstring), all best contiguous (no copies for the matmuls)."""
    return _ChunkedCausalAttention.apply(q, k, v)
