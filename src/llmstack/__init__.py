"""llmstack: raw text -> tokenizer -> GPT -> chat, as one cached Snakemake workflow."""

__version__ = "0.1.0"
