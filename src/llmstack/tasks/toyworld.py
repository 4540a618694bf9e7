"""Chat and eval tasks over the embedded toy world (see `llmstack.data.toyworld`).

- `ToyWorldChat`: training conversations (fact Q&A, a few multi-turn chats, word problems solved
  with python tool calls), about "train" entities only.
- `ToyWorldQA` / `ToyWorldMC`: the same fact questions, generative and multiple choice. The
  default split="train" is safe in training mixtures; evaluation passes split="test" to ask
  about entities that only pretraining described.
- `ToyArithmetic`: word problems scored by the final number (`#### <n>`, GSM8K-style).

Each constructor takes (split, size, seed, world_seed, n_entities); (world_seed, n_entities)
must match the data stage's config so the tasks see the world the model was trained on.
"""

from __future__ import annotations

import random
import re

from llmstack.conversation import Conversation
from llmstack.data.toyworld import (
    QUESTIONS,
    STATEMENTS,
    arithmetic_problem,
    build_world,
    entity_fields,
    fact_questions,
    say,
    solution_parts,
)
from llmstack.tasks.base import Task

LETTERS = ("A", "B", "C", "D")
_PREFIXES = ("", "", "", "", "Hi! ", "Quick question: ", "I have a question. ", "Hello. ",
             "Can you help me? ")  # fmt: skip
_SUFFIXES = ("", "", "", "", " Thanks!", " Please answer in one sentence.", " Thank you.")
_LOWER_LEADS = ("Do you know this: ", "Tell me, ", "I was wondering: ")
# "Tell me X's <label>." works for these; the rest read badly as a bare noun phrase.
_TELL_ME = {"home_town": "home town", "job": "job", "favourite_colour": "favourite colour", "age": "age",
            "favourite_food": "favourite food", "mayor": "mayor"}  # fmt: skip
_GREETINGS = (("Hi!", "Hello! What would you like to know?"),
              ("Hello there.", "Hello! How can I help you today?"),
              ("Good morning!", "Good morning! Ask me anything."))  # fmt: skip
_MATH_LEADS = ("", "", "", "Solve this: ", "Can you work this out? ", "A word problem: ")


def _check_split(split: str, allowed: tuple[str, ...], task: str) -> None:
    if split not in allowed:
        raise ValueError(f"{task}: split must be one of {allowed}, got {split!r}")


def _check_size(size: int, task: str) -> None:
    if size < 1:
        raise ValueError(f"{task}: size must be >= 1, got {size}")


def _ask(rng: random.Random, attr: str, fields: dict[str, str]) -> str:
    """A user's way of asking about `attr`: a template question with a varied wrapper."""
    if attr in _TELL_ME and rng.random() < 0.15:
        return f"Tell me {fields['name']}'s {_TELL_ME[attr]}."
    question = say(rng.choice(QUESTIONS[attr]), fields)
    if rng.random() < 0.15:
        question = rng.choice(_LOWER_LEADS) + question[0].lower() + question[1:]
    elif rng.random() < 0.1:
        question = question.lower()
    return rng.choice(_PREFIXES) + question + rng.choice(_SUFFIXES)


class ToyWorldChat(Task):
    """Training conversations about train entities; split="val" draws other samples of them."""

    name = "toyworld_chat"

    def __init__(self, split: str = "train", size: int = 1000, seed: int = 0, world_seed: int = 0,
                 n_entities: int = 48) -> None:  # fmt: skip
        _check_split(split, ("train", "val"), self.name)
        _check_size(size, self.name)
        world = build_world(world_seed, n_entities)
        self.entities = world.of_split("train")
        self.fields = {e.name: entity_fields(world, e) for e in self.entities}
        self.cast = [(e.name, e.gender) for e in self.entities if e.kind == "person"]
        rng = random.Random(f"toyworld-chat-{world_seed}-{n_entities}-{split}-{seed}")
        self.conversations = [self._make(rng) for _ in range(size)]

    def _fact_turns(self, rng: random.Random, entity=None) -> list[dict]:
        entity = entity or rng.choice(self.entities)
        attr = rng.choice(entity.attributes)
        fields = self.fields[entity.name]
        return [
            {"role": "user", "content": _ask(rng, attr, fields)},
            {"role": "assistant", "content": say(rng.choice(STATEMENTS[attr]), fields)},
        ]

    def _make(self, rng: random.Random) -> Conversation:
        r = rng.random()
        if r < 0.55:
            return {"messages": self._fact_turns(rng)}
        if r < 0.7:
            messages: list[dict] = []
            if rng.random() < 0.4:
                hello, reply = rng.choice(_GREETINGS)
                messages += [{"role": "user", "content": hello}, {"role": "assistant", "content": reply}]
            same = rng.choice(self.entities) if rng.random() < 0.5 else None
            for _ in range(rng.randint(2, 3)):
                messages += self._fact_turns(rng, same)
            return {"messages": messages}
        prob = arithmetic_problem(rng, self.cast)
        return {
            "messages": [
                {"role": "user", "content": rng.choice(_MATH_LEADS) + prob["question"]},
                {"role": "assistant", "content": solution_parts(prob["solution"])},
            ]
        }

    def __len__(self) -> int:
        return len(self.conversations)

    def get(self, index: int) -> Conversation:
        return self.conversations[index]


