"""The engine's fast forward passes: GPT.forward's maths for sampling, with weights in one dtype.

Each decode step is ~100 small operations whose overhead, not their arithmetic, is the cost on a
CPU; `Decoder` keeps transposed weights, folds each RMSNorm into the next matmul and applies rotary
as one small matmul. llmstack.engine uses it; tests compare it with GPT.forward token for token.
"""

from __future__ import annotations

import copy
import threading

import torch
import torch.nn.functional as F

from llmstack.model import GPT, KVCache, rms_norm, softcap_logits


class Decoder:
    """The forward passes of sampling: weights in one dtype and layout for the whole generation.

    The fast path (`forward`) is GPT.forward's math in fewer kernels, which is what decoding a
    small model costs on a CPU (each step is ~100 tiny kernels, not FLOPs): weights kept
    transposed and contiguous in the decode dtype (a plain mm; 2x faster for the lm_head at batch
    8 here), norms folded into the next matmul (`_norm`), the embedding pre-normalised, q and k
    rotated (one (hd, hd) matmul per step) and normalised together, residual adds fused into the
    projections, and the lm_head only over each row's last position. Its KV cache holds unit-norm
    keys (GPT.forward's divided by sqrt(hd)), so a cache is filled by one path only. `reference`
    runs GPT.forward itself (on a cast copy when the model is in another dtype).

    The weights are a copy (twice the weight memory), so each generation first calls `refresh`:
    it copies again when any weight changed since (in-place updates bump a tensor's version
    counter), so RL, which samples from the model it trains, always sees the current weights."""

    def __init__(self, model: GPT, dtype: torch.dtype) -> None:
        self.source, self.dtype = model, dtype
        c = model.config
        self.n_head, self.n_kv, self.head_dim, self.softcap = c.n_head, c.n_kv_head, c.head_dim, c.softcap
        self.qk_dim = (c.n_head + c.n_kv_head) * c.head_dim
        # rotary rows in the decode dtype, once (GPT.forward casts its slice at every layer)
        self.cos, self.sin = (t[0, :, 0].to(dtype) for t in (model.cos, model.sin))
        self._lock = threading.Lock()
        self._seen: list[int] | None = None
        self._ref: GPT | None = None
        self._rotations: dict[int, torch.Tensor] = {}  # chunk index -> (64, hd, hd)
        self.refresh()

    def refresh(self) -> None:
        """Copy the weights again if they changed. The copy is swapped whole and each forward
        reads it once, so a step never mixes old and new weights."""
        with self._lock, torch.no_grad():
            versions = [p._version for p in self.source.parameters()]
            if versions == self._seen:
                return
            m, root_d = self.source, self.source.config.n_embd**0.5

            def t(w: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
                return (w.detach().t() * scale).to(self.dtype).contiguous()

            # Matrices that follow a norm carry its sqrt(D) factor (see forward); rows of the
            # embedding are normalised once here instead of at every step.
            self.weights = (
                rms_norm(m.wte.weight.detach()).to(self.dtype),
                [
                    (
                        t(b.attn.c_qkv.weight, root_d),
                        t(b.attn.c_proj.weight),
                        t(b.mlp.c_fc.weight, root_d),
                        t(b.mlp.c_proj.weight),
                    )
                    for b in m.blocks
                ],  # fmt: skip
                t(m.lm_head.weight, root_d),
            )
            self._ref = None  # rebuilt on demand
            self._seen = versions

    def _rotation(self, pos: int) -> torch.Tensor:
        """The rotary map of position `pos` as a matrix R (hd, hd), x @ R = apply_rotary(x): built
        for 64 positions at a time, as decoding reaches them (about 1 MB per 64 at hd 64, fp32)."""
        chunk = self._rotations.get(pos // 64)
        if chunk is None:
            lo = pos // 64 * 64
            cos, sin = self.cos[lo : lo + 64], self.sin[lo : lo + 64]
            j = torch.arange(self.head_dim, device=cos.device)
            chunk = cos.new_zeros(cos.size(0), self.head_dim, self.head_dim)
            chunk[:, j, j] = cos  # out[j] = x[j] cos[j] + x[j +- hd/2] sin[j]
            chunk[:, (j + self.head_dim // 2) % self.head_dim, j] = sin
            self._rotations[pos // 64] = chunk
        return chunk[pos % 64]

    def reference(self, ids: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Logits (B, V) of the last position of ids (B, T) through GPT.forward, in the decode dtype."""
        model = self.source
        if any(p.dtype != self.dtype for p in model.parameters()):
            with self._lock:
                self._ref = self._ref or copy.deepcopy(model).to(self.dtype)
            model = self._ref
        with torch.no_grad():
            return model(ids, kv_cache=cache)[:, -1, :]

    def forward(self, ids: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Logits (B, V) of the last position of ids (B, T), caching keys and values: the fast path."""
        wte, layers, head = self.weights
        B, T = ids.shape
        H, KV, hd, pos, half = self.n_head, self.n_kv, self.head_dim, cache.pos, self.head_dim // 2
        cos, sin = self.cos[pos : pos + T, None], self.sin[pos : pos + T, None]  # (T, 1, hd)
        rot = self._rotation(pos) if T == 1 else None
        with torch.no_grad():
            x = F.embedding(ids.reshape(-1), wte)  # (B*T, D): 2-D so addmm can fuse the residual adds
            for i, (w_qkv, w_o, w_fc, w_out) in enumerate(layers):
                qkv = torch.mm(x, w_qkv).div_(_norm(x))
                qk = qkv[:, : self.qk_dim].view(B, T, H + KV, hd)
                if T == 1:  # the rotation of one position as one (hd, hd) matmul: 1 kernel instead of 5
                    qk = qk @ rot
                else:
                    qk = torch.addcmul(qk * cos, torch.cat((qk[..., half:], qk[..., :half]), -1), sin)
                qk = qk.div_(_norm(qk)).transpose(1, 2)  # unit q, k: (B, H + KV, T, hd)
                k, v = cache.update(i, qk[:, H:], qkv[:, self.qk_dim :].view(B, T, KV, hd).transpose(1, 2))
                y = _attend(qk[:, :H], k, v, pos, scale=hd**0.5)  # rms-normed q.k / sqrt(hd) = sqrt(hd) unit q.k
                x = torch.addmm(x, y.transpose(1, 2).reshape(B * T, H * hd), w_o)
                x = torch.addmm(x, torch.mm(x, w_fc).div_(_norm(x)).relu_().square_(), w_out)
            cache.advance(T)
            last = x.view(B, T, -1)[:, -1]
            return softcap_logits(torch.mm(last, head).div_(_norm(last)).float(), self.softcap)


def _norm(x: torch.Tensor) -> torch.Tensor:
    """Euclidean norm of each row (last dim), floored so a zero row stays zero.

    rms_norm(x) @ W = (x @ sqrt(D) W) / |x|: one reduction and one division instead of rms_norm's
    half a dozen small kernels (its eps, 1e-7 of the mean square, is below fp32 rounding here)."""
    return torch.linalg.vector_norm(x, dim=-1, keepdim=True).clamp_min_(1e-30)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, start: int, scale: float) -> torch.Tensor:
    """Attention of q (B, H, T, hd) at positions [start, start + T) over cached k, v (B, KV, P, hd)."""
    gqa, T = k.size(1) != q.size(1), q.size(2)
    if T == 1:  # one new token sees everything cached
        return F.scaled_dot_product_attention(q, k, v, scale=scale, enable_gqa=gqa)
    if start == 0:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale, enable_gqa=gqa)
    mask = torch.arange(start + T, device=q.device)[None, :] <= torch.arange(start, start + T, device=q.device)[:, None]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale, enable_gqa=gqa)
