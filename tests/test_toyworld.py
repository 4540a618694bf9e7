"""The embedded toy world: world building, the document stream, fact questions and chat tasks."""

from __future__ import annotations

import itertools
import random
import re

import pytest

from llmstack.conversation import text_of, validate
from llmstack.data.toyworld import (
    arithmetic_problem,
    build_world,
    fact_questions,
    iter_documents,
    solution_parts,
    world_words,
)
from llmstack.data.toyworld_world import VOCABULARY
from llmstack.tasks.toyworld import (
    ToyArithmetic,
    ToyWorldChat,
    ToyWorldMC,
    ToyWorldQA,
    extract_final_number,
)

CALL = re.compile(r"<<([^=<>]+)=([^<>]+)>>")


@pytest.fixture(scope="module")
def world():
    return build_world(0)


@pytest.fixture(scope="module")
def docs(world):
    return list(itertools.islice(iter_documents(world, 0), 400))


def _calc(expr: str) -> int:
    a, op, b = re.fullmatch(r"(\d+)([-+*/])(\d+)", expr).groups()
    a, b = int(a), int(b)
    if op == "/":
        assert a % b == 0, f"{expr} is not an exact division"
    return {"+": a + b, "-": a - b, "*": a * b, "/": a // b}[op]


def _has_word(text: str, word: str) -> bool:
    return re.search(r"\b" + re.escape(word) + r"\b", text) is not None


# ---- the world ---------------------------------------------------------------------------------


def test_world_is_deterministic_in_seed(world):
    assert build_world(0) == world
    other = build_world(1)
    assert other != world
    assert {e.name for e in other.entities} != {e.name for e in world.entities}


def test_world_shape_and_split(world):
    assert len(world.entities) == 48
    names = [e.name for e in world.entities]
    assert len(set(names)) == len(names)
    n_test = len(world.of_split("test"))
    assert 0.2 <= n_test / 48 <= 0.3
    assert {e.kind for e in world.of_split("test")} == {"person", "town"}
    for e in world.people:
        assert e.name[0].isupper() and e.name.lower() not in world_words(world)
        if "sibling" in e.attributes:
            sib = world.entity(e.fact("sibling"))
            assert sib.fact("sibling") == e.name and sib.split == e.split
    for t in world.towns:
        mayor = world.entity(t.fact("mayor"))
        assert mayor.fact("home_town") == t.name and mayor.split == t.split


def test_world_rejects_bad_size():
    with pytest.raises(ValueError, match="n_entities"):
        build_world(0, n_entities=3)


# ---- documents ---------------------------------------------------------------------------------


def test_documents_are_deterministic_and_seeded(world, docs):
    assert list(itertools.islice(iter_documents(build_world(0), 0), 400)) == docs
    assert list(itertools.islice(iter_documents(world, 1), 20)) != docs[:20]
    assert list(itertools.islice(iter_documents(build_world(1), 0), 20)) != docs[:20]


def test_document_lengths_and_kinds(docs):
    assert all(200 <= len(d) <= 2000 for d in docs)
    joined = "\n".join(docs)
    for marker in ("####", "<<", " is spelled ", " times ", "Q", "Facts about", " plus "):
        assert marker in joined, marker


def test_every_test_entity_fact_is_stated_early(world, docs):
    sentences = [s for d in docs for s in re.split(r"(?<=[.!?])\s+|\n", d)]
    for entity in world.of_split("test"):
        about = [s for s in sentences if _has_word(s, entity.name)]
        for attr, value in entity.facts:
            assert any(_has_word(s.lower(), value.lower()) for s in about), (entity.name, attr, value)


def test_sentences_about_one_person_state_only_true_facts(world, docs):
    people = {e.name: e for e in world.people}
    closed = {a: VOCABULARY[a] for a in ("job", "favourite_colour", "pet", "favourite_food", "instrument")}
    skip = ("####", " | ", "letter", "backwards")  # math, tables with several people, spelling
    fact_docs = [d for d in docs if not any(marker in d for marker in skip)]
    checked = 0
    for sentence in (s for d in fact_docs for s in re.split(r"(?<=[.!?])\s+|\n", d)):
        named = [n for n in people if _has_word(sentence, n)]
        if len(named) != 1:
            continue
        for attr, values in closed.items():
            for value in values:
                if _has_word(sentence.lower(), value):
                    checked += 1
                    assert people[named[0]].fact(attr) == value, sentence
    assert checked > 1000


def test_small_world_works_end_to_end():
    world = build_world(7, n_entities=16)
    assert len(world.of_split("test")) >= 2
    docs = list(itertools.islice(iter_documents(world, 3), 300))
    assert all(200 <= len(d) <= 2000 for d in docs)
    assert len(fact_questions(world, "test", 30, seed=0)) == 30
    for conv in ToyWorldChat(size=50, world_seed=7, n_entities=16):
        validate(conv)


def test_document_calculations_are_correct(docs):
    math_docs = [d for d in docs if "####" in d]
    assert len(math_docs) >= 40
    for doc in math_docs:
        for expr, value in CALL.findall(doc):
            assert _calc(expr) == int(value), expr
        for block in doc.split("\n\n"):
            finals = re.findall(r"#### (\d+)", block)
            assert finals == [CALL.findall(block)[-1][1]]


def test_arithmetic_problem_is_consistent():
    rng = random.Random(0)
    for _ in range(300):
        p = arithmetic_problem(rng)
        assert 1 <= len(p["steps"]) <= 2
        for expr, value in p["steps"]:
            assert _calc(expr) == int(value)
        assert p["answer"] == p["steps"][-1][1]
        assert p["solution"].endswith(f"#### {p['answer']}")
        assert 0 <= int(p["answer"]) < 1000
    first = [arithmetic_problem(random.Random(5)) for _ in range(3)]
    assert first == [arithmetic_problem(random.Random(5)) for _ in range(3)]


def test_solution_parts_round_trip():
    rng = random.Random(1)
    for _ in range(50):
        p = arithmetic_problem(rng)
        parts = solution_parts(p["solution"])
        assert [q["text"] for q in parts if q["type"] == "python"] == [e for e, _ in p["steps"]]
        rebuilt = "".join(
            f"<<{q['text']}=" if q["type"] == "python" else q["text"] + ">>" if q["type"] == "python_output"
            else q["text"] for q in parts
        )  # fmt: skip
        assert rebuilt == p["solution"]


def test_world_words(world):
    words = world_words(world)
    assert words == sorted(set(words))
    assert all(w.isalpha() and w.islower() and len(w) >= 2 for w in words)
    assert {"apple", "strawberry", "colour", "baker"} <= set(words)


# ---- fact questions ----------------------------------------------------------------------------


def test_fact_questions_match_the_world(world):
    qs = fact_questions(world, "test", 200, seed=0)
    assert len(qs) == 200
    test_names = {e.name for e in world.of_split("test")}
    pairs = {(e.name, a) for e in world.of_split("test") for a in e.attributes}
    assert {(q["entity"], q["attribute"]) for q in qs} == pairs  # every pair before repeats
    for q in qs:
        assert q["entity"] in test_names
        assert q["answer"] == world.entity(q["entity"]).fact(q["attribute"])
        assert len(set(q["choices"])) == 4 and q["choices"][q["answer_index"]] == q["answer"]
        assert set(q["choices"]) <= set(world.values_of(q["attribute"]))
        assert q["entity"] in q["question"] and q["answer"] in q["sentence"]
    assert fact_questions(world, "test", 50, seed=0) == qs[:50]
    assert fact_questions(world, "test", 50, seed=1) != qs[:50]
    assert len({q["question"] for q in qs}) > len(pairs)  # phrasings vary


# ---- tasks -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [lambda: ToyWorldChat(size=300), lambda: ToyWorldChat(split="val", size=50),
     lambda: ToyWorldQA(size=50), lambda: ToyWorldMC(size=50), lambda: ToyArithmetic(size=50)],
    ids=["chat", "chat-val", "qa", "mc", "arithmetic"],
)  # fmt: skip
def test_tasks_give_valid_conversations(make):
    task = make()
    assert len(task) > 0
    for conv in task:
        validate(conv)
    assert task[0] == task[0] and task[-1] == task[len(task) - 1]


