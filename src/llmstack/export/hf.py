"""Write one model file and its tokenizer as a Hugging Face model folder.

    export_model(Path("artifacts/sft/<key>/model.pt"), Path("artifacts/tokenizer/<key>/tokenizer.model"),
                 Path("out/"), card="# ...")

The folder holds config.json, model.safetensors, tokenizer.model + tokenizer_config.json (with the
chat template), generation_config.json, README.md and the modeling code transformers imports with
trust_remote_code=True (configuration_/modeling_/tokenization_llmstack.py, copied from this package:
they need torch, sentencepiece and transformers, never llmstack). Writing needs no transformers.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from llmstack.engine import STOP_TOKENS
from llmstack.tokenizer import SPECIAL_TOKENS, Tokenizer

CODE_FILES = ("configuration_llmstack.py", "modeling_llmstack.py", "tokenization_llmstack.py")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}

# Renders a conversation exactly as Tokenizer.render_conversation / render_for_completion do: the
# system message joins the first user message with a blank line, assistant content is a string or
# a list of text / python / python_output parts, and the generation prompt is <|assistant_start|>.
CHAT_TEMPLATE = (
    "{{- '<|bos|>' -}}"
    "{%- set ns = namespace(system='') -%}"
    "{%- for message in messages -%}"
    "{%- if loop.first and message['role'] == 'system' -%}{%- set ns.system = message['content'] + '\n\n' -%}"
    "{%- elif message['role'] == 'user' -%}"
    "{{- '<|user_start|>' + ns.system + message['content'] + '<|user_end|>' -}}{%- set ns.system = '' -%}"
    "{%- elif message['role'] == 'assistant' -%}{{- '<|assistant_start|>' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'text' -%}{{- part['text'] -}}"
    "{%- elif part['type'] == 'python' -%}{{- '<|python_start|>' + part['text'] + '<|python_end|>' -}}"
    "{%- elif part['type'] == 'python_output' -%}{{- '<|output_start|>' + part['text'] + '<|output_end|>' -}}"
    "{%- endif -%}{%- endfor -%}{%- endif -%}{{- '<|assistant_end|>' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|assistant_start|>' -}}{%- endif -%}"
)


def hf_config(model_config: dict[str, Any], tokenizer: Tokenizer, dtype: str) -> dict[str, Any]:
    """config.json: llmstack's GPTConfig under transformers' field names, plus the auto_map that
    points AutoConfig / AutoModelForCausalLM at the copied code."""
    c = model_config
    return {
        "architectures": ["LlmstackForCausalLM"],
        "model_type": "llmstack",
        "auto_map": {
            "AutoConfig": "configuration_llmstack.LlmstackConfig",
            "AutoModel": "modeling_llmstack.LlmstackModel",
            "AutoModelForCausalLM": "modeling_llmstack.LlmstackForCausalLM",
        },
        "vocab_size": c["vocab_size"],
        "hidden_size": c["n_embd"],
        "num_hidden_layers": c["n_layer"],
        "num_attention_heads": c["n_head"],
        "num_key_value_heads": c["n_kv_head"],
        "head_dim": c["n_embd"] // c["n_head"],
        "intermediate_size": 4 * c["n_embd"],
        "max_position_embeddings": c["seq_len"],
        "rope_theta": c.get("rope_base", 10000.0),
        "logit_softcap": c.get("softcap", 15.0),
        "tie_word_embeddings": False,
        "bos_token_id": tokenizer.bos_id,
        "eos_token_id": tokenizer.special_id("<|assistant_end|>"),
        "pad_token_id": tokenizer.special_id("<|assistant_end|>"),
        "torch_dtype": dtype,
        "use_cache": True,
    }


def hf_weights(state_dict: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """llmstack's parameter names under the base model's prefix (`model.`), lm_head at the top."""
    out = {}
    for name, tensor in state_dict.items():
        if not name.startswith("lm_head."):
            name = f"model.{name}"
        out[name] = tensor.detach().to("cpu", dtype).contiguous()  # no tied weights: no shared storage
    return out


def tokenizer_config(tokenizer: Tokenizer, seq_len: int) -> dict[str, Any]:
    return {
        "tokenizer_class": "LlmstackTokenizer",
        "auto_map": {"AutoTokenizer": ["tokenization_llmstack.LlmstackTokenizer", None]},
        "bos_token": "<|bos|>",
        "eos_token": "<|assistant_end|>",
        "pad_token": "<|assistant_end|>",
        "unk_token": tokenizer.id_to_piece(0),
        "additional_special_tokens": [t for t in SPECIAL_TOKENS if t not in ("<|bos|>", "<|assistant_end|>")],
        "add_bos_token": True,
        "clean_up_tokenization_spaces": False,
        "model_max_length": seq_len,
        "chat_template": CHAT_TEMPLATE,
    }


def generation_config(tokenizer: Tokenizer) -> dict[str, Any]:
    """Stop where llmstack's engine stops (end of the reply, or a token that starts another turn)."""
    return {
        "bos_token_id": tokenizer.bos_id,
        "eos_token_id": [tokenizer.special_id(name) for name in STOP_TOKENS],
        "pad_token_id": tokenizer.special_id("<|assistant_end|>"),
    }


def write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def export_model(model_path: Path, tokenizer_path: Path, out_dir: Path, card: str = "", dtype: str = "float32") -> Path:
    """Write the Hugging Face folder `out_dir` from one model file and its tokenizer; returns out_dir.

    The folder is built beside `out_dir` and renamed into place, so a failed export leaves no half
    folder; an existing `out_dir` is replaced only when it is an earlier export (or empty)."""
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    out_dir = Path(out_dir)
    check_replaceable(out_dir)
    tokenizer = Tokenizer.load(tokenizer_path)
    payload = torch.load(model_path, map_location="cpu", weights_only=True)
    model_config = payload["model_config"]
    if model_config["vocab_size"] < tokenizer.vocab_size:
        raise ValueError(f"model vocab {model_config['vocab_size']} < tokenizer vocab {tokenizer.vocab_size}: "
                         f"{model_path} and {tokenizer_path} were not trained together")  # fmt: skip
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.", suffix=".tmp"))
    try:
        save_file(hf_weights(payload["model"], DTYPES[dtype]), tmp / "model.safetensors", metadata={"format": "pt"})
        write_json(tmp / "config.json", hf_config(model_config, tokenizer, dtype))
        write_json(tmp / "generation_config.json", generation_config(tokenizer))
        shutil.copyfile(tokenizer_path, tmp / "tokenizer.model")
        write_json(tmp / "tokenizer_config.json", tokenizer_config(tokenizer, model_config["seq_len"]))
        for name in CODE_FILES:
            shutil.copyfile(Path(__file__).with_name(name), tmp / name)
        (tmp / "README.md").write_text(card)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def check_replaceable(out_dir: Path) -> None:
    """Refuse to overwrite a folder that is not an earlier export: it may hold someone's files."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise FileExistsError(f"{out_dir} exists and is not a folder")
    try:
        ours = json.loads((out_dir / "config.json").read_text()).get("model_type") == "llmstack"
    except (OSError, ValueError, AttributeError):
        ours = False
    if any(out_dir.iterdir()) and not ours:
        raise FileExistsError(f"{out_dir} is not empty and is not an llmstack export; choose another folder")
