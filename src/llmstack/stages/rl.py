"""RL stage: GRPO on a task with verifiable rewards, starting from the SFT model.

    python -m llmstack.launch rl artifacts/rl/<key> --config JSON \
        --input model=artifacts/sft/<key>/model.pt --input tokenizer=artifacts/tokenizer/<key>/tokenizer.model

Writes model.pt and metrics.json (reward_first, reward_last, eval/accuracy_start, eval/accuracy);
per-step curves go to metrics.jsonl, step checkpoints to ckpt/.
"""

from __future__ import annotations

from llmstack import distributed
from llmstack.checkpoint import load_model
from llmstack.config import TrainConfig
from llmstack.rl import RLJob, held_out_task, run_rl
from llmstack.stages.common import StageContext, stage_main, write_json
from llmstack.tasks import make_task
from llmstack.tokenizer import Tokenizer

# The rl slice carries only lr_frac: it scales the schema's pretraining learning rates, the ones
# every shipped preset trains with (nanochat's chat_rl does the same with its base LRs).
BASE_LRS = {name: getattr(TrainConfig, name) for name in ("matrix_lr", "embedding_lr", "unembedding_lr")}


def run(ctx: StageContext) -> None:
    d = distributed.init(ctx.execution.get("device", "auto"))
    cfg = ctx.section()
    model, meta = load_model(ctx.inputs["model"], d.device)
    tok = Tokenizer.load(ctx.inputs["tokenizer"])
    if model.config.vocab_size < tok.vocab_size:
        raise ValueError(f"{ctx.inputs['model']} has a {model.config.vocab_size}-token vocabulary, the tokenizer "
                         f"{tok.vocab_size}: they come from different runs")  # fmt: skip
    job = RLJob(
        out_dir=ctx.dir,
        cfg=cfg,
        model=model,
        tokenizer=tok,
        task=make_task(cfg["task"], **cfg["task_kwargs"]),
        eval_task=held_out_task(cfg["task"], cfg["task_kwargs"], cfg["eval_examples"]),
        base_lrs=BASE_LRS,
        device_batch_size=ctx.execution.get("device_batch_size"),
        meta={"from": {"stage": meta.get("stage"), "step": meta.get("step")}},
        fingerprint=ctx.fingerprint(),
    )
    metrics = run_rl(job, d)
    if d.is_main and metrics is not None:
        write_json(ctx.dir / "metrics.json", metrics)
        print(
            f"[rl] reward {metrics['reward_first']:.3f} -> {metrics['reward_last']:.3f}, "
            f"eval accuracy {metrics['eval/accuracy_start']:.3f} -> {metrics['eval/accuracy']:.3f}",
            flush=True,
        )
    distributed.shutdown()


if __name__ == "__main__":
    stage_main("rl", run)