def test_tasks_are_deterministic():
    assert list(ToyWorldChat(size=40)) == list(ToyWorldChat(size=40))
    assert list(ToyWorldChat(size=40)) != list(ToyWorldChat(size=40, seed=1))
    assert list(ToyWorldChat(size=40)) != list(ToyWorldChat(split="val", size=40))
    assert list(ToyArithmetic(split="test", size=20)) != list(ToyArithmetic(split="train", size=20))


def test_chat_never_mentions_held_out_entities(world):
    test_people = [e.name for e in world.people if e.split == "test"]
    test_town_facts = [v for t in world.towns if t.split == "test" for _, v in t.facts if v[0].isupper()]
    chat_names = set()
    for split in ("train", "val"):
        for conv in ToyWorldChat(split=split, size=1500):
            text = " ".join(text_of(m) for m in conv["messages"])
            assert not any(_has_word(text, n) for n in test_people + test_town_facts)
            chat_names.update(e.name for e in world.of_split("train") if _has_word(text, e.name))
    assert len(chat_names) > 0.9 * len(world.of_split("train"))
    kinds = [conv["messages"][-1]["content"] for conv in ToyWorldChat(size=200)]
    assert any(isinstance(c, list) and any(p["type"] == "python" for p in c) for c in kinds)


def test_qa_and_mc_default_to_train_entities(world):
    train = {e.name for e in world.of_split("train")}
    assert {c["entity"] for c in ToyWorldQA(size=100)} <= train
    assert {c["entity"] for c in ToyWorldMC(size=100)} <= train
    test = {e.name for e in world.of_split("test")}
    assert {c["entity"] for c in ToyWorldMC(split="test", size=100)} == test


