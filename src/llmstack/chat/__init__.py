"""Talking to a trained model: the terminal chat (`llmstack chat`), the Gradio window with an
OpenAI-compatible API (`llmstack serve`, `snakemake chat`), and finding which model to load.

    cli.py       the `chat` and `serve` subcommands (argument parsing, the terminal loop)
    app.py       the Gradio window and /v1/chat/completions on one server
    resolve.py   a run's models from runs/<run>/run.json; an engine per model, loaded once
"""
