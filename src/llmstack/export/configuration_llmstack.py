"""Hugging Face configuration of an llmstack GPT (exported with the model; needs only transformers).

Field names follow transformers' conventions so its generation code (caches, masks) can read them.
The math they describe is in modeling_llmstack.py.
"""

from transformers import PretrainedConfig


class LlmstackConfig(PretrainedConfig):
    model_type = "llmstack"
    keys_to_ignore_at_inference = ["past_key_values", "cache"]

    def __init__(
        self,
        vocab_size: int = 4096,
        hidden_size: int = 256,
        num_hidden_layers: int = 4,
        num_attention_heads: int = 2,
        num_key_value_heads: int = 2,
        max_position_embeddings: int = 512,  # the context the model was trained on
        rope_theta: float = 10000.0,
        logit_softcap: float = 15.0,
        head_dim: int | None = None,  # always hidden_size // num_attention_heads; accepted so saved configs reload
        intermediate_size: int | None = None,  # always 4 * hidden_size (the ReLU^2 MLP)
        tie_word_embeddings: bool = False,
        use_cache: bool = True,
        **kwargs,
    ):
        if hidden_size % num_attention_heads or num_attention_heads % num_key_value_heads:
            raise ValueError(
                f"hidden_size {hidden_size}, heads {num_attention_heads}, kv heads {num_key_value_heads}: "
                "hidden_size must divide by heads and heads by kv heads"
            )
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.num_key_value_heads = num_key_value_heads
        self.max_position_embeddings = max_position_embeddings
        self.rope_theta = rope_theta
        self.logit_softcap = logit_softcap
        self.use_cache = use_cache
        self.head_dim = hidden_size // num_attention_heads
        self.intermediate_size = 4 * hidden_size
        for name, given in (("head_dim", head_dim), ("intermediate_size", intermediate_size)):
            if given is not None and given != getattr(self, name):
                raise ValueError(f"{name}={given} does not match the architecture ({getattr(self, name)})")
        super().__init__(tie_word_embeddings=tie_word_embeddings, **kwargs)
