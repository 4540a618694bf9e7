"""Hugging Face modeling code of an llmstack GPT: exported with the model, needs only torch + transformers.

The math is llmstack's model.py, step for step, so the exported model computes the same logits:
    x = rms_norm(embed(ids))                            # a norm right after the embedding
    per block:  x += attn(rms_norm(x));  x += c_proj(relu(c_fc(rms_norm(x)))^2)
    logits = softcap(lm_head(rms_norm(x)))              # untied embedding / unembedding, no biases
rms_norm has no weight and eps = torch.finfo(dtype).eps (F.rms_norm's default). Attention: fused
q|k|v projection, rotary on pairs (x[i], x[i + hd/2]), then RMSNorm of q and k (QK-norm, after the
rotation), grouped-query heads, scale 1/sqrt(hd). softcap(z) = c * tanh(z / c), written as
2c * sigmoid(2z / c) - c exactly as in training so the numbers agree to the last bits.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import GenerationMixin, PreTrainedModel
from transformers.cache_utils import DynamicCache
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast

from .configuration_llmstack import LlmstackConfig

# transformers 5 calls the KV cache `cache`; 4.x called it `past_key_values`. Accept and return both.
_CACHE_FIELD = "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"


def rms_norm(x: torch.Tensor) -> torch.Tensor:
    return F.rms_norm(x, (x.size(-1),))


def softcap_logits(logits: torch.Tensor, softcap: float) -> torch.Tensor:
    return (2 * softcap) * torch.sigmoid(logits * (2 / softcap)) - softcap


def rotary(config: LlmstackConfig, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin (B, T, 1, hd) for positions (B, T): cos = [cos, cos], sin = [sin, -sin] (training's layout)."""
    hd = config.head_dim
    inv_freq = config.rope_theta ** (-torch.arange(0, hd, 2, dtype=torch.float32, device=positions.device) / hd)
    angles = positions.float()[..., None] * inv_freq  # the same fp32 products as training's torch.outer
    cos, sin = angles.cos(), angles.sin()
    return torch.cat((cos, cos), -1)[:, :, None], torch.cat((sin, -sin), -1)[:, :, None]


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """(x1 cos + x2 sin, x2 cos - x1 sin) for the halves x1, x2 of each head of x (B, T, H, hd)."""
    half = x.size(-1) // 2
    return x * cos + torch.cat((x[..., half:], x[..., :half]), dim=-1) * sin


class LlmstackAttention(nn.Module):
    def __init__(self, config: LlmstackConfig, layer_idx: int) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.n_head, self.n_kv_head, self.head_dim = (
            config.num_attention_heads,
            config.num_key_value_heads,
            config.head_dim,
        )
        q_dim, kv_dim = self.n_head * self.head_dim, self.n_kv_head * self.head_dim
        self.split = (q_dim, kv_dim, kv_dim)
        self.c_qkv = nn.Linear(config.hidden_size, sum(self.split), bias=False)
        self.c_proj = nn.Linear(q_dim, config.hidden_size, bias=False)

    def forward(self, x, cos, sin, mask, causal, cache):
        B, T, _ = x.shape
        q, k, v = self.c_qkv(x).split(self.split, dim=-1)
        q = q.view(B, T, self.n_head, self.head_dim)
        k = k.view(B, T, self.n_kv_head, self.head_dim)
        v = v.view(B, T, self.n_kv_head, self.head_dim)
        cos, sin = cos.to(q.dtype), sin.to(q.dtype)
        q, k = rms_norm(apply_rotary(q, cos, sin)), rms_norm(apply_rotary(k, cos, sin))
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, heads, T, hd)
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx)
        if self.n_kv_head != self.n_head:  # GQA: each kv head serves n_head / n_kv_head query heads
            k = k.repeat_interleave(self.n_head // self.n_kv_head, dim=1)
            v = v.repeat_interleave(self.n_head // self.n_kv_head, dim=1)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, -1))


class LlmstackMLP(nn.Module):
    def __init__(self, config: LlmstackConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.c_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x):
        return self.c_proj(F.relu(self.c_fc(x)).square())


class LlmstackBlock(nn.Module):
    def __init__(self, config: LlmstackConfig, layer_idx: int) -> None:
        super().__init__()
        self.attn = LlmstackAttention(config, layer_idx)
        self.mlp = LlmstackMLP(config)

    def forward(self, x, cos, sin, mask, causal, cache):
        x = x + self.attn(rms_norm(x), cos, sin, mask, causal, cache)
        return x + self.mlp(rms_norm(x))


def attention_mask_and_positions(attention_mask, position_ids, B, T, past, device):
    """(boolean mask (B, 1, T, past + T) or None, is_causal, positions (B, T)).

    Without padding this takes the same attention paths as llmstack's engine: plain causal for a
    prefill, no mask for one new token. With padding (a 2D 0/1 mask over past + T positions) a query
    sees the unpadded keys at or before it, and positions count only unpadded tokens (left padding)."""
    if attention_mask is not None and attention_mask.dim() == 4:  # already built by the caller
        mask, padded = attention_mask, False
    else:
        padded = attention_mask is not None and not bool(attention_mask.all())
        mask = None
    if position_ids is None:
        if padded:
            position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -T:]
        else:
            position_ids = torch.arange(past, past + T, device=device).expand(B, T)
    if mask is not None:
        return mask, False, position_ids
    if not padded and past == 0:
        return None, T > 1, position_ids
    if not padded and T == 1:
        return None, False, position_ids
    keys = torch.arange(past + T, device=device)
    queries = torch.arange(past, past + T, device=device)
    mask = (keys[None, :] <= queries[:, None])[None]  # (1, T, S)
    if padded:
        if attention_mask.size(-1) != past + T:
            raise ValueError(f"attention_mask covers {attention_mask.size(-1)} positions, expected {past + T}")
        # a padded query row keeps its own key, so no row is empty (an empty row would give NaN)
        mask = (mask & attention_mask.bool()[:, None, :]) | (keys[None, :] == queries[:, None])[None]
    return mask[:, None], False, position_ids


class LlmstackPreTrainedModel(PreTrainedModel):
    config_class = LlmstackConfig
    base_model_prefix = "model"
    _no_split_modules = ["LlmstackBlock"]
    _supports_sdpa = True  # attention always runs through F.scaled_dot_product_attention

    def _init_weights(self, module: nn.Module) -> None:
        # Only for weights a checkpoint lacks (every exported one has them all): training's init scale.
        if isinstance(module, nn.Linear):
            bound = 3**0.5 * module.in_features**-0.5
            nn.init.uniform_(module.weight, -bound, bound)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=1.0)


