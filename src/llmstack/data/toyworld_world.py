"""The toy world: a seeded, fixed set of fictional people and towns with made-up names.

Names are pronounceable syllable combinations that are not English words, so a model can only
know a fact such as "Belkaro lives in Dunamere" from the generated corpus. About a quarter of
the entities are marked `split="test"`: their facts are in every pretraining corpus but never in
chat training conversations, so chat evaluation on them measures knowledge the model picked up in
pretraining. Linked entities share a split (siblings; a town and its mayor) so a train
conversation never names a held-out person.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cached_property

from llmstack.data.toyworld_words import COMMON_WORDS

# Closed value sets. Multi-word values and plurals are fine; a value must not be a whole word
# inside another value of the same attribute (the QA scorer matches whole words).
JOBS = (
    "baker", "farmer", "teacher", "painter", "fisher", "doctor", "carpenter", "tailor", "sailor",
    "librarian", "potter", "gardener", "miner", "cook", "weaver", "blacksmith", "builder", "nurse",
    "shepherd", "engineer", "inventor", "astronomer",
)  # fmt: skip
COLOURS = ("red", "blue", "green", "yellow", "purple", "orange", "pink", "brown", "grey", "white",
           "black", "silver")  # fmt: skip
FOODS = ("soup", "bread", "cheese", "honey", "pears", "rice", "plums", "noodles", "carrots",
         "pancakes", "berries", "porridge", "apples", "dumplings")  # fmt: skip
PETS = ("cat", "dog", "rabbit", "parrot", "goat", "tortoise", "hamster", "owl", "pony", "goldfish",
        "lizard", "duck", "hedgehog", "ferret")  # fmt: skip
INSTRUMENTS = ("flute", "drum", "fiddle", "harp", "horn", "lute", "piano", "trumpet", "guitar",
               "banjo", "cello", "accordion")  # fmt: skip
REGIONS = ("north", "south", "east", "west", "hill country", "lake country", "high moors",
           "river delta")  # fmt: skip
KNOWN_FOR = ("clocks", "kites", "bridges", "glass", "wool", "lanterns", "boats", "pottery", "bells",
             "carpets", "candles", "windmills")  # fmt: skip
AGES = tuple(str(a) for a in range(18, 76))

PERSON_ATTRIBUTES = ("home_town", "job", "favourite_colour", "age", "pet", "pet_name", "sibling",
                     "favourite_food", "instrument")  # fmt: skip
TOWN_ATTRIBUTES = ("region", "river", "known_for", "mayor")

# Attributes whose values come from a fixed vocabulary (the rest are names from the world).
VOCABULARY = {
    "job": JOBS, "favourite_colour": COLOURS, "age": AGES, "pet": PETS, "favourite_food": FOODS,
    "instrument": INSTRUMENTS, "region": REGIONS, "known_for": KNOWN_FOR,
}  # fmt: skip

_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "gr",
           "kr", "tr", "th", "sh", "j")  # fmt: skip
_VOWELS = ("a", "e", "i", "o", "u", "a", "e", "i", "o", "a", "ai", "ou")
# No final "e": it makes English-looking words (a consonant plus silent e, as in "grade").
_FINAL_VOWELS = ("a", "i", "o", "u", "a", "i", "o", "ai")
_CODAS = ("", "", "", "n", "l", "r", "s", "k")
_PET_ENDINGS = ("", "", "", "n", "s")
_RIVER_ENDINGS = ("n", "l", "r", "th", "sh")
_TOWN_SUFFIXES = ("vale", "ford", "mere", "wick", "holm", "by", "stead", "brook", "moor", "dell")
_TEST_FRACTION = 0.25


@dataclass(frozen=True)
class Entity:
    """One person or town. `facts` holds (attribute, value) pairs in a fixed attribute order."""

    name: str
    kind: str  # "person" or "town"
    split: str  # "train" or "test"
    facts: tuple[tuple[str, str], ...]
    gender: str = ""  # "f" or "m" for people (pronouns, brother/sister); "" for towns

    def fact(self, attribute: str) -> str:
        for key, value in self.facts:
            if key == attribute:
                return value
        raise KeyError(f"{self.name} has no attribute {attribute!r}")

    @property
    def attributes(self) -> tuple[str, ...]:
        return tuple(key for key, _ in self.facts)


@dataclass(frozen=True)
class World:
    """All entities of one seed: people first, then towns, each group sorted by name."""

    seed: int
    entities: tuple[Entity, ...]

    @property
    def people(self) -> tuple[Entity, ...]:
        return tuple(e for e in self.entities if e.kind == "person")

    @property
    def towns(self) -> tuple[Entity, ...]:
        return tuple(e for e in self.entities if e.kind == "town")

    @cached_property
    def by_name(self) -> dict[str, Entity]:
        """Name -> entity (cached_property writes the instance dict, so it works when frozen)."""
        return {e.name: e for e in self.entities}

    def entity(self, name: str) -> Entity:
        try:
            return self.by_name[name]
        except KeyError:
            raise KeyError(f"no entity named {name!r} in this world") from None

    def of_split(self, split: str) -> tuple[Entity, ...]:
        if split not in ("train", "test"):
            raise ValueError(f"entity split must be 'train' or 'test', got {split!r}")
        return tuple(e for e in self.entities if e.split == split)

    def values_of(self, attribute: str) -> tuple[str, ...]:
        """Every value `attribute` can take in this world (the distractor pool for questions)."""
        if attribute in VOCABULARY:
            return VOCABULARY[attribute]
        if attribute in ("sibling", "mayor"):
            return tuple(e.name for e in self.people)
        if attribute == "home_town":
            return tuple(e.name for e in self.towns)
        return tuple(sorted({e.fact(attribute) for e in self.entities if attribute in e.attributes}))


def _pronounceable(word: str) -> bool:
    """No doubled vowel letter and no run of three vowels ("Lougroo", "Brainaio" read badly)."""
    run = 0
    for i, ch in enumerate(word):
        if ch in "aeiouy" and i > 0:
            run = run + 1 if word[i - 1] in "aeiou" else 0
            if run >= 2 or ch == word[i - 1]:
                return False
        elif ch not in "aeiou":
            run = 0
    return True


def _made_up_name(rng: random.Random, syllables: int, ending: tuple[str, ...], taken: set[str]) -> str:
    """A capitalised name of `syllables` consonant-vowel syllables plus one of `ending`."""
    while True:
        word = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables - 1))
        word += rng.choice(_ONSETS) + rng.choice(_FINAL_VOWELS) + rng.choice(ending)
        if 4 <= len(word) <= 9 and word not in taken and word not in _ENGLISH and _pronounceable(word):
            taken.add(word)
            return word.capitalize()


_ENGLISH = frozenset(COMMON_WORDS) | frozenset(
    w for values in VOCABULARY.values() for v in values for w in v.split()
)


def build_world(seed: int, n_entities: int = 48) -> World:
    """Build the world for `seed`: about 1/8 towns (at least 4), the rest people."""
    if not 16 <= n_entities <= 4000:
        raise ValueError(f"n_entities must be between 16 and 4000, got {n_entities}")
    rng = random.Random(f"toyworld-world-{seed}")
    n_towns = max(4, n_entities // 8)
    n_people = n_entities - n_towns
    taken: set[str] = set()
    people = [_made_up_name(rng, rng.choice((2, 2, 3)), _CODAS, taken) for _ in range(n_people)]
    towns = [_made_up_name(rng, 2, _TOWN_SUFFIXES, taken) for _ in range(n_towns)]
    genders = {p: rng.choice("fm") for p in people}

    # Siblings come in pairs that share a split; an odd person out has no sibling (train).
    order = people[:]
    rng.shuffle(order)
    pairs = [(order[i], order[i + 1]) for i in range(0, n_people - 1, 2)]
    sibling = {a: b for a, b in pairs} | {b: a for a, b in pairs}
    n_test_pairs = max(1, int(len(pairs) * _TEST_FRACTION + 0.5))
    split = {p: "train" for p in people}
    for a, b in pairs[:n_test_pairs]:
        split[a] = split[b] = "test"
    town_order = towns[:]
    rng.shuffle(town_order)
    n_test_towns = max(1, int(n_towns * _TEST_FRACTION + 0.5))
    split |= {t: ("test" if i < n_test_towns else "train") for i, t in enumerate(town_order)}

    # Each town's mayor is a person of the town's split who lives there; others live anywhere.
    # Both splits always have more people than towns (>= 2 test people per test town), so a
    # candidate exists.
    home: dict[str, str] = {}
    mayor: dict[str, str] = {}
    for town in towns:
        mayor[town] = next(p for p in order if split[p] == split[town] and p not in home)
        home[mayor[town]] = town
    for p in people:
        home.setdefault(p, rng.choice(towns))

    entities = []
    for p in people:
        facts = {
            "home_town": home[p],
            "job": rng.choice(JOBS),
            "favourite_colour": rng.choice(COLOURS),
            "age": rng.choice(AGES),
            "pet": rng.choice(PETS),
            "pet_name": _made_up_name(rng, 2, _PET_ENDINGS, taken),
            "sibling": sibling.get(p),
            "favourite_food": rng.choice(FOODS),
            "instrument": rng.choice(INSTRUMENTS),
        }
        known = tuple((k, facts[k]) for k in PERSON_ATTRIBUTES if facts[k] is not None)
        entities.append(Entity(p, "person", split[p], known, genders[p]))
    rivers = [_made_up_name(rng, 2, _RIVER_ENDINGS, taken) for _ in towns]
    for town, river in zip(towns, rivers, strict=True):
        facts = {"region": rng.choice(REGIONS), "river": river,
                 "known_for": rng.choice(KNOWN_FOR), "mayor": mayor[town]}  # fmt: skip
        entities.append(Entity(town, "town", split[town], tuple((k, facts[k]) for k in TOWN_ATTRIBUTES)))
    entities.sort(key=lambda e: (e.kind != "person", e.name))
    return World(seed=seed, entities=tuple(entities))
