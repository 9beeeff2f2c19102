"""Container names as Docker makes them: adjective_surname."""
from __future__ import annotations

import os

_LEFT = ("admiring", "bold", "brave", "busy", "calm", "clever", "cool", "eager", "elated", "epic",
         "festive", "focused", "gallant", "gifted", "happy", "hopeful", "jolly", "keen", "kind", "lucid",
         "modest", "nice", "optimistic", "peaceful", "quirky", "relaxed", "serene", "sharp", "stoic",
         "sweet", "tender", "trusting", "upbeat", "vibrant", "wizardly", "youthful", "zealous")
_RIGHT = ("almeida", "babbage", "bell", "bohr", "curie", "darwin", "dijkstra", "einstein", "euler",
          "faraday", "feynman", "franklin", "galileo", "goldberg", "hamilton", "hopper", "hypatia",
          "johnson", "kepler", "knuth", "lamarr", "liskov", "lovelace", "mccarthy", "meitner", "newton",
          "noether", "pascal", "ritchie", "shannon", "thompson", "torvalds", "turing", "wozniak")


def random_name(retry: int = 0) -> str:
    """A name; after `retry` taken ones, with a digit appended, as Docker does: 1,258 names
    alone collide within a few hundred containers."""
    # os.urandom, not secrets: that module pulls in random and OpenSSL (~4 ms per container start).
    a, b, c = os.urandom(3)
    name = f"{_LEFT[a % len(_LEFT)]}_{_RIGHT[b % len(_RIGHT)]}"
    return f"{name}{c % 10}" if retry else name