def test_qa_evaluate():
    task = ToyWorldQA(split="test", size=20)
    for conv in task:
        answer = conv["answer"]
        wrong = next(c for c in conv["choices"] if c != answer)
        assert task.evaluate(conv, conv["messages"][1]["content"]) == 1.0
        assert task.evaluate(conv, f"I think it is {answer.upper()}.") == 1.0
        assert task.evaluate(conv, f"It is {wrong}.") == 0.0
        assert task.evaluate(conv, f"Either {answer} or {wrong}.") == 0.0
        assert task.evaluate(conv, f"It is {answer}xyz.") == 0.0  # whole words only


def test_mc_format():
    qa, mc = ToyWorldQA(split="test", size=10, seed=3), ToyWorldMC(split="test", size=10, seed=3)
    for q, m in zip(qa, mc, strict=True):
        user = m["messages"][0]["content"]
        assert user.startswith(q["messages"][0]["content"])
        assert m["letters"] == ["A", "B", "C", "D"] and m["messages"][1]["content"] == m["answer"]
        assert f"{m['answer']}. {q['answer']}\n" in user


def test_arithmetic_evaluate():
    task = ToyArithmetic(split="test", size=30)
    for conv in task:
        reference = text_of(conv["messages"][1])
        assert task.evaluate(conv, reference) == 1.0
        assert task.evaluate(conv, f"#### {int(conv['answer']) + 1}") == 0.0
        assert task.evaluate(conv, "I do not know.") == 0.0


def test_extract_final_number():
    assert extract_final_number("3 * 4 = <<3*4=12>>12 apples.\n#### 12") == "12"
    assert extract_final_number("#### 1,234 coins") == "1234"
    assert extract_final_number("so 7 - 2 = 5 then 5+10=15.") == "15"
    assert extract_final_number("44-21 gives") == "21"
    assert extract_final_number("It is -3.5 degrees") == "-3.5"
    assert extract_final_number("no digits") is None
    assert extract_final_number("12 then ####") is None


def test_tasks_reject_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        ToyWorldChat(split="test")
    with pytest.raises(ValueError, match="split"):
        ToyWorldQA(split="val")
    with pytest.raises(ValueError, match="size"):
        ToyArithmetic(size=0)
