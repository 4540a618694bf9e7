"""The toy-world document stream: encyclopedia entries, fact lists, Q&A text, stories, worked
arithmetic, number tables and spelling notes, mixed in fixed proportions.

Documents come in blocks of 16 with a fixed count of each kind, shuffled within the block, and
encyclopedia entries walk through the entities in shuffled rounds of at least one entry per
document; so every fact of every entity is stated within the first 16 * ceil(n_entities / 3)
documents (256 for 48 entities, about 70 in practice), whatever the seed. Everything is built from
precomputed per-entity field dicts and `str.format_map`, fast enough for tens of MB per minute.
"""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Callable, Iterator
from functools import lru_cache

from llmstack.data import toyworld_stories as stories
from llmstack.data.toyworld_facts import QUESTIONS, STATEMENTS, entity_fields, say
from llmstack.data.toyworld_math import (
    BAKED,
    GOODS,
    HOLDERS,
    NUMBER_WORDS,
    THINGS,
    problems_document,
    tables_document,
)
from llmstack.data.toyworld_words import COMMON_WORDS
from llmstack.data.toyworld_world import VOCABULARY, Entity, World

# Kinds per block of 16 documents: facts in many shapes dominate, skills fill the rest.
_BLOCK = (["encyclopedia"] * 3 + ["story"] * 3 + ["facts"] * 2 + ["qa"] * 3 + ["math"] * 3
          + ["tables", "spelling"])  # fmt: skip
_MIN_CHARS, _MAX_CHARS = 200, 2000
_LABELS = {
    "home_town": "Home town", "job": "Job", "favourite_colour": "Favourite colour", "age": "Age",
    "pet": "Pet", "pet_name": "Pet's name", "sibling": "Sibling", "favourite_food": "Favourite food",
    "instrument": "Instrument", "region": "Region", "river": "River", "known_for": "Famous for",
    "mayor": "Mayor",
}  # fmt: skip
_QA_HEADS = (("Q:", "A:"), ("Question:", "Answer:"), ("Q.", "A."))


@lru_cache(maxsize=1)
def _english_words() -> tuple[str, ...]:
    templates = [t for group in (STATEMENTS, QUESTIONS) for ts in group.values() for t in ts]
    for slots in stories.ALL_STORIES:
        templates += [t for options in slots for t in options]
    words = set(COMMON_WORDS)
    for text in templates:
        words.update(w.lower() for w in re.findall(r"[A-Za-z]+", re.sub(r"\{[^}]*\}", " ", text)))
    for values in [*VOCABULARY.values(), THINGS, HOLDERS, GOODS, BAKED]:
        words.update(w for v in values for w in v.split() if w.isalpha())
    return tuple(sorted(w for w in words if len(w) >= 2))


def world_words(world: World) -> list[str]:
    """The sorted English vocabulary of the generator (templates, values, everyday words).
    Made-up names are excluded, so the list is the same for every world."""
    return list(_english_words())


