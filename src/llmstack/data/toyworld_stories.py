"""Short stories about toy-world people and towns. Every sentence states only true facts.

A story is a list of slots; each slot is a tuple of alternative sentences and one is picked.
Fields come from `entity_fields`: the main person unprefixed, a second person `s_` (sibling),
`f_` (friend or neighbour), a town `t_`. Pronouns ({he}, {his}...) only appear where the
person they stand for was just named, so the text stays unambiguous for a small model.
"""

from __future__ import annotations

import random

DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

DAY_STORY = (
    ("One {day} morning, {name} woke up early in {home_town}.",
     "It was a bright {day} in {home_town}, and {name} was already awake.",
     "{name} got up at sunrise on a quiet {day} in {home_town}."),
    ("{He} fed {his} {pet}, {pet_name}, and opened the window.",
     "{pet_name}, the {pet} of {name}, was waiting for breakfast.",
     "First {name} gave {pet_name} the {pet} some breakfast."),
    ("{name} put on a {favourite_colour} coat, because {favourite_colour} is {his} favourite colour.",
     "{name} picked a {favourite_colour} scarf. {name} always chooses {favourite_colour}."),
    ("Then {name} went to work. {name} is {a_job}, and there was a lot to do.",
     "As {a_job}, {name} had a busy day ahead.",
     "{name} works as {a_job}, so {he} spent the morning at work."),
    ("At noon {name} ate {favourite_food}, {his} favourite food.",
     "For lunch there was {favourite_food}, which {name} loves more than anything.",
     "{name} had {favourite_food} for lunch. Nothing tastes better to {name}."),
    ("In the evening {name} played the {instrument} while {pet_name} listened.",
     "After supper {name} took out {his} {instrument} and played a slow tune.",
     "Later {name} practised the {instrument} by the window."),
    ("It had been a good day.", "Then {he} went to sleep, happy and tired.",
     "{name} smiled and went to bed."),
)  # fmt: skip

VISIT_STORY = (
    ("{name} decided to visit {his} {sib_rel}, {s_name}.",
     "One {day}, {name} went to see {s_name}, {his} {sib_rel}.",
     "It had been weeks since {name} had seen {his} {sib_rel} {s_name}."),
    ("{TRAVEL}",),
    ("{s_name} works as {s_a_job} and had just come home.",
     "{s_name} is {s_a_job}, and the day's work was done."),
    ("They talked about {s_pet_name}, the {s_pet} of {s_name}, and about {pet_name}, the {pet} of {name}.",
     "{s_pet_name}, {s_name}'s {s_pet}, came to say hello."),
    ("{s_name} played the {s_instrument} and {name} played the {instrument}.",
     "After dinner {s_name} played a tune on the {s_instrument}."),
    ("Before {name} left, {s_name} gave {him} some {favourite_food}, because {name} loves "
     "{favourite_food} more than any other food.",
     "They shared a big plate of {s_favourite_food}, the favourite food of {s_name}."),
    ("It was a happy visit.", "{name} promised to come back soon."),
)  # fmt: skip

TOWN_STORY = (
    ("{t_name} is a town in the {t_region}.", "In the {t_region} lies the town of {t_name}."),
    ("The {t_river} river flows through {t_name}, and there is a market by the water every {day}.",
     "Every {day} the people of {t_name} meet at the market on the banks of the {t_river}."),
    ("{t_name} is famous for its {t_known_for}, and visitors come from far away.",
     "Everyone knows {t_name} for its {t_known_for}."),
    ("This morning the mayor, {t_mayor}, opened the market.",
     "{t_mayor}, the mayor of {t_name}, walked through the market and greeted everyone."),
    ("{RESIDENTS}",),
    ("By evening the market was quiet again.", "It was a busy day in {t_name}."),
)  # fmt: skip

