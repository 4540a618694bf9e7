"""Midtrain stage: packed conversations after pretraining (the body: llmstack.stages.chat_train).

    python -m llmstack.launch midtrain artifacts/midtrain/<key> --config JSON \
        --input model=artifacts/pretrain/<key>/model.pt --input tokenizer=.../tokenizer.model
"""

from llmstack.stages.chat_train import run_chat_stage
from llmstack.stages.common import stage_main

if __name__ == "__main__":
    stage_main("midtrain", lambda ctx: run_chat_stage(ctx, packed=True))
