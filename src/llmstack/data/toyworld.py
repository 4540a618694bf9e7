"""The embedded "toy world": a seeded synthetic corpus that needs no network.

A fixed set of made-up people and towns (`build_world`) is described in an endless stream of
varied English documents (`iter_documents`): encyclopedia entries, fact lists and tables, Q&A
text, short stories, GSM8K-style word problems with calculator annotations, number tables and
spelling notes. The chat tasks in `llmstack.tasks.toyworld` ask about the same world, holding
out the "test" entities so evaluation measures what pretraining taught.

    from llmstack.data.toyworld import build_world, iter_documents
    world = build_world(seed=0)
    docs = iter_documents(world, seed=0)       # next(docs) -> str, 200-2000 characters

Speed: `python bench/toyworld_throughput.py` (pure Python, well above 2 MB/s).
The implementation is split by concern: `toyworld_world` (entities), `toyworld_facts`
(phrasings, questions), `toyworld_stories`, `toyworld_math`, `toyworld_docs` (the stream).
"""

from __future__ import annotations

from llmstack.data.toyworld_docs import iter_documents, spelling_note, world_words
from llmstack.data.toyworld_facts import QUESTIONS, STATEMENTS, entity_fields, fact_questions, say
from llmstack.data.toyworld_math import arithmetic_problem, solution_parts
from llmstack.data.toyworld_world import PERSON_ATTRIBUTES, TOWN_ATTRIBUTES, Entity, World, build_world

__all__ = [
    "PERSON_ATTRIBUTES",
    "QUESTIONS",
    "STATEMENTS",
    "TOWN_ATTRIBUTES",
    "Entity",
    "World",
    "arithmetic_problem",
    "build_world",
    "entity_fields",
    "fact_questions",
    "iter_documents",
    "say",
    "solution_parts",
    "spelling_note",
    "world_words",
]
