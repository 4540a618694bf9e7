"""Arithmetic for the toy world: word problems with GSM8K-style worked solutions, and tables.

A solution marks every computation as a calculator call, `3 * 4 = <<3*4=12>>12`, and ends with
`#### 12`, the GSM8K convention. `solution_parts` turns the same text into chat parts with
python tool calls, so pretraining, SFT and RL all see one format. Numbers stay small (factors up
to 12, sums under 200) so a tiny model can learn to set the problem up and let the tool compute.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
         "fifteen sixteen seventeen eighteen nineteen").split()  # fmt: skip
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def _words(n: int) -> str:
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else "-" + _ONES[n % 10])
    rest = n % 100
    return _ONES[n // 100] + " hundred" + ("" if rest == 0 else " and " + _words(rest))


NUMBER_WORDS = tuple(_words(n) for n in range(1000))

# (name, gender) when no world people are given: plain generic names.
GENERIC_PEOPLE = (("Ana", "f"), ("Ben", "m"), ("Cora", "f"), ("Dan", "m"), ("Eva", "f"),
                  ("Finn", "m"), ("Gina", "f"), ("Hugo", "m"))  # fmt: skip
THINGS = ("apples", "pears", "marbles", "stickers", "shells", "buttons", "pencils", "cookies",
           "stamps", "eggs", "beads", "acorns", "candles", "ribbons")  # fmt: skip
HOLDERS = ("bags", "boxes", "baskets", "jars", "crates", "bowls", "trays")
GOODS = ("kites", "lanterns", "notebooks", "cups", "hats", "loaves", "brushes", "bells")
BAKED = ("pies", "cakes", "loaves", "buns", "biscuits")
_OPS = {"+": int.__add__, "-": int.__sub__, "*": int.__mul__, "/": int.__floordiv__}
_CALL = re.compile(r"<<([^=<>]+)=([^<>]+)>>")


class _Calc:
    """Records each computation and renders it as `a op b = <<a op b=v>>v`."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, str]] = []

    def __call__(self, a: int, op: str, b: int) -> tuple[str, int]:
        value = _OPS[op](a, b)
        expr = f"{a}{op}{b}"
        self.steps.append((expr, str(value)))
        return f"{a} {op} {b} = <<{expr}={value}>>{value}", value


def _pronouns(gender: str) -> tuple[str, str, str]:
    return ("she", "her", "her") if gender == "f" else ("he", "him", "his")


