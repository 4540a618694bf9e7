"""Training conversations from files: chat JSONL, prompt/response pairs, self-instruct seeds, SmolTalk.

    ChatJSONL(path="my_chats.jsonl")                                   # {"messages": [...]} rows
    ChatJSONL(path="../shared/data/sft/dolly_hhrlhf_train_small.jsonl")  # prompt/response, auto-detected
    SmolTalk(split="train", size=50_000)                               # hub HuggingFaceTB/smol-smoltalk

Row formats (`format="auto"` picks one per row by its keys):
- "messages": {"messages": [{"role", "content"}, ...]} (optional leading system message);
- "prompt_response": {"prompt", "response"}; an Alpaca template ("### Instruction: ... ### Response:")
  is stripped to the instruction (plus "### Input:"), and an HH-RLHF transcript
  ("Human: ... Assistant: ...") becomes alternating turns;
- "self_instruct": {"instruction", "instances": [{"input", "output"}]}, one conversation per instance.
Conversations that break `conversation.validate`, do not end with the assistant, or have an empty
message are skipped and counted (`skipped`, `skip_reasons`), never silently trained on.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from llmstack.conversation import Conversation, validate
from llmstack.tasks import hub_file, local_path, read_jsonl, seeded_subset
from llmstack.tasks.base import Task

FORMATS = ("auto", "messages", "prompt_response", "self_instruct")
SMOLTALK_REPO = "HuggingFaceTB/smol-smoltalk"
SMOLTALK_FILES = {
    "train": [f"data/train-{i:05d}-of-00004.parquet" for i in range(4)],
    "test": ["data/test-00000-of-00001.parquet"],
}
_ALPACA = re.compile(
    r"### Instruction:\s*\n(.*?)\n\s*(?:### Input:\s*\n(.*?)\n\s*)?### Response:\s*$", re.DOTALL
)
_HH_TURN = re.compile(r"(?:^|\n+)(Human|Assistant):[ \t]*")


def detect_format(row: dict) -> str:
    if "messages" in row:
        return "messages"
    if "prompt" in row and "response" in row:
        return "prompt_response"
    if "instruction" in row and "instances" in row:
        return "self_instruct"
    return "unknown"


def _prompt_turns(prompt: str) -> list[dict]:
    """The user/assistant turns that precede the response in a prompt/response row."""
    match = _ALPACA.search(prompt)
    text = prompt.strip()
    if match:
        instruction, extra = match.group(1).strip(), (match.group(2) or "").strip()
        text = f"{instruction}\n\n{extra}" if extra else instruction
    if not _HH_TURN.match(text):
        return [{"role": "user", "content": text}]
    pieces = _HH_TURN.split(text)[1:]  # [speaker, text, speaker, text, ...]
    turns = [
        {"role": "user" if who == "Human" else "assistant", "content": said.strip()}
        for who, said in zip(pieces[::2], pieces[1::2], strict=True)
    ]
    if turns and turns[-1]["role"] == "assistant" and not turns[-1]["content"]:
        turns.pop()  # the transcript ends with an empty "Assistant:" cue for the response
    return turns


def row_to_conversations(row: dict, fmt: str = "auto") -> list[Conversation]:
    """The conversations in one row (self-instruct rows may hold several); ValueError if unreadable."""
    fmt = detect_format(row) if fmt == "auto" else fmt
    if fmt == "messages":
        messages = row.get("messages")
        if not isinstance(messages, list):
            raise ValueError("'messages' is not a list")
        return [{"messages": [{"role": m.get("role"), "content": m.get("content")} for m in messages]}]
    if fmt == "prompt_response":
        turns = _prompt_turns(str(row["prompt"]))
        return [{"messages": turns + [{"role": "assistant", "content": str(row["response"]).strip()}]}]
    if fmt == "self_instruct":
        convs = []
        for inst in row["instances"]:
            user = row["instruction"].strip()
            if inst.get("input", "").strip():
                user += "\n\n" + inst["input"].strip()
            convs.append(
                {
                    "messages": [
                        {"role": "user", "content": user},
                        {"role": "assistant", "content": inst["output"].strip()},
                    ]
                }
            )
        return convs
    raise ValueError(f"row with keys {sorted(row)} matches no known format ({', '.join(FORMATS[1:])})")


def check_trainable(conversation: Conversation) -> None:
    """validate() plus what training needs: ends with the assistant, no empty message."""
    validate(conversation)
    messages = conversation["messages"]
    if messages[-1]["role"] != "assistant":
        raise ValueError("conversation does not end with an assistant message")
    for m in messages:
        content = m["content"]
        empty = (
            not content.strip() if isinstance(content, str) else not any(p["text"].strip() for p in content)
        )
        if empty:
            raise ValueError(f"empty {m['role']} message")


class _ArrowConversations:
    """Conversations kept in Arrow memory (a list column of structs) and converted on access."""

    def __init__(self, column, keep: list[int]):
        self.column, self.keep = column, keep

    def __len__(self) -> int:
        return len(self.keep)

    def __getitem__(self, i: int) -> Conversation:
        messages = self.column[self.keep[i]].as_py()
        return {"messages": [{"role": m["role"], "content": m["content"]} for m in messages]}


class ChatJSONL(Task):
    name = "chat_jsonl"

    def __init__(
        self,
        path: str = "",
        split: str = "train",
        format: str = "auto",
        size: int | None = None,
        seed: int = 0,
    ):
        if format not in FORMATS:
            raise ValueError(f"{self.name}: unknown format {format!r}; valid: {', '.join(FORMATS)}")
        self.split, self.format = split, format
        self.skip_reasons: Counter[str] = Counter()
        if path:
            convs = self._read_local(local_path(self.name, path))
        else:
            convs = self._read_hub(size)
        self.conversations = convs
        self.order = seeded_subset(len(convs), size, seed)

    @property
    def skipped(self) -> int:
        return sum(self.skip_reasons.values())

    def _read_hub(self, size: int | None):
        raise ValueError(
            f"{self.name}: path is empty; give a .jsonl/.parquet file of conversations (or use task smoltalk)"
        )

    def _keep(self, conversation: Conversation) -> bool:
        try:
            check_trainable(conversation)
        except (ValueError, TypeError, KeyError, AttributeError) as e:  # wrong types too: skip, count
            # numbers and quoted details vary per row; the counted reason keeps only its kind
            self.skip_reasons[re.sub(r"\d+", "N", str(e)).split(":")[0][:80]] += 1
            return False
        return True

    def _read_local(self, file: Path) -> list[Conversation] | _ArrowConversations:
        if file.is_dir():
            file = local_path(self.name, file / f"{self.split}.jsonl")
        if file.suffix == ".parquet":
            return self._read_parquet([file], size=None)
        convs = []
        for row in read_jsonl(file):
            try:
                found = row_to_conversations(row, self.format)
            except (ValueError, KeyError, TypeError, AttributeError) as e:
                self.skip_reasons[f"unreadable row ({type(e).__name__})"] += 1
                continue
            convs.extend(c for c in found if self._keep(c))
        return convs

    def _read_parquet(self, files: Iterable[Path], size: int | None) -> _ArrowConversations:
        """Read `messages` columns file by file, stopping once `size` valid conversations are in."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        chunks, keep, offset = [], [], 0
        for file in files:
            column = pq.read_table(file, columns=["messages"]).column("messages")
            for chunk in column.chunks:  # chunk by chunk: a whole shard as Python objects is GBs
                for i, messages in enumerate(chunk.to_pylist()):
                    if self._keep({"messages": messages}):
                        keep.append(offset + i)
                chunks.append(chunk)
                offset += len(chunk)
            if size is not None and len(keep) >= size:
                break
        return _ArrowConversations(pa.chunked_array(chunks) if chunks else [], keep)

    def __len__(self) -> int:
        return len(self.order)

    def get(self, index: int) -> Conversation:
        return self.conversations[self.order[index]]


class SmolTalk(ChatJSONL):
    """HuggingFaceTB/smol-smoltalk (~460K everyday conversations in train) or a local copy.

    With `size`, hub shards are read in order only until `size` valid conversations are available,
    so a small mixture does not download the whole dataset; the seeded subset is drawn from those."""

    name = "smoltalk"

    def __init__(self, split: str = "train", path: str = "", size: int | None = None, seed: int = 0):
        super().__init__(path=path, split=split, format="messages", size=size, seed=seed)

    def _read_hub(self, size: int | None) -> _ArrowConversations:
        if self.split not in SMOLTALK_FILES:
            raise ValueError(f"smoltalk: unknown split {self.split!r}; valid: {', '.join(SMOLTALK_FILES)}")
        files = (hub_file(SMOLTALK_REPO, name) for name in SMOLTALK_FILES[self.split])
        return self._read_parquet(files, size)
