"""Everyday English words for the toy world's spelling texts.

They also keep the name generator honest: a made-up name that happens to be one of these words
(or a world value) is rejected, so facts about people cannot be guessed from ordinary English.
"""

from __future__ import annotations

COMMON_WORDS = tuple(
    """
    apple banana cherry grape lemon melon orange peach plum strawberry tomato potato onion
    garlic pepper carrot bean pea corn wheat butter sugar salt water milk tea coffee juice
    egg fish chicken meat pasta pizza salad sandwich cookie cake candy chocolate
    house home room door window floor wall roof garden kitchen table chair bed lamp clock
    book paper pencil pen letter story word name number page picture map box bag basket
    cup bottle plate spoon fork knife bowl jar key coin ring hat coat shoe sock shirt dress
    tree flower grass leaf branch forest river lake ocean sea island hill mountain valley
    road bridge street town city village market shop school library farm field barn
    sun moon star sky cloud rain snow wind storm weather morning evening night day week
    month year spring summer autumn winter today tomorrow yesterday
    horse cow sheep pig mouse bird frog bear wolf fox deer tiger lion elephant monkey
    zebra giraffe snake whale dolphin turtle spider butterfly bee ant
    friend family mother father sister brother child baby teacher student doctor
    happy sad big small little tall short long quick slow warm cold hot bright dark
    early late quiet loud soft hard heavy light clean kind brave clever gentle
    run walk jump swim sing dance read write draw paint cook bake sleep dream play
    laugh smile think listen speak open close carry bring build plant grow help
    mirror pillow blanket candle ladder hammer needle thread button pocket ribbon
    balloon kettle wagon rocket puzzle castle tunnel island harbour meadow orchard
    committee bookkeeper mississippi balloon coffee bubble puppy kitten rabbit
    yellow purple violet scarlet crimson
    """.split()
)
