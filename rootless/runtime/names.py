"""Container names as Docker makes them: adjective_surname."""
from __future__ import annotations

import secrets

_LEFT = ("admiring", "bold", "brave", "busy", "calm", "clever", "cool", "eager", "elated", "epic",
         "festive", "focused", "gallant", "gifted", "happy", "hopeful", "jolly", "keen", "kind", "lucid",
         "modest", "nice", "optimistic", "peaceful", "quirky", "relaxed", "serene", "sharp", "stoic",
         "sweet", "tender", "trusting", "upbeat", "vibrant", "wizardly", "youthful", "zealous")
_RIGHT = ("almeida", "babbage", "bell", "bohr", "curie", "darwin", "dijkstra", "einstein", "euler",
          "faraday", "feynman", "franklin", "galileo", "goldberg", "hamilton", "hopper", "hypatia",
          "johnson", "kepler", "knuth", "lamarr", "liskov", "lovelace", "mccarthy", "meitner", "newton",
          "noether", "pascal", "ritchie", "shannon", "thompson", "torvalds", "turing", "wozniak")


def random_name() -> str:
    return f"{secrets.choice(_LEFT)}_{secrets.choice(_RIGHT)}"
