"""Toy-world fact questions for a base model: what pretraining taught about held-out entities.

    world = build_world(seed=0, n_entities=48)
    evaluate_toy(model, tok, world, n=200)
    # {"fact_mc": {"accuracy", "n", "baseline", "centered"}, "fact_completion": {"accuracy", "n"}}

The questions are about the world's "test" entities: the chat stages never train on them, but the
pretraining corpus states their facts. A base model has seen no chat format, so both checks use the
corpus's own Q/A text ("Q: <question>\nA: <a sentence naming the entity>"):
- fact_mc: the answer sentence is written up to the value ("A: Jelo lives in"), and each of the 4
  choices continues it (" Tifivale."); the choice with the lowest mean loss is the pick, scored by
  the same batched scorer as CORE's multiple-choice tasks.
- fact_completion: greedy decoding after "A:" must name the right value on its first line.
"""

from __future__ import annotations

import re
from collections import defaultdict

import torch
from tqdm import tqdm

from llmstack.data.toyworld import STATEMENTS, World, entity_fields, fact_questions
from llmstack.data.toyworld_facts import article
from llmstack.device import autocast_context, autocast_dtype
from llmstack.evaluate.core_eval import score_examples
from llmstack.tasks.core import centered
from llmstack.tokenizer import Tokenizer

QUESTION_SEED = 0
Q_HEAD, A_HEAD = "Q:", "A:"  # one of the corpus's Q/A styles (toyworld_docs._QA_HEADS)


def question_prompt(question: str) -> str:
    return f"{Q_HEAD} {question}\n{A_HEAD}"


def choice_prompts(world: World, q: dict) -> list[dict]:
    """One {"context", "continuation"} per choice: the first statement template of the question's
    attribute, filled in up to the value, continued by each choice (with its own a/an)."""
    attr = q["attribute"]
    fields = entity_fields(world, world.entity(q["entity"]))
    template = STATEMENTS[attr][0]
    with_article = "{a_" + attr + "}" in template
    slot = "{a_" + attr + "}" if with_article else "{" + attr + "}"
    if slot not in template:
        raise ValueError(f"statement template {template!r} has no slot for {attr!r}")
    head_t, tail_t = template.split(slot, 1)
    head, tail = head_t.format_map(fields), tail_t.format_map(fields)
    prompts = []
    for choice in q["choices"]:
        value = f"{article(choice)} {choice}" if with_article else choice
        if not head:  # the value opens the sentence
            value = value[0].upper() + value[1:]
        # The boundary space goes with the continuation, as tokenizers attach it to the next word.
        context = question_prompt(q["question"]) + " " + head
        prompts.append({"context": context.rstrip(" "), "continuation": " " + value + tail})
    return prompts


def names_value(text: str, value: str) -> bool:
    """`value` appears in `text` as whole words (case-insensitive): "red" is not in "bored"."""
    return re.search(rf"(?<!\w){re.escape(value)}(?!\w)", text, flags=re.IGNORECASE) is not None


@torch.no_grad()
def greedy_first_lines(
    model: torch.nn.Module,
    tok: Tokenizer,
    prompts: list[str],
    max_new_tokens: int = 32,
    batch_size: int = 32,
    progress: bool = True,
) -> list[str]:
    """The first line of the greedy continuation of each prompt (after BOS).

    Prompts of equal token length share a batch: no padding, so every row decodes exactly as it
    would alone."""
    device = next(model.parameters()).device
    dtype = autocast_dtype(device)
    encoded = [[tok.bos_id, *tok.encode(p)] for p in prompts]
    groups: dict[int, list[int]] = defaultdict(list)
    for i, ids in enumerate(encoded):
        groups[len(ids)].append(i)
    out = [""] * len(prompts)
    bar = tqdm(total=len(prompts), desc="toy completion", disable=not progress, leave=False, mininterval=1.0)
    for length, members in sorted(groups.items()):
        room = min(max_new_tokens, model.config.seq_len - length)
        for start in range(0, len(members), batch_size):
            chunk = members[start : start + batch_size]
            x = torch.tensor([encoded[i] for i in chunk], device=device)
            with autocast_context(device, dtype):
                full = model.generate_greedy(x, max(room, 1))
            for row, i in enumerate(chunk):
                text = tok.decode(full[row, length:].tolist())
                out[i] = text.split("\n", 1)[0]
            bar.update(len(chunk))
    bar.close()
    return out


def evaluate_toy(
    model: torch.nn.Module,
    tok: Tokenizer,
    world: World,
    n: int,
    batch_tokens: int = 8192,
    progress: bool = True,
) -> dict[str, dict]:
    """fact_mc and fact_completion accuracy on `n` questions about the world's test entities."""
    model.eval()
    questions = fact_questions(world, "test", n, QUESTION_SEED)
    dtype = autocast_dtype(next(model.parameters()).device)
    examples = [("mc", choice_prompts(world, q), q["answer_index"]) for q in questions]
    correct = score_examples(model, tok, examples, batch_tokens, dtype, "toy mc", progress)
    mc_acc = sum(correct) / max(len(correct), 1)
    baseline = sum(1 / len(q["choices"]) for q in questions) / max(len(questions), 1)
    lines = greedy_first_lines(model, tok, [question_prompt(q["question"]) for q in questions], progress=progress)
    hits = [names_value(line, q["answer"]) for line, q in zip(lines, questions, strict=True)]
    return {
        "fact_mc": {
            "accuracy": mc_acc,
            "n": len(correct),
            "baseline": baseline,
            "centered": centered(mc_acc, baseline),
        },
        "fact_completion": {
            "accuracy": sum(hits) / max(len(hits), 1),
            "n": len(hits),
            "examples": [
                {"question": q["question"], "answer": q["answer"], "completion": line}
                for q, line in zip(questions[:5], lines[:5], strict=True)
            ],
        },
    }
