"""Training mixtures: deterministic order, counts per task, epochs/weight/size, early clear failures."""

from __future__ import annotations

import json

import pytest

from llmstack.conversation import validate
from llmstack.tasks import TASKS, make_task
from llmstack.tasks.base import Task
from llmstack.tasks.mixture import build_mixture, validate_mixture

WORDS = ["apple", "banana", "cherry", "kiwi", "mango", "pear", "plum", "grape"]


@pytest.fixture
def chats(tmp_path):
    rows = [
        {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
        for i in range(10)
    ]
    path = tmp_path / "chats.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def entries(chats):
    return [
        {"task": "identity", "size": 40, "weight": 2.0, "name": "Zed"},
        {"task": "letter_count", "size": 30, "epochs": 0.5, "words": WORDS},
        {"task": "chat_jsonl", "path": chats, "epochs": 2.5},
        {"task": "chat_jsonl", "path": chats, "size": 4, "label": "chat_small"},
    ]


def test_counts_follow_epochs_weight_and_size(chats):
    mix = build_mixture(entries(chats), seed=0)
    assert mix.counts() == {"identity": 80, "letter_count": 15, "chat_jsonl": 25, "chat_small": 4}
    assert len(mix) == 124 == sum(mix.counts().values())
    seen = {}
    for i in range(len(mix)):
        label, index = mix.source(i)
        seen.setdefault(label, []).append(index)
        validate(mix[i])
    assert sorted(seen["identity"]) == sorted(list(range(40)) * 2)
    assert sorted(seen["chat_small"]) == [0, 1, 2, 3]  # a 4-conversation seeded subset, once
    chat = sorted(seen["chat_jsonl"])
    assert all(chat.count(j) in (2, 3) for j in range(10)) and len(set(seen["letter_count"])) == 15


def test_mixture_is_deterministic_and_shuffled(chats):
    a, b = build_mixture(entries(chats), seed=7), build_mixture(entries(chats), seed=7)
    order = [a.source(i) for i in range(len(a))]
    assert order == [b.source(i) for i in range(len(b))]
    assert [a[i] for i in range(len(a))] == [b[i] for i in range(len(b))]
    c = build_mixture(entries(chats), seed=8)
    assert order != [c.source(i) for i in range(len(c))] and c.counts() == a.counts()
    labels = [label for label, _ in order[:40]]
    assert len(set(labels)) >= 3  # interleaved, not one task after another


def test_items_are_the_tasks_conversations(chats):
    mix = build_mixture(entries(chats)[:2], seed=1)
    identity = make_task("identity", size=40, name="Zed")
    for i in range(len(mix)):
        label, index = mix.source(i)
        if label == "identity":
            assert mix[i] == identity[index]
    assert mix[-1] == mix[len(mix) - 1]
    with pytest.raises(IndexError):
        mix[len(mix)]


class _Fixed(Task):
    """A task without a `size` option: the mixture applies the cap itself."""

    name = "fixed"

    def __len__(self) -> int:
        return 10

    def get(self, index: int) -> dict:
        return {"messages": [{"role": "user", "content": str(index)}, {"role": "assistant", "content": "ok"}]}


def test_size_cap_for_a_task_without_size_option(monkeypatch):
    monkeypatch.setitem(TASKS, "fixed", _Fixed)
    mix = build_mixture([{"task": "fixed", "size": 3, "epochs": 2}], seed=0)
    assert mix.counts() == {"fixed": 6}
    assert sorted(mix.source(i)[1] for i in range(len(mix))) == [0, 0, 1, 1, 2, 2]


def test_validate_mixture_fails_before_training(chats, tmp_path):
    assert validate_mixture(entries(chats))["identity"] == 80
    missing = str(tmp_path / "gone.jsonl")
    with pytest.raises(
        FileNotFoundError, match=rf"mixture entry 1 \(chat_jsonl\): chat_jsonl: path='{missing}'"
    ):
        validate_mixture([{"task": "identity"}, {"task": "chat_jsonl", "path": missing}])
    with pytest.raises(ValueError, match=r"unknown task 'smoltak'; valid tasks: .*smoltalk"):
        validate_mixture([{"task": "smoltak"}])
    with pytest.raises(ValueError, match=r"mixture entry 0 \(identity\): task 'identity' got unknown option"):
        validate_mixture([{"task": "identity", "nmae": "x"}])
    with pytest.raises(ValueError, match="not both"):
        validate_mixture([{"task": "identity", "epochs": 1, "weight": 2}])
    with pytest.raises(ValueError, match="finite number >= 0"):
        validate_mixture([{"task": "identity", "epochs": -1}])
    with pytest.raises(ValueError, match="label 'identity' is used twice"):
        validate_mixture([{"task": "identity"}, {"task": "identity"}])
    with pytest.raises(ValueError, match="needs a 'task' key"):
        validate_mixture([{"name": "identity"}])
    with pytest.raises(ValueError, match="no entries"):
        validate_mixture([])