class LlmstackModel(LlmstackPreTrainedModel):
    def __init__(self, config: LlmstackConfig) -> None:
        super().__init__(config)
        self.wte = nn.Embedding(config.vocab_size, config.hidden_size)
        self.blocks = nn.ModuleList(LlmstackBlock(config, i) for i in range(config.num_hidden_layers))
        self.post_init()

    def get_input_embeddings(self):
        return self.wte

    def set_input_embeddings(self, value):
        self.wte = value

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, cache=None, past_key_values=None,
                inputs_embeds=None, use_cache=None, **kwargs):  # fmt: skip
        cache = cache if cache is not None else past_key_values
        use_cache = self.config.use_cache if use_cache is None else use_cache
        if use_cache and cache is None:
            try:
                cache = DynamicCache(config=self.config)
            except TypeError:  # transformers < 4.56 builds it without a config
                cache = DynamicCache()
        x = self.wte(input_ids) if inputs_embeds is None else inputs_embeds
        B, T, _ = x.shape
        past = cache.get_seq_length() if cache is not None else 0
        mask, causal, positions = attention_mask_and_positions(attention_mask, position_ids, B, T, past, x.device)
        cos, sin = rotary(self.config, positions)
        x = rms_norm(x)
        for block in self.blocks:
            x = block(x, cos, sin, mask, causal, cache if use_cache else None)
        return BaseModelOutputWithPast(last_hidden_state=rms_norm(x), **{_CACHE_FIELD: cache if use_cache else None})


class LlmstackForCausalLM(LlmstackPreTrainedModel, GenerationMixin):
    def __init__(self, config: LlmstackConfig) -> None:
        super().__init__(config)
        self.model = LlmstackModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self):
        return self.model.wte

    def set_input_embeddings(self, value):
        self.model.wte = value

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, value):
        self.lm_head = value

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, cache=None, past_key_values=None,
                inputs_embeds=None, labels=None, use_cache=None, logits_to_keep=0, **kwargs):  # fmt: skip
        """Logits (B, T, V) in fp32; with `labels` (B, T) also the next-token loss (-100 = ignore)."""
        out = self.model(input_ids, attention_mask, position_ids, cache, past_key_values, inputs_embeds, use_cache)
        hidden = out.last_hidden_state
        if logits_to_keep:  # generation needs only the last position's logits
            hidden = hidden[:, -logits_to_keep:]
        logits = softcap_logits(self.lm_head(hidden).float(), self.config.logit_softcap)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(
                logits[:, :-1].reshape(-1, logits.size(-1)), labels[:, 1:].reshape(-1), ignore_index=-100
            )
        return CausalLMOutputWithPast(loss=loss, logits=logits, **{_CACHE_FIELD: getattr(out, _CACHE_FIELD)})
