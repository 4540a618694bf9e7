"""Base-eval stage: val bits-per-byte, CORE-style in-context tasks and toy-world facts of a pretrained model.

    python -m llmstack.launch base_eval artifacts/base_eval/<key> --config JSON \
        --input model=artifacts/pretrain/<key>/model.pt \
        --input tokenizer=artifacts/tokenizer/<key>/tokenizer.model \
        --input data=artifacts/data/<key>/manifest.json

Writes eval.json: {"val/bpb", "val/loss", "core": {task: {accuracy, centered, n, ...}}, "core_metric"
(null without CORE tasks), "toy" (null unless the data is the embedded toy world), "samples", "model_meta"}.
"""

from __future__ import annotations

from typing import Any

from llmstack.artifacts import write_json
from llmstack.checkpoint import load_model
from llmstack.config import BaseEvalConfig
from llmstack.data.shards import validation_file
from llmstack.data.toyworld import build_world
from llmstack.dataloader import val_batches
from llmstack.device import autocast_dtype, pick_device
from llmstack.evaluate.core_eval import core_metric, ensure_bundle, evaluate_core, load_core_tasks
from llmstack.evaluate.toy_eval import evaluate_toy
from llmstack.stages.common import StageContext, stage_main
from llmstack.tokenizer import Tokenizer
from llmstack.train import evaluate_loss, sample, token_byte_lengths

SAMPLE_PROMPTS = ["Once upon a time", "The capital of France is", "Q: What is 7 + 5?\nA:"]
SAMPLE_TOKENS = 48


def run(ctx: StageContext) -> dict[str, Any]:
    cfg: BaseEvalConfig = ctx.cfg
    device = pick_device(cfg.device)
    dtype = autocast_dtype(device)
    model, meta = load_model(ctx.inputs["model"], device)
    tok = Tokenizer.load(ctx.inputs["tokenizer"])
    if tok.vocab_size != model.config.vocab_size:
        raise ValueError(f"tokenizer has {tok.vocab_size} tokens but the model expects {model.config.vocab_size}")
    # The bundle first (downloaded once when absent): a bad task fails before minutes of scoring.
    # core_data_dir is in the slice (and recorded in eval.json) whether or not CORE runs: a bundle
    # folder that changes is a different evaluation setup.
    bundle_dir = cfg.core_data_dir
    root = ensure_bundle(bundle_dir) if cfg.core_tasks else None
    core_tasks = load_core_tasks(cfg.core_tasks, root)
    val_path, manifest = validation_file(ctx.inputs["data"])  # the training shards are not read here
    source = manifest["source"]
    seq = model.config.seq_len
    batch = 32 if device.type == "cuda" else 8
    val = evaluate_loss(
        model,
        val_batches([val_path], tok, batch, seq, cfg.bpb_tokens),
        token_byte_lengths(tok),
        device,
        dtype,
    )
    model.eval()  # evaluate_loss leaves the model in train mode
    ctx.print(f"val bpb {val['bpb']:.4f} (loss {val['loss']:.4f})")

    core = evaluate_core(model, tok, core_tasks, cfg.max_per_task)
    for name, r in core.items():
        ctx.print(f"{name:28s} acc {r['accuracy']:.3f} centred {r['centered']:+.3f} (n={r['n']})")

    toy = None
    prompts = list(SAMPLE_PROMPTS)
    if source.get("kind") == "embedded":
        world = build_world(source["seed"], source["n_entities"])
        toy = evaluate_toy(model, tok, world, cfg.toy_questions)
        for check, r in toy.items():
            ctx.print(f"toy {check:16s} acc {r['accuracy']:.3f} (n={r['n']})")
        person = next(e.name for e in world.of_split("test") if e.kind == "person")
        prompts += [f"Q: Where does {person} live?\nA:", f"About {person}\n{person}"]
    samples = sample(model, tok, prompts, SAMPLE_TOKENS, device, dtype)
    model.eval()  # sample leaves the model in train mode

    out = {
        "val/bpb": val["bpb"],
        "val/loss": val["loss"],
        "core": core,
        "core_metric": core_metric(core),
        "core_bundle": str(root) if root else bundle_dir or None,
        "toy": toy,
        "samples": samples,
        "model_meta": meta,
    }
    write_json(ctx.dir / ctx.stage.declared["result"], out)
    if out["core_metric"] is not None:
        ctx.print(f"CORE {out['core_metric']:.4f} over {len(core)} tasks")
    for s in samples:
        ctx.print(f"sample: {s!r}")
    ctx.meta["device"] = f"1x{device.type}"
    ctx.meta["dtype"] = str(dtype or "torch.float32")
    scores = {f"core/{name}": r["centered"] for name, r in core.items()}
    return {"val/bpb": val["bpb"], "core_metric": out["core_metric"], **scores}


if __name__ == "__main__":
    stage_main("base_eval", run)
