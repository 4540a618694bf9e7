"""Scoring a chat model on tasks: categorical (answer-letter logits) and generative (sampling).

    results = evaluate_tasks(model, tokenizer, {"toyworld_mc": {"split": "test"}}, max_per_task=200)
    results["toyworld_mc"]  # {"accuracy": 0.61, "n": 200, "baseline": 0.25, "centered": 0.48}
    chatcore(results)       # mean centred accuracy over the tasks

Categorical tasks (MMLU, ARC, toy-world multiple choice) are scored from the logits the model puts
on each answer letter right after <|assistant_start|>: no sampling, so small models get a fair,
low-variance score. Generative tasks (GSM8K, HumanEval, spelling, toy-world questions) sample a reply
with the engine (greedy by default, tool calls evaluated) and let the task score the text.
"""

from __future__ import annotations

from typing import Any

import torch
from tqdm import tqdm

from llmstack.device import autocast_context, autocast_dtype
from llmstack.engine import Engine
from llmstack.model import GPT
from llmstack.tasks import make_task
from llmstack.tasks.base import Task
from llmstack.tokenizer import Tokenizer


def reply_text(tok: Tokenizer, tokens: list[int]) -> str:
    """The text of a sampled reply, special tokens (tool-call markers, stop) left out."""
    return tok.decode([t for t in tokens if not tok.is_special(t)])


@torch.no_grad()
def categorical_accuracy(
    model: GPT, tok: Tokenizer, task: Task, n: int, batch_size: int = 16, progress: bool = True
) -> dict[str, float]:
    device = next(model.parameters()).device
    dtype = autocast_dtype(device)
    items = [task[i] for i in range(min(n, len(task)))]
    correct, baseline = 0, 0.0
    for start in tqdm(range(0, len(items), batch_size), desc=task.name, disable=not progress, leave=False):
        chunk = items[start : start + batch_size]
        prompts = [tok.render_for_completion(conv)[-model.config.seq_len :] for conv in chunk]
        width = max(len(p) for p in prompts)
        x = torch.full((len(prompts), width), tok.bos_id, dtype=torch.long, device=device)
        for i, p in enumerate(prompts):  # right padding: causal attention never sees it
            x[i, : len(p)] = torch.tensor(p)
        with autocast_context(device, dtype):
            logits = model(x)
        for i, conv in enumerate(chunk):
            letters = conv["letters"]
            letter_ids = [tok.encode(letter)[0] for letter in letters]
            scores = logits[i, len(prompts[i]) - 1, letter_ids]
            correct += letters[int(scores.argmax())] == conv["answer"]
            baseline += 1 / len(letters)
    count = max(len(items), 1)
    return {"accuracy": correct / count, "n": len(items), "baseline": baseline / count}


def generative_accuracy(
    engine: Engine,
    task: Task,
    n: int,
    max_new_tokens: int = 128,
    temperature: float = 0.0,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    tok = engine.tokenizer
    total, examples = 0.0, []
    count = min(n, len(task))
    for i in tqdm(range(count), desc=task.name, disable=not progress, leave=False):
        conv = task[i]
        prompt = tok.render_for_completion(conv)
        tokens, _ = engine.generate_batch(prompt, 1, max_tokens=max_new_tokens, temperature=temperature, seed=seed + i)
        reply = reply_text(tok, tokens[0])
        score = float(task.evaluate(conv, reply))
        total += score
        if len(examples) < 3:
            examples.append(
                {
                    "prompt": conv["messages"][-2]["content"] if len(conv["messages"]) > 1 else "",
                    "reply": reply,
                    "score": score,
                }
            )
    return {"accuracy": total / max(count, 1), "n": count, "baseline": 0.0, "examples": examples}


def evaluate_tasks(
    model: GPT,
    tok: Tokenizer,
    tasks: dict[str, dict[str, Any]],
    max_per_task: int,
    max_new_tokens: int = 128,
    temperature: float = 0.0,
    progress: bool = True,
) -> dict[str, Any]:
    """{task name: {accuracy, n, baseline, centered[, examples]}} for each task (built with its kwargs)."""
    model.eval()
    engine = Engine(model, tok)
    results: dict[str, Any] = {}
    for name, kwargs in tasks.items():
        task = make_task(name, **(kwargs or {}))
        if task.eval_type == "categorical":
            res = categorical_accuracy(model, tok, task, max_per_task, progress=progress)
        elif task.eval_type == "generative":
            res = generative_accuracy(engine, task, max_per_task, max_new_tokens, temperature, progress=progress)
        else:
            raise ValueError(f"task {name!r} is not an evaluation task")
        res["centered"] = (res["accuracy"] - res["baseline"]) / (1 - res["baseline"])
        results[name] = res
    return results


def chatcore(results: dict[str, Any]) -> float:
    """ChatCORE: the mean centred accuracy over the evaluated tasks (0 = chance, 1 = perfect)."""
    return sum(r["centered"] for r in results.values()) / max(len(results), 1)