class _Generator:
    """Per-stream state: the rng, precomputed fields, and the encyclopedia round-robin."""

    def __init__(self, world: World, seed: int) -> None:
        self.rng = random.Random(f"toyworld-docs-{world.seed}-{len(world.entities)}-{seed}")
        self.fields = {e.name: entity_fields(world, e) for e in world.entities}
        self.entities = list(world.entities)
        self.people = [e.name for e in world.people]
        self.towns = [e.name for e in world.towns]
        self.cast = [(e.name, e.gender) for e in world.people]
        self.residents = {t: [p for p in self.people if self.fields[p]["home_town"] == t] for t in self.towns}
        self.words = _english_words()
        self.queue: list[Entity] = []

    def assemble(self, make_piece: Callable[[], str], sep: str = "\n\n") -> str:
        """Pieces until a random target length, never past the 2000-character cap."""
        target = self.rng.randint(300, 1500)
        text = ""
        while len(text) < target:
            piece = make_piece()
            joined = text + sep + piece if text else piece
            if len(joined) > _MAX_CHARS and len(text) >= _MIN_CHARS:
                break
            text = joined[:_MAX_CHARS]
        return text

    def statement(self, entity: Entity, attr: str) -> str:
        return say(self.rng.choice(STATEMENTS[attr]), self.fields[entity.name])

    # ---- document kinds: each method returns one document ------------------------------------
    def encyclopedia(self) -> str:
        return self.assemble(self.entry)

    def entry(self) -> str:
        """All facts of the next entity of the shuffled round, in random order and phrasing."""
        if not self.queue:
            self.queue = self.entities[:]
            self.rng.shuffle(self.queue)
        entity = self.queue.pop()
        rng, f, name = self.rng, self.fields[entity.name], entity.name
        sentences = [self.statement(entity, a) for a in entity.attributes]
        rng.shuffle(sentences)
        if entity.kind == "person":
            if rng.random() < 0.5:
                sentences.insert(0, f"{name} is {f['a_job']} from {f['home_town']}, {f['age']} years old.")
            if "mayor_of" in f:
                where = rng.randrange(len(sentences) + 1)
                sentences.insert(where, f"{name} is the mayor of {f['mayor_of']}.")
            title = rng.choice(("{n}", "About {n}", "Entry: {n}", "Who is {n}?"))
        else:
            people = self.residents[name]
            shown = rng.sample(people, min(4, len(people)))
            sentences.append(f"People who live in {name} include {_and_list(shown)}.")
            title = rng.choice(("{n}", "About {n}", "Entry: {n}", "The town of {n}"))
        return title.format(n=name) + "\n" + " ".join(sentences)

    def facts(self) -> str:
        shape = self.rng.randrange(4)
        if shape == 3:
            towns = itertools.cycle(self.rng.sample(self.towns, len(self.towns)))
            return self.assemble(lambda: self.town_roll(next(towns)))
        return self.assemble((self.fact_bullets, self.attribute_list, self.people_table)[shape])

    def fact_bullets(self) -> str:
        e = self.rng.choice(self.entities)
        attrs = self.rng.sample(e.attributes, self.rng.randint(3, len(e.attributes)))
        return f"Facts about {e.name}:\n" + "\n".join("- " + self.statement(e, a) for a in attrs)

    def attribute_list(self) -> str:
        """One attribute across several entities of the same kind."""
        e0 = self.rng.choice(self.entities)
        attr = self.rng.choice(e0.attributes)
        group = [e.name for e in self.entities if e.kind == e0.kind and attr in e.attributes]
        sep = self.rng.choice((": ", " - ", " | "))
        chosen = self.rng.sample(group, min(len(group), self.rng.randint(4, 10)))
        return f"{_LABELS[attr]} ({e0.kind}s):\n" + "\n".join(
            f"{n}{sep}{self.fields[n][attr]}" for n in chosen
        )

    def people_table(self) -> str:
        cols = self.rng.sample(("home_town", "job", "favourite_colour", "age", "pet", "instrument"), 3)
        rows = [" | ".join(["Name"] + [_LABELS[c] for c in cols])]
        for name in self.rng.sample(self.people, min(len(self.people), self.rng.randint(4, 8))):
            rows.append(" | ".join([name] + [self.fields[name][c] for c in cols]))
        return "\n".join(rows)

    def town_roll(self, town: str) -> str:
        rows = [
            f"- {p}, {self.fields[p]['a_job']}, age {self.fields[p]['age']}" for p in self.residents[town]
        ]
        return f"People of {town} (mayor: {self.fields[town]['mayor']}):\n" + "\n".join(rows)

    def qa(self) -> str:
        q_head, a_head = self.rng.choice(_QA_HEADS)

        def pair() -> str:
            e = self.rng.choice(self.entities)
            attr = self.rng.choice(e.attributes)
            question = say(self.rng.choice(QUESTIONS[attr]), self.fields[e.name])
            return f"{q_head} {question}\n{a_head} {self.statement(e, attr)}"

        return self.assemble(pair, sep="\n\n" if self.rng.random() < 0.5 else "\n")

    def story(self) -> str:
        rng = self.rng
        return self.assemble(lambda: stories.story(rng, self.fields, self.residents, rng.choice(self.people)))

    def math(self) -> str:
        return problems_document(self.rng, self.cast, self.rng.randint(300, 1500))

    def tables(self) -> str:
        return tables_document(self.rng, self.rng.randint(300, 1500))

    def spelling(self) -> str:
        return self.assemble(lambda: spelling_note(self.rng, self.rng.choice(self.words)), sep="\n")


def _and_list(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _letters(n: int, letter: str) -> str:
    return f"{n} '{letter}'" if n == 1 else f"{n} '{letter}'s"


def spelling_note(rng: random.Random, word: str) -> str:
    """One sentence or two about the letters of `word`, spelled out letter by letter."""
    spelled = "-".join(word)
    kind = rng.randrange(5)
    if kind == 0:
        letter = rng.choice(word)
        return f"The word '{word}' is spelled {spelled}. It has {_letters(word.count(letter), letter)}."
    if kind == 1:
        letter = rng.choice(word) if rng.random() < 0.8 else rng.choice("abcdefghijklmnopqrstuvwxyz")
        n = word.count(letter)
        return (f"How many '{letter}'s are in '{word}'? Spell it: {spelled}. "
                f"There {'is' if n == 1 else 'are'} {_letters(n, letter)} in '{word}'.")  # fmt: skip
    if kind == 2:
        return f"'{word}' has {len(word)} letters: {spelled}. That is {NUMBER_WORDS[len(word)]} letters."
    if kind == 3:
        return f"The first letter of '{word}' is '{word[0]}' and the last letter is '{word[-1]}'."
    return f"'{word}' spelled backwards is '{word[::-1]}' ({'-'.join(word[::-1])})."


def iter_documents(world: World, seed: int) -> Iterator[str]:
    """An endless, deterministic stream of documents (200-2000 characters each)."""
    gen = _Generator(world, seed)
    makers = {kind: getattr(gen, kind) for kind in set(_BLOCK)}
    while True:
        block = list(_BLOCK)
        gen.rng.shuffle(block)
        for kind in block:
            yield makers[kind]()