def _mentions(text: str, value: str) -> bool:
    return re.search(r"\b" + re.escape(value) + r"\b", text, re.IGNORECASE) is not None


class _FactQuestions(Task):
    """Shared construction of the QA and MC tasks: one list of fact questions."""

    def __init__(self, split: str = "train", size: int = 1000, seed: int = 0, world_seed: int = 0,
                 n_entities: int = 48) -> None:  # fmt: skip
        _check_split(split, ("train", "test"), self.name)
        _check_size(size, self.name)
        self.questions = fact_questions(build_world(world_seed, n_entities), split, size, seed)

    def __len__(self) -> int:
        return len(self.questions)


class ToyWorldQA(_FactQuestions):
    """Open questions about entities of `split`; correct when the completion names the right
    value and none of the three distractors (so listing every option scores 0)."""

    name = "toyworld_qa"
    eval_type = "generative"

    def get(self, index: int) -> Conversation:
        q = self.questions[index]
        return {
            "messages": [
                {"role": "user", "content": q["question"]},
                {"role": "assistant", "content": q["sentence"]},
            ],
            "answer": q["answer"],
            "choices": list(q["choices"]),
            "entity": q["entity"],
            "attribute": q["attribute"],
        }

    def evaluate(self, conversation: Conversation, completion: str) -> float:
        answer = conversation["answer"]
        others = [c for c in conversation["choices"] if c != answer]
        ok = _mentions(completion, answer) and not any(_mentions(completion, c) for c in others)
        return float(ok)


class ToyWorldMC(_FactQuestions):
    """The same questions as four-way multiple choice, answered with a letter."""

    name = "toyworld_mc"
    eval_type = "categorical"

    def get(self, index: int) -> Conversation:
        q = self.questions[index]
        options = "\n".join(
            f"{letter}. {choice}" for letter, choice in zip(LETTERS, q["choices"], strict=True)
        )
        user = f"{q['question']}\n{options}\nAnswer with the letter of the correct choice."
        letter = LETTERS[q["answer_index"]]
        return {
            "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": letter}],
            "letters": list(LETTERS),
            "answer": letter,
            "entity": q["entity"],
            "attribute": q["attribute"],
        }


_NUMBER = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?")


def extract_final_number(text: str) -> str | None:
    """The number after the last '####' (GSM8K's answer mark), else the last number in `text`;
    commas dropped. None when there is none, or when '####' is followed by no number."""
    if "####" in text:
        match = _NUMBER.search(text.rsplit("####", 1)[1])
        return match.group().replace(",", "") if match else None
    found = _NUMBER.findall(text)
    return found[-1].replace(",", "") if found else None


class ToyArithmetic(Task):
    """Small word problems; the reference answer solves them with python tool calls."""

    name = "toy_arithmetic"
    eval_type = "generative"

    def __init__(self, split: str = "train", size: int = 1000, seed: int = 0, world_seed: int = 0,
                 n_entities: int = 48) -> None:  # fmt: skip
        _check_split(split, ("train", "val", "test"), self.name)
        _check_size(size, self.name)
        world = build_world(world_seed, n_entities)
        # Train names only: the problems state no facts, but chat data never names test people.
        cast = [(e.name, e.gender) for e in world.of_split("train") if e.kind == "person"]
        rng = random.Random(f"toy-arithmetic-{world_seed}-{n_entities}-{split}-{seed}")
        self.problems = [arithmetic_problem(rng, cast) for _ in range(size)]

    def __len__(self) -> int:
        return len(self.problems)

    def get(self, index: int) -> Conversation:
        p = self.problems[index]
        return {
            "messages": [
                {"role": "user", "content": p["question"]},
                {"role": "assistant", "content": solution_parts(p["solution"])},
            ],
            "answer": p["answer"],
        }

    def evaluate(self, conversation: Conversation, completion: str) -> float:
        predicted = extract_final_number(completion)
        if predicted is None:
            return 0.0
        try:
            return float(float(predicted) == float(conversation["answer"]))
        except ValueError:
            return 0.0