def arithmetic_problem(rng: random.Random, people: Sequence[tuple[str, str]] | None = None) -> dict:
    """A small word problem: {question, steps [(expr, value)], answer, solution}.

    `people` are (name, gender) pairs to cast (default: generic names); the problems state no
    facts about them, so they are safe to use with any entity. `solution` is the GSM8K-style
    worked answer ending in "#### <answer>".
    """
    cast = people or GENERIC_PEOPLE
    (p, gender), (q, _) = rng.sample(list(cast), 2)
    he, him, his = _pronouns(gender)
    calc = _Calc()
    kind = rng.randrange(10)
    things, holders = rng.choice(THINGS), rng.choice(HOLDERS)
    if kind == 0:
        a, b = rng.randint(2, 12), rng.randint(2, 12)
        question = f"{p} has {a} {holders} with {b} {things} in each. How many {things} does {p} have?"
        line, v = calc(a, "*", b)
        lines = [f"{p} has {line} {things}."]
    elif kind == 1:
        a, b = rng.randint(5, 40), rng.randint(2, 20)
        c = rng.randint(1, a + b - 1)
        question = (f"{p} had {a} {things}. {q} gave {him} {b} more, and then {he} lost {c}. "
                    f"How many {things} does {p} have now?")  # fmt: skip
        line1, s = calc(a, "+", b)
        line2, v = calc(s, "-", c)
        lines = [f"After the gift, {p} has {line1} {things}.", f"After losing {c}, {he} has {line2} left."]
    elif kind == 2:
        goods = rng.choice(GOODS)
        a, b = rng.randint(2, 9), rng.randint(2, 12)
        c = a * b + rng.randint(2, 30)
        question = (f"{p} buys {a} {goods} that cost {b} coins each and pays with {c} coins. "
                    f"How many coins does {p} get back?")  # fmt: skip
        line1, s = calc(a, "*", b)
        line2, v = calc(c, "-", s)
        lines = [f"The {goods} cost {line1} coins.", f"The change is {line2} coins."]
    elif kind == 3:
        each, n = rng.randint(2, 12), rng.randint(2, 9)
        question = (f"{p} shares {each * n} {things} equally among {n} friends. "
                    f"How many {things} does each friend get?")  # fmt: skip
        line, v = calc(each * n, "/", n)
        lines = [f"Each friend gets {line} {things}."]
    elif kind == 4:
        a, b, c = rng.randint(2, 12), rng.randint(2, 9), rng.randint(2, 30)
        question = (f"{p} reads {a} pages every day for {b} days, and then {c} more pages. "
                    f"How many pages does {p} read in all?")  # fmt: skip
        line1, s = calc(a, "*", b)
        line2, v = calc(s, "+", c)
        lines = [f"In {b} days {he} reads {line1} pages.", f"In all {he} reads {line2} pages."]
    elif kind == 5:
        b = rng.randint(2, 40)
        a = b + rng.randint(1, 40)
        question = f"{p} has {a} {things} and {q} has {b}. How many more {things} does {p} have than {q}?"
        line, v = calc(a, "-", b)
        lines = [f"{p} has {line} more {things} than {q}."]
    elif kind == 6:
        a, b = rng.randint(2, 60), rng.randint(2, 60)
        question = (f"{p} picked {a} {things} on Monday and {b} on Tuesday. "
                    f"How many {things} did {he} pick in the two days?")  # fmt: skip
        line, v = calc(a, "+", b)
        lines = [f"{p} picked {line} {things}."]
    elif kind == 7:
        baked = rng.choice(BAKED)
        a = rng.randint(2, 30)
        question = (f"{p} baked {a} {baked} in the morning and twice as many in the afternoon. "
                    f"How many {baked} did {he} bake in all?")  # fmt: skip
        line1, s = calc(a, "*", 2)
        line2, v = calc(a, "+", s)
        lines = [f"In the afternoon {he} baked {line1} {baked}.", f"In all {he} baked {line2} {baked}."]
    elif kind == 8:
        groups, each, given = rng.randint(2, 6), rng.randint(2, 10), rng.randint(1, 20)
        total = groups * each + given
        question = (f"{p} had {total} {things} and gave {given} to {q}. {p} put the rest into "
                    f"{groups} equal piles. How many {things} are in each pile?")  # fmt: skip
        line1, s = calc(total, "-", given)
        line2, v = calc(s, "/", groups)
        lines = [f"{p} kept {line1} {things}.", f"Each pile has {line2} {things}."]
    else:
        goods = rng.choice(GOODS)
        a, b = rng.randint(2, 12), rng.randint(2, 9)
        c = rng.randint(2, a * b - 1)
        question = (f"{p} sells {a} {goods} for {b} coins each and spends {c} coins on lunch. "
                    f"How many coins does {p} have left?")  # fmt: skip
        line1, s = calc(a, "*", b)
        line2, v = calc(s, "-", c)
        lines = [f"{p} earns {line1} coins.", f"After lunch {he} has {line2} coins left."]
    solution = " ".join(lines) + f"\n#### {v}"
    return {"question": question, "steps": calc.steps, "answer": str(v), "solution": solution}


def solution_parts(solution: str) -> list[dict]:
    """A `<<expr=value>>` solution as assistant parts: text, python call, python output, text..."""
    parts: list[dict] = []
    pos = 0
    for m in _CALL.finditer(solution):
        if m.start() > pos:
            parts.append({"type": "text", "text": solution[pos : m.start()]})
        parts.append({"type": "python", "text": m.group(1)})
        parts.append({"type": "python_output", "text": m.group(2)})
        pos = m.end()
    if pos < len(solution):
        parts.append({"type": "text", "text": solution[pos:]})
    return parts


def problems_document(rng: random.Random, people: Sequence[tuple[str, str]], target: int) -> str:
    """Worked word problems, one after another, until about `target` characters."""
    heads = rng.choice((("Problem", "Solution"), ("Question", "Answer"), ("Q", "A")))
    chunks: list[str] = []
    size = 0
    while size < target:
        prob = arithmetic_problem(rng, people)
        chunk = f"{heads[0]}: {prob['question']}\n{heads[1]}: {prob['solution']}"
        if size and size + len(chunk) > 1900:
            break
        chunks.append(chunk)
        size += len(chunk) + 2
    return "\n\n".join(chunks)


def tables_document(rng: random.Random, target: int) -> str:
    """Addition or multiplication facts, in digits and in words."""
    kind = rng.randrange(3)
    if kind == 0:
        n = rng.randint(2, 12)
        lines = [f"The {n} times table."]
        lines += [f"{n} x {k} = {n * k}, {NUMBER_WORDS[n]} times {NUMBER_WORDS[k]} is {NUMBER_WORDS[n * k]}."
                  for k in range(1, 13)]  # fmt: skip
    else:
        lines = ["Adding two-digit numbers." if kind == 1 else "Multiplying small numbers."]
        size = len(lines[0])
        while size < target:
            if kind == 1:
                a, b = rng.randint(10, 99), rng.randint(10, 99)
                op, word, c = "+", "plus", a + b
            else:
                a, b = rng.randint(2, 12), rng.randint(10, 40)
                op, word, c = "*", "times", a * b
            w = NUMBER_WORDS
            line = f"{a} {op} {b} = {c}. In words: {w[a]} {word} {w[b]} is {w[c]}."
            lines.append(line)
            size += len(line) + 1
    return "\n".join(lines)
