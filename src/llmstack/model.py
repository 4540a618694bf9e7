"""The GPT: a dense decoder-only transformer in the nanochat recipe.

Rotary positions, QK-norm, parameter-free RMSNorm (pre-norm, plus one right after the embedding),
grouped-query attention, ReLU^2 MLP, no biases, untied embedding/unembedding and a tanh logit
softcap. Depth is the one dial: `dims_from_depth` derives width and heads from it.

    cfg = GPTConfig(vocab_size=4096, seq_len=512, **dims_from_depth(4))
    model = GPT(cfg)
    loss = model(idx, targets)                 # training
    cache = model.new_kv_cache(1, max_len=600)
    logits = model(prompt, kv_cache=cache)     # prefill, then one token at a time

Shape legend:
    B batch, T time (sequence), D model width (n_embd), V vocab, L layers,
    H query heads, KV key/value heads (H % KV == 0), hd head dim (D // H), P cached positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from llmstack.cpu_attention import chunked_causal_attention
from llmstack.dims import dims_from_depth  # noqa: F401  (re-exported: the depth dial)
from llmstack.lm_loss import softcap_cross_entropy, softcap_logits  # softcap_logits: re-exported

# Rotary tables cover this many times seq_len so sampling may run past the training context.
ROTARY_LEN_FACTOR = 10
# Longest sequence for which CPU training attention materialises the (T, T) scores (see causal_attention).
CPU_MATMUL_ATTENTION_MAX_T = 1024


@dataclass
class GPTConfig:
    """Architecture of one GPT; everything that changes the parameter shapes or the math."""

    vocab_size: int
    seq_len: int
    n_layer: int
    n_embd: int
    n_head: int
    n_kv_head: int
    softcap: float = 15.0
    rope_base: float = 10000.0

    def __post_init__(self) -> None:
        for name in ("vocab_size", "seq_len", "n_layer", "n_embd", "n_head", "n_kv_head"):
            if getattr(self, name) < 1:
                raise ValueError(f"GPTConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}")
        if self.n_head % self.n_kv_head:
            raise ValueError(f"n_head={self.n_head} is not divisible by n_kv_head={self.n_kv_head}")
        if self.head_dim % 2:
            raise ValueError(f"head_dim={self.head_dim} must be even for rotary embeddings")
        if self.softcap <= 0:
            raise ValueError(f"softcap must be > 0, got {self.softcap}")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


def rms_norm(x: torch.Tensor) -> torch.Tensor:
    """Parameter-free RMSNorm over the last dim."""
    return F.rms_norm(x, (x.size(-1),))


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each pair (x[i], x[i + hd/2]) of x (B, T, H, hd) by its position's angle.

    cos is (1, T, 1, hd) = [cos, cos] and sin is [sin, -sin], so the rotation
    (x1 cos + x2 sin, x2 cos - x1 sin) is x * cos + [x2, x1] * sin: four ops instead of seven,
    which matters in eager mode where each op is a pass over q or k.
    """
    half = x.size(-1) // 2
    return x * cos + torch.cat((x[..., half:], x[..., :half]), dim=-1) * sin


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Causal attention of q (B, H, T, hd) over k, v (B, KV, T, hd) for training; q and k RMS-normalised
    per head, as QK-norm leaves them.

    CUDA uses the fused SDPA kernels; CPU uses batched matmuls (llmstack.cpu_attention, faster there,
    and relying on the normalised q and k), up to CPU_MATMUL_ATTENTION_MAX_T: its (B, H, T, T) scores
    grow quadratically, so long sequences go back to SDPA (memory linear in T).
    """
    gqa = k.size(1) != q.size(1)
    if q.device.type != "cpu" or q.size(2) > CPU_MATMUL_ATTENTION_MAX_T:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
    if gqa:
        repeats = q.size(1) // k.size(1)
        k, v = k.repeat_interleave(repeats, dim=1), v.repeat_interleave(repeats, dim=1)
    # (B, H, T, hd) contiguous: oneDNN copies any batched operand whose batches are not packed
    return chunked_causal_attention(q.contiguous(), k.contiguous(), v.contiguous())


class KVCache:
    """Keys and values of every layer for positions [0, pos), preallocated to max_len.

    Layout (L, B, KV, max_len, hd) so a layer's slice feeds scaled_dot_product_attention directly.
    The model writes each layer's new keys at [pos, pos + T) and advances pos once per forward.
    """

    def __init__(
        self,
        batch_size: int,
        n_layer: int,
        n_kv_head: int,
        head_dim: int,
        max_len: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if batch_size < 1 or max_len < 1:
            raise ValueError(f"KVCache needs batch_size >= 1 and max_len >= 1, got {batch_size}, {max_len}")
        shape = (n_layer, batch_size, n_kv_head, max_len, head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.pos = 0

    @property
    def batch_size(self) -> int:
        return self.k.size(1)

    @property
    def max_len(self) -> int:
        return self.k.size(3)

    def reset(self) -> None:
        """Forget every cached position (the buffers are reused)."""
        self.pos = 0

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, KV, T, hd) at [pos, pos + T) of `layer`; return keys/values (B, KV, pos + T, hd)."""
        end = self.pos + k.size(2)
        if end > self.max_len:
            raise ValueError(f"KV cache full: {self.pos} cached + {k.size(2)} new > max_len {self.max_len}")
        self.k[layer, :, :, self.pos : end] = k
        self.v[layer, :, :, self.pos : end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def advance(self, n: int) -> None:
        self.pos += n

    def expand(self, n: int) -> KVCache:
        """A new cache holding this batch-1 prefill n times, to sample n completions of one prompt."""
        if self.batch_size != 1:
            raise ValueError(f"expand needs a batch-1 cache, this one has batch {self.batch_size}")
        n_layer, _, n_kv_head, max_len, head_dim = self.k.shape
        out = KVCache(n, n_layer, n_kv_head, head_dim, max_len, self.k.device, self.k.dtype)
        out.k[:, :, :, : self.pos] = self.k[:, :, :, : self.pos]
        out.v[:, :, :, : self.pos] = self.v[:, :, :, : self.pos]
        out.pos = self.pos
        return out


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig, layer_idx: int) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.n_head, self.n_kv_head, self.head_dim = config.n_head, config.n_kv_head, config.head_dim
        q_dim, kv_dim = self.n_head * self.head_dim, self.n_kv_head * self.head_dim
        self.qkv_split = (q_dim, kv_dim, kv_dim)
        # One (B*T, D) x (D, q+2kv) matmul instead of three narrower ones; Muon still orthogonalises
        # q, k and v separately (optim.build_optimizers passes qkv_split as row_splits).
        self.c_qkv = nn.Linear(config.n_embd, sum(self.qkv_split), bias=False)
        self.c_proj = nn.Linear(q_dim, config.n_embd, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, kv_cache: KVCache | None) -> torch.Tensor:
        B, T, _ = x.shape
        q, k, v = self.c_qkv(x).split(self.qkv_split, dim=-1)
        q = q.view(B, T, self.n_head, self.head_dim)
        k = k.view(B, T, self.n_kv_head, self.head_dim)
        v = v.view(B, T, self.n_kv_head, self.head_dim)
        cos, sin = cos.to(q.dtype), sin.to(q.dtype)
        q, k = rms_norm(apply_rotary(q, cos, sin)), rms_norm(apply_rotary(k, cos, sin))
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, H|KV, T, hd)
        gqa = self.n_kv_head != self.n_head
        if kv_cache is None:
            y = causal_attention(q, k, v)
        else:
            start = kv_cache.pos
            k, v = kv_cache.update(self.layer_idx, k, v)
            # Attend in the cache's dtype: casting the few new queries is cheaper than the whole cache.
            q = q.to(k.dtype)
            if start == 0:  # prefill from scratch: plain causal
                y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
            elif T == 1:  # one new token sees everything cached
                y = F.scaled_dot_product_attention(q, k, v, enable_gqa=gqa)
            else:  # a chunk after cached positions: query i sees keys [0, start + i]
                keys = torch.arange(start + T, device=q.device)
                queries = torch.arange(start, start + T, device=q.device)
                mask = keys[None, :] <= queries[:, None]
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)
            y = y.to(x.dtype)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, -1))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=False)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.relu(self.c_fc(x)).square())