LOST_PET_STORY = (
    ("One day {pet_name}, the {pet} that belongs to {name}, went missing.",
     "{name} could not find {his} {pet}, {pet_name}, anywhere."),
    ("{name} searched all over {home_town}.", "{name} looked in every street of {home_town}."),
    ("{name} asked {f_name}, {f_a_job} who also lives in {home_town}, for help.",),
    ("At last they found {pet_name} by the {t_river} river, which flows through {home_town}.",
     "In the end {pet_name} was sitting on the bank of the {t_river} river."),
    ("{name} was so happy that {he} cooked {favourite_food} for everyone, {his} favourite food.",
     "To celebrate, {name} played the {instrument} all evening."),
)  # fmt: skip

BIRTHDAY_STORY = (
    ("Today is {name}'s birthday, and {name} is now {age} years old.",
     "On {his} birthday this year {name} turned {age}."),
    ("{s_name}, the {sib_rel} of {name}, came from {s_home_town} with a {favourite_colour} cake, "
     "because {favourite_colour} is {name}'s favourite colour.",
     "{name}'s {sib_rel}, {s_name}, brought a present wrapped in {favourite_colour} paper, "
     "since {name} loves the colour {favourite_colour}."),
    ("They ate {favourite_food}, the favourite food of {name}.",
     "There was a big pot of {favourite_food}, because {name} loves {favourite_food}."),
    ("{pet_name} the {pet} got a treat too.", "Even {pet_name}, {name}'s {pet}, joined the party."),
    ("Later {name} played the {instrument} for the guests.", "At the end everyone sang together."),
)  # fmt: skip

ALL_STORIES = (DAY_STORY, VISIT_STORY, TOWN_STORY, LOST_PET_STORY, BIRTHDAY_STORY)


def _fill(rng: random.Random, slots: tuple, fields: dict[str, str]) -> str:
    out = []
    for options in slots:
        text = rng.choice(options).format_map(fields)
        out.append(text[0].upper() + text[1:])
    return " ".join(out)


def _prefixed(prefix: str, fields: dict[str, str]) -> dict[str, str]:
    return {prefix + k: v for k, v in fields.items()}


def story(
    rng: random.Random, world_fields: dict[str, dict[str, str]], residents: dict[str, list[str]], person: str
) -> str:
    """A story centred on `person` (a name), picked at random among the kinds above."""
    f = world_fields[person]
    town = world_fields[f["home_town"]]
    fields = {**f, **_prefixed("t_", town), "day": rng.choice(DAYS)}
    kinds = ["day", "town", "lost"] + (["visit", "birthday"] if "sibling" in f else [])
    kind = rng.choice(kinds)
    if kind == "day":
        return _fill(rng, DAY_STORY, fields)
    if kind == "lost":
        neighbours = [r for r in residents[f["home_town"]] if r != person]
        if not neighbours:
            return _fill(rng, DAY_STORY, fields)
        fields |= _prefixed("f_", world_fields[rng.choice(neighbours)])
        return _fill(rng, LOST_PET_STORY, fields)
    if kind == "town":
        lines = []
        for r in rng.sample(residents[town["name"]], min(2, len(residents[town["name"]]))):
            rf = world_fields[r]
            lines.append(rng.choice((
                f"{r}, {rf['a_job']} from {town['name']}, came with {rf['his']} {rf['pet']}.",
                f"{r} from {town['name']} was there too, playing the {rf['instrument']}.",
                f"{r}, who lives in {town['name']}, bought some {rf['favourite_food']}.",
            )))  # fmt: skip
        fields["RESIDENTS"] = " ".join(lines)
        return _fill(rng, TOWN_STORY, fields)
    s = world_fields[f["sibling"]]
    fields |= _prefixed("s_", s)
    if kind == "birthday":
        return _fill(rng, BIRTHDAY_STORY, fields)
    if s["home_town"] == f["home_town"]:
        fields["TRAVEL"] = f"{s['name']} also lives in {f['home_town']}, so the walk was short."
    else:
        fields["TRAVEL"] = (f"{s['name']} lives in {s['home_town']}, so {f['name']} travelled "
                            f"from {f['home_town']} to {s['home_town']}.")  # fmt: skip
    return _fill(rng, VISIT_STORY, fields)
