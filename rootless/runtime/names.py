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


def random_name() -> str:
    # os.urandom, not secrets: that module pulls in random and OpenSSL (~4 ms per container start).
    a, b = os.urandom(2)
    return f"{_LEFT[a % len(_LEFT)]}_{_RIGHT[b % len(_RIGHT)]}"