class Block(nn.Module):
    def __init__(self, config: GPTConfig, layer_idx: int) -> None:
        super().__init__()
        self.attn = CausalSelfAttention(config, layer_idx)
        self.mlp = MLP(config)

    def forward(self, x, cos, sin, kv_cache):
        x = x + self.attn(rms_norm(x), cos, sin, kv_cache)
        return x + self.mlp(rms_norm(x))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.blocks = nn.ModuleList(Block(config, i) for i in range(config.n_layer))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.max_positions = config.seq_len * ROTARY_LEN_FACTOR
        # Non-persistent: derived from the config, so checkpoints carry weights only.
        self.register_buffer("cos", torch.empty(0), persistent=False)
        self.register_buffer("sin", torch.empty(0), persistent=False)
        self.init_weights()

    def _rotary_tables(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        hd = self.config.head_dim
        inv_freq = self.config.rope_base ** (-torch.arange(0, hd, 2, dtype=torch.float32, device=device) / hd)
        t = torch.arange(self.max_positions, dtype=torch.float32, device=device)
        angles = torch.outer(t, inv_freq)[None, :, None, :]  # (1, max_positions, 1, hd/2)
        return torch.cat((angles.cos(), angles.cos()), -1), torch.cat((angles.sin(), -angles.sin()), -1)

    @torch.no_grad()
    def init_weights(self) -> None:
        """nanochat-style init: embedding std 1, small lm_head, uniform matrices with std 1/sqrt(fan_in),
        zeroed output projections so every block starts as the identity on the residual stream."""
        bound = 3**0.5 * self.config.n_embd**-0.5  # uniform(-a, a) has std a / sqrt(3)
        nn.init.normal_(self.wte.weight, mean=0.0, std=1.0)
        nn.init.normal_(self.lm_head.weight, mean=0.0, std=0.001)
        for block in self.blocks:
            nn.init.uniform_(block.attn.c_qkv.weight, -bound, bound)
            nn.init.uniform_(block.mlp.c_fc.weight, -bound, bound)
            nn.init.zeros_(block.attn.c_proj.weight)
            nn.init.zeros_(block.mlp.c_proj.weight)
        self.cos, self.sin = self._rotary_tables(self.wte.weight.device)

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        kv_cache: KVCache | None = None,
        loss_reduction: str = "mean",
    ) -> torch.Tensor:
        """idx (B, T) token ids -> logits (B, T, V) fp32, or the loss when targets (B, T) are given
        (ignore_index -1; loss_reduction "none" gives the per-token loss (B, T))."""
        B, T = idx.shape
        start = 0 if kv_cache is None else kv_cache.pos
        if start + T > self.max_positions:
            raise ValueError(f"position {start + T} exceeds the rotary table ({self.max_positions} positions)")
        cos, sin = self.cos[:, start : start + T], self.sin[:, start : start + T]
        x = rms_norm(self.wte(idx))
        for block in self.blocks:
            x = block(x, cos, sin, kv_cache)
        if kv_cache is not None:
            kv_cache.advance(T)
        if loss_reduction not in ("mean", "sum", "none"):
            raise ValueError(f"loss_reduction must be mean, sum or none, got {loss_reduction!r}")
        x = rms_norm(x)
        if targets is not None and loss_reduction != "none" and torch.is_grad_enabled():
            # training: logits, loss and their gradients in one chunked pass (llmstack.lm_loss)
            return softcap_cross_entropy(
                x.reshape(B * T, -1), self.lm_head.weight, targets.reshape(B * T), self.config.softcap, loss_reduction
            )
        logits = softcap_logits(self.lm_head(x).float(), self.config.softcap)
        if targets is None:
            return logits
        loss = F.cross_entropy(
            logits.view(B * T, -1), targets.reshape(B * T), ignore_index=-1, reduction=loss_reduction
        )
        return loss.view(B, T) if loss_reduction == "none" else loss

    def new_kv_cache(
        self,
        batch_size: int,
        max_len: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> KVCache:
        """An empty KV cache sized for this model (defaults: the model's device and dtype)."""
        if max_len > self.max_positions:
            raise ValueError(f"max_len {max_len} exceeds the rotary table ({self.max_positions} positions)")
        c = self.config
        return KVCache(
            batch_size,
            c.n_layer,
            c.n_kv_head,
            c.head_dim,
            max_len,
            device=device if device is not None else self.wte.weight.device,
            dtype=dtype if dtype is not None else self.wte.weight.dtype,
        )

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def num_scaling_params(self) -> int:
        """Parameters that count for scaling laws: the block matrices plus lm_head. The input
        embedding is a lookup (no FLOPs per token), so it is left out, as in nanochat and Chinchilla."""
        return self.num_params() - self.wte.weight.numel()

    def flops_per_token(self) -> float:
        """Training FLOPs per token: 6 per scaling parameter (forward + backward matmuls) plus the
        attention scores and mixing, 12 * L * H * hd * T (PaLM appendix B; no causal discount)."""
        c = self.config
        return 6 * self.num_scaling_params() + 12 * c.n_layer * c.n_head * c.head_dim * c.seq_len

    @torch.no_grad()
    def generate_greedy(self, ids: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
        """Greedy continuation of ids (B, T) using the KV cache; returns (B, T + max_new_tokens)."""
        if ids.dim() != 2 or ids.size(1) == 0:
            raise ValueError(f"ids must be a non-empty (B, T) tensor, got shape {tuple(ids.shape)}")
        cache = self.new_kv_cache(ids.size(0), ids.size(1) + max_new_tokens, device=ids.device)
        out, step_input = [ids], ids
        for _ in range(max_new_tokens):
            logits = self(step_input, kv_cache=cache)
            step_input = logits[:, -1].argmax(dim=-1, keepdim=True)
            out.append(step_input)
        return torch.cat(out, dim=1)
