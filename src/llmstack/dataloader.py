"""Token streams for training: pretraining text and rendered conversations.

Shape legend: B = sequences per micro-batch, T = sequence length.

Every loader is an iterator of `(x, y)` LongTensor pairs of shape (B, T) (y = next tokens, -1 where
no loss is taken), is deterministic, and has `state_dict()` / `load_state_dict()` so a resumed run
continues on exactly the next batch.

Sharding: all ranks walk the same global stream and rank r of W takes rows r*B..(r+1)*B of each
global batch of W*B rows. The rows of an optimizer step are therefore the same whatever the
process count and micro-batch split: 2 processes x batch 4 train exactly like 1 process x batch 8.
"""

from __future__ import annotations

import queue
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import torch
from tqdm import tqdm

from llmstack.tokenizer import Tokenizer


def row_groups(paths: list[Path]) -> list[tuple[int, int]]:
    """(file index, row group index) of every row group, in file order."""
    return [(f, g) for f, path in enumerate(paths) for g in range(pq.ParquetFile(path).num_row_groups)]


class TextLoader:
    """Packs BOS-prefixed documents of parquet shards into (B, T) next-token batches.

    Row groups are read in order, wrapping around into new epochs. A background thread tokenizes
    the next row groups while the model trains. State = (next row group to consume, the tokens
    left over from the current one)."""

    def __init__(
        self,
        paths: list[Path],
        tokenizer: Tokenizer,
        batch_size: int,
        seq_len: int,
        rank: int = 0,
        world_size: int = 1,
        prefetch: int = 2,
        threads: int = 2,
    ):
        self.paths, self.tok = [Path(p) for p in paths], tokenizer
        self.B, self.T = batch_size, seq_len
        self.groups = row_groups(self.paths)
        if not self.groups:
            raise ValueError("TextLoader: the data shards hold no rows")
        self.rank, self.world = rank, world_size
        self.prefetch, self.threads = prefetch, threads
        self.next_group = 0  # row groups consumed so far (over all epochs)
        self.buffer: list[int] = []
        self._queue: queue.Queue | None = None

    # -- background tokenization -----------------------------------------------------------
    def _tokenize(self, counter: int) -> list[int]:
        f, g = self.groups[counter % len(self.groups)]
        texts = pq.ParquetFile(self.paths[f]).read_row_group(g, columns=["text"]).column("text").to_pylist()
        out: list[int] = []
        for ids in self.tok.encode_batch(texts, num_threads=self.threads):
            out.append(self.tok.bos_id)
            out.extend(ids)
        return out

    def _producer(self, start: int, q: queue.Queue, stop: threading.Event) -> None:
        counter = start
        while not stop.is_set():
            item = (counter, self._tokenize(counter))
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            counter += 1

    def _start(self) -> None:
        self._stop = threading.Event()
        self._queue = queue.Queue(maxsize=self.prefetch)
        self._thread = threading.Thread(
            target=self._producer, args=(self.next_group, self._queue, self._stop), daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        if self._queue is not None:
            self._stop.set()
            self._thread.join(timeout=5)
            self._queue = None

    # -- iteration -------------------------------------------------------------------------
    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        rows = self.world * self.B
        need = rows * self.T + 1
        while len(self.buffer) < need:
            if self._queue is None:
                self._start()
            counter, tokens = self._queue.get()
            assert counter == self.next_group, "row groups arrived out of order"
            self.buffer.extend(tokens)
            self.next_group += 1
        mine = slice(self.rank * self.B * self.T, (self.rank + 1) * self.B * self.T + 1)
        chunk = torch.tensor(self.buffer[mine], dtype=torch.long)
        # The last token of a batch is the first input of the next: no token loses its target.
        del self.buffer[: need - 1]
        return chunk[:-1].view(self.B, self.T), chunk[1:].view(self.B, self.T)

    def state_dict(self) -> dict[str, Any]:
        return {"next_group": self.next_group, "buffer": torch.tensor(self.buffer, dtype=torch.int32)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.close()
        self.next_group = int(state["next_group"])
        self.buffer = state["buffer"].tolist()


def val_batches(
    paths: list[Path],
    tokenizer: Tokenizer,
    batch_size: int,
    seq_len: int,
    max_tokens: int,
    rank: int = 0,
    world_size: int = 1,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """A fixed validation set: this rank's share of the first `max_tokens` tokens, in order. A set
    smaller than that wraps around (counted twice); rank 0 says so once per process."""
    loader = TextLoader(paths, tokenizer, batch_size, seq_len, rank, world_size, prefetch=1)
    steps = max(1, max_tokens // (batch_size * seq_len * world_size))
    try:
        for _ in range(steps):
            batch = next(loader)
            if loader.next_group > len(loader.groups) and rank == 0:  # a row group read a second time
                _warn_small_val(loader, steps * batch_size * seq_len * world_size)
            yield batch
    finally:
        loader.close()


_WARNED: set[tuple[str, ...]] = set()


def _warn_small_val(loader: TextLoader, needed: int) -> None:
    key = tuple(map(str, loader.paths))
    if key in _WARNED:
        return
    _WARNED.add(key)
    # The set is smaller than `needed` tokens, so counting it costs less than the evaluation does.
    held = sum(len(loader._tokenize(i)) for i in range(len(loader.groups)))
    names = ", ".join(key)
    # tqdm.write: a line of its own even while a training progress bar is drawn on stderr.
    tqdm.write(
        f"warning: the validation set ({names}) holds {held:,} tokens but each evaluation reads {needed:,}: "
        f"it repeats {needed / max(held, 1):.1f}x; add validation text or lower the eval token budget "
        f"(pretrain.eval_tokens, base_eval.bpb_tokens)",
        file=sys.stderr,
    )


class ConversationLoader:
    """Rendered conversations of a mixture as (B, T) batches, loss only where the mask is 1.

    packed=True (midtraining): conversations are concatenated into full rows of T tokens.
    packed=False (SFT): one conversation per row, padded to the longest row of the batch.
    The mixture repeats once exhausted."""

    def __init__(
        self,
        mixture,
        tokenizer: Tokenizer,
        batch_size: int,
        seq_len: int,
        packed: bool,
        rank: int = 0,
        world_size: int = 1,
    ):
        if len(mixture) == 0:
            raise ValueError("ConversationLoader: the mixture holds no conversations")
        self.mixture, self.tok = mixture, tokenizer
        self.B, self.T, self.packed = batch_size, seq_len, packed
        self.rank, self.world = rank, world_size
        self.next_index = 0
        self.ids: list[int] = []
        self.targets: list[int] = []

    def _render(self) -> tuple[list[int], list[int]]:
        conv = self.mixture[self.next_index % len(self.mixture)]
        self.next_index += 1
        ids, mask = self.tok.render_conversation(conv, max_tokens=self.T + 1)
        # Target of position i is token i+1, learned only where the mask of token i+1 is 1.
        return ids[:-1], [t if m else -1 for t, m in zip(ids[1:], mask[1:], strict=True)]

    def __iter__(self):
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.packed:
            mine, need = self.rank * self.B * self.T, self.world * self.B * self.T
            while len(self.ids) < need:
                x, y = self._render()
                self.ids.extend(x)
                self.targets.extend(y)
            x, y = self.ids[mine : mine + self.B * self.T], self.targets[mine : mine + self.B * self.T]
            del self.ids[:need], self.targets[:need]
            return (
                torch.tensor(x, dtype=torch.long).view(self.B, self.T),
                torch.tensor(y, dtype=torch.long).view(self.B, self.T),
            )
        rows = [self._render() for _ in range(self.world * self.B)][
            self.rank * self.B : (self.rank + 1) * self.B
        ]
        width = max(len(x) for x, _ in rows)
        x = torch.full((self.B, width), self.tok.bos_id, dtype=torch.long)
        y = torch.full((self.B, width), -1, dtype=torch.long)
        for i, (xi, yi) in enumerate(rows):
            x[i, : len(xi)] = torch.tensor(xi)
            y[i, : len(yi)] = torch.tensor(yi)
        return x, y

    def state_dict(self) -> dict[str, Any]:
        return {
            "next_index": self.next_index,
            "ids": torch.tensor(self.ids, dtype=torch.int32),
            "targets": torch.tensor(self.targets, dtype=torch.int32),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.next_index = int(state["next_index"])
        self.ids, self.targets = state["ids"].tolist(), state["targets"].tolist()

    def close(self) -> None:
        pass
