"""Hugging Face export: a run's model + tokenizer as a folder transformers loads with trust_remote_code.

    llmstack export --stage sft out/                  # cli.py
    export_model(model_pt, tokenizer_model, out_dir)  # hf.py; card.py writes its README.md

configuration_/modeling_/tokenization_llmstack.py are not part of llmstack's runtime: they are copied
into every export and imported there by transformers (they need it; nothing here imports them).
"""
