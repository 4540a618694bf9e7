"""Throughput of the embedded toy-world document generator (pure Python, one core).

    python bench/toyworld_throughput.py [--mb 20] [--n-entities 48] [--seed 0]

Prints MB/s of generated text, documents per second and the document length range.
"""

from __future__ import annotations

import argparse
import time

from llmstack.data.toyworld import build_world, iter_documents


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=20.0, help="megabytes of text to generate")
    parser.add_argument("--n-entities", type=int, default=48)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    start = time.perf_counter()
    world = build_world(args.seed, args.n_entities)
    built = time.perf_counter()
    total, count, shortest, longest = 0, 0, 10**9, 0
    for doc in iter_documents(world, args.seed):
        n = len(doc.encode())
        total, count = total + n, count + 1
        shortest, longest = min(shortest, n), max(longest, n)
        if total >= args.mb * 1e6:
            break
    elapsed = time.perf_counter() - built
    print(f"world: {len(world.entities)} entities built in {built - start:.3f} s")
    print(f"text: {total / 1e6:.1f} MB in {count} documents, {elapsed:.2f} s")
    print(f"throughput: {total / 1e6 / elapsed:.2f} MB/s, {count / elapsed:.0f} docs/s")
    print(f"document bytes: min {shortest}, mean {total / count:.0f}, max {longest}")


if __name__ == "__main__":
    main()
