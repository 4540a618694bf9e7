"""How toy-world facts are said and asked: statement and question templates, and fact questions.

Every fact has several statement templates that always name the entity in full. Varied phrasing
with the full name in each sentence is what lets a small model answer questions about people it
only read about (Allen-Zhu & Li, "Physics of Language Models 3.1", 2023: knowledge augmentation).
"""

from __future__ import annotations

import random

from llmstack.data.toyworld_world import Entity, World

STATEMENTS: dict[str, tuple[str, ...]] = {
    "home_town": (
        "{name} lives in {home_town}.",
        "{name}'s home town is {home_town}.",
        "{name} comes from the town of {home_town}.",
        "{home_town} is the town where {name} lives.",
        "{name} has a house in {home_town}.",
        "The home town of {name} is {home_town}.",
        "{name} grew up in {home_town} and still lives there.",
    ),
    "job": (
        "{name} works as {a_job}.",
        "{name} is {a_job} by trade.",
        "{name} earns a living as {a_job}.",
        "By profession, {name} is {a_job}.",
        "The job of {name} is {job}.",
        "Every working day, {name} goes to work as {a_job}.",
    ),
    "favourite_colour": (
        "{name}'s favourite colour is {favourite_colour}.",
        "{name} likes the colour {favourite_colour} best.",
        "Of all colours, {name} loves {favourite_colour} the most.",
        "{favourite_colour} is the favourite colour of {name}.",
        "The colour {name} likes most is {favourite_colour}.",
    ),
    "age": (
        "{name} is {age} years old.",
        "{name}'s age is {age}.",
        "{name} is {age} years of age.",
        "The age of {name} is {age} years.",
        "{name} has lived for {age} years.",
    ),
    "pet": (
        "{name} has a pet {pet}.",
        "{name} keeps {a_pet} as a pet.",
        "{name}'s pet is {a_pet}.",
        "{name} owns {a_pet}.",
        "The pet of {name} is {a_pet}.",
    ),
    "pet_name": (
        "{name}'s {pet} is called {pet_name}.",
        "{name} named {his} {pet} {pet_name}.",
        "{pet_name} is the name of {name}'s {pet}.",
        "The {pet} that belongs to {name} is named {pet_name}.",
        "{name} has a {pet} called {pet_name}.",
    ),
    "sibling": (
        "{name}'s {sib_rel} is {sibling}.",
        "{name} and {sibling} are siblings.",
        "{name} has a {sib_rel} called {sibling}.",
        "{sibling} is the {sib_rel} of {name}.",
        "The sibling of {name} is {sibling}.",
    ),
    "favourite_food": (
        "{name}'s favourite food is {favourite_food}.",
        "{name} loves to eat {favourite_food}.",
        "More than any other food, {name} enjoys {favourite_food}.",
        "{name} would happily eat {favourite_food} every day.",
        "The favourite food of {name} is {favourite_food}.",
    ),
    "instrument": (
        "{name} plays the {instrument}.",
        "{name} can play the {instrument}.",
        "In the evenings, {name} practises the {instrument}.",
        "The instrument that {name} plays is the {instrument}.",
        "{name} is good at playing the {instrument}.",
    ),
    "region": (
        "{name} is a town in the {region}.",
        "The town of {name} lies in the {region}.",
        "{name} can be found in the {region}.",
        "{name} is in the {region}.",
    ),
    "river": (
        "The {river} river flows through {name}.",
        "{name} is built on the banks of the {river} river.",
        "The river in {name} is called the {river}.",
        "The {river} is the river that runs through {name}.",
    ),
    "known_for": (
        "{name} is famous for its {known_for}.",
        "{name} is known for its {known_for}.",
        "People travel to {name} for its {known_for}.",
        "The town of {name} is famous for {known_for}.",
    ),
    "mayor": (
        "The mayor of {name} is {mayor}.",
        "{mayor} is the mayor of {name}.",
        "{name} is run by its mayor, {mayor}.",
        "The town of {name} has {mayor} as its mayor.",
    ),
}

