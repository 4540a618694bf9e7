"""SFT stage: padded single conversations, loss on assistant tokens only (the body: llmstack.stages.chat_train).

    python -m llmstack.launch sft artifacts/sft/<key> --config JSON \
        --input model=artifacts/midtrain/<key>/model.pt --input tokenizer=.../tokenizer.model
"""

from llmstack.stages.chat_train import run_chat_stage
from llmstack.stages.common import stage_main

if __name__ == "__main__":
    stage_main("sft", lambda ctx: run_chat_stage(ctx, packed=False))