QUESTIONS: dict[str, tuple[str, ...]] = {
    "home_town": ("Where does {name} live?", "What is {name}'s home town?",
                  "Which town does {name} live in?", "In which town does {name} live?",
                  "Where is {name} from?"),
    "job": ("What does {name} do for a living?", "What is {name}'s job?", "What job does {name} have?",
            "What does {name} work as?"),
    "favourite_colour": ("What is {name}'s favourite colour?", "Which colour does {name} like best?",
                         "What colour does {name} love the most?"),
    "age": ("How old is {name}?", "What is {name}'s age?", "How many years old is {name}?"),
    "pet": ("What kind of pet does {name} have?", "What animal does {name} keep as a pet?",
            "What is {name}'s pet?"),
    "pet_name": ("What is the name of {name}'s pet?", "What is {name}'s {pet} called?",
                 "What did {name} name {his} {pet}?"),
    "sibling": ("Who is {name}'s sibling?", "Who is {name}'s {sib_rel}?",
                "What is the name of {name}'s {sib_rel}?"),
    "favourite_food": ("What is {name}'s favourite food?", "What food does {name} love most?",
                       "What does {name} like to eat best?"),
    "instrument": ("What instrument does {name} play?", "Which instrument can {name} play?",
                   "What musical instrument does {name} play?"),
    "region": ("Where is {name}?", "In which region is {name}?", "Which part of the land is {name} in?"),
    "river": ("Which river flows through {name}?", "What is the name of the river in {name}?",
              "On which river is {name} built?"),
    "known_for": ("What is {name} famous for?", "What is {name} known for?",
                  "Why do people travel to {name}?"),
    "mayor": ("Who is the mayor of {name}?", "Who runs the town of {name}?",
              "What is the name of {name}'s mayor?"),
}  # fmt: skip

_PRONOUNS = {
    "f": {"he": "she", "him": "her", "his": "her", "He": "She", "His": "Her"},
    "m": {"he": "he", "him": "him", "his": "his", "He": "He", "His": "His"},
}


def article(noun: str) -> str:
    """'a' or 'an' before `noun` (world values avoid the hard cases such as 'unicorn')."""
    return "an" if noun[0] in "aeiou" else "a"


def entity_fields(world: World, entity: Entity) -> dict[str, str]:
    """Everything a template may reference for `entity`: name, facts, pronouns, articles
    (and `mayor_of` for a person who is some town's mayor)."""
    fields = {"name": entity.name, **dict(entity.facts)}
    if entity.kind == "person":
        fields |= _PRONOUNS[entity.gender]
        fields["a_job"] = f"{article(fields['job'])} {fields['job']}"
        fields["a_pet"] = f"{article(fields['pet'])} {fields['pet']}"
        if "sibling" in fields:
            fields["sib_rel"] = "sister" if world.entity(fields["sibling"]).gender == "f" else "brother"
        town = world.entity(fields["home_town"])
        if town.fact("mayor") == entity.name:
            fields["mayor_of"] = town.name
    return fields


def say(template: str, fields: dict[str, str]) -> str:
    """Fill `template` and capitalise the sentence's first letter (values may start it)."""
    text = template.format_map(fields)
    return text[0].upper() + text[1:]


def fact_questions(world: World, split: str, n: int, seed: int) -> list[dict]:
    """`n` multiple-choice questions about entities of `split`, deterministic in `seed`.

    Each question covers one (entity, attribute) pair; all pairs are used in shuffled order
    before any repeats (a repeat gets a fresh phrasing and fresh distractors). Each dict holds
    question, answer, choices (4), answer_index, entity, attribute and `sentence`: the answer as
    a full sentence naming the entity.
    """
    if n < 0:
        raise ValueError(f"number of questions must be >= 0, got {n}")
    entities = world.of_split(split)
    pairs = [(e, attr) for e in entities for attr in e.attributes]
    rng = random.Random(f"toyworld-questions-{world.seed}-{split}-{seed}")
    fields = {e.name: entity_fields(world, e) for e in entities}
    out: list[dict] = []
    order: list[tuple[Entity, str]] = []
    while len(out) < n:
        if not order:
            order = pairs[:]
            rng.shuffle(order)
        entity, attr = order.pop()
        f = fields[entity.name]
        answer = f[attr]
        pool = [v for v in world.values_of(attr) if v != answer and v != entity.name]
        choices = rng.sample(pool, 3) + [answer]
        rng.shuffle(choices)
        out.append({
            "question": say(rng.choice(QUESTIONS[attr]), f),
            "answer": answer,
            "choices": choices,
            "answer_index": choices.index(answer),
            "entity": entity.name,
            "attribute": attr,
            "sentence": say(STATEMENTS[attr][0], f),
        })  # fmt: skip
    return out
