"""Variable expansion with BuildKit's rules (frontend/dockerfile/shell/lex.go), not a shell's.

`$VAR`, `${VAR}`, `${VAR:-w}`, `${VAR-w}`, `${VAR:+w}`, `${VAR+w}`, `${VAR:?msg}`, `${VAR?msg}`,
`${VAR#pat}`, `${VAR##pat}`, `${VAR%pat}`, `${VAR%%pat}`, `${VAR/pat/rep}`, `${VAR//pat/rep}`;
single quotes keep everything literal, double quotes keep spaces but still expand, the escape
character (`\\` or the `# escape=` one) makes the next character literal. An unset variable is
empty. Quotes are removed from the result, as BuildKit does before it uses a word.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from rootless.errors import DockerfileError

# The instructions whose arguments BuildKit expands before using them. RUN, CMD, ENTRYPOINT,
# SHELL and HEALTHCHECK are left to the shell in the container; ONBUILD triggers are expanded
# when they run in the child build.
EXPANDED = frozenset({
    "ADD", "ARG", "COPY", "ENV", "EXPOSE", "FROM", "LABEL", "STOPSIGNAL", "USER", "VOLUME",
    "WORKDIR",
})

_SPECIAL_PARAMS = frozenset("@*#?-$!0")


def expand(text: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """One word: variables expanded, quotes and escapes processed, inner spaces kept."""
    return _Lexer(text, env, escape).run()[0]


def expand_words(text: str, env: Mapping[str, str], escape: str = "\\") -> list[str]:
    """Words split on unquoted spaces after expansion (spaces inside a variable's value split too,
    unless the variable is inside double quotes)."""
    return _Lexer(text, env, escape).run()[1]


def expand_heredoc(text: str, env: Mapping[str, str]) -> str:
    """A heredoc body whose delimiter was not quoted: variables expanded, quotes kept as text
    (BuildKit expands these with `\\` as the escape, whatever `# escape=` says)."""
    return _Lexer(text, env, "\\", process_quotes=False).run()[0]


def parse_key_values(command: str, args: Sequence[str], env: Mapping[str, str],
                     escape: str = "\\") -> list[tuple[str, str | None]]:
    """The expanded pairs of ENV or LABEL (args alternate key and value, as the parser gives them,
    for both `ENV k v` and `ENV k=v k2="v 2"`) or of ARG (`name` or `name=default`; a name
    without default has None). Every value is expanded with the same `env`, the one before the
    instruction: `ENV a=1 b=$a` gives b the previous a, as in Docker."""
    if command == "ARG":
        out: list[tuple[str, str | None]] = []
        for arg in args:
            name, eq, default = arg.partition("=")
            out.append((name, expand(default, env, escape) if eq else None))
        return out
    return [(expand(args[i], env, escape), expand(args[i + 1], env, escape))
            for i in range(0, len(args) - 1, 2)]


class _Words:
    """BuildKit's word splitter: expanded text splits on spaces, quoted or escaped text never."""

    def __init__(self) -> None:
        self.words: list[str] = []
        self.word: list[str] = []
        self.in_word = False

    def add_char(self, ch: str) -> None:
        if ch.isspace():
            if self.in_word and self.word:
                self.words.append("".join(self.word))
                self.word = []
                self.in_word = False
        else:
            self.add_raw(ch)

    def add_string(self, text: str) -> None:
        for ch in text:
            self.add_char(ch)

    def add_raw(self, text: str) -> None:
        self.word.append(text)
        self.in_word = True

    def result(self) -> list[str]:
        if self.word:
            self.words.append("".join(self.word))
            self.word = []
        return self.words


class _Lexer:
    def __init__(self, text: str, env: Mapping[str, str], escape: str,
                 process_quotes: bool = True) -> None:
        self.text = text
        self.pos = 0
        self.env = env
        self.escape = escape
        self.process_quotes = process_quotes
        self.raw_escapes = False

    def run(self) -> tuple[str, list[str]]:
        try:
            return self._until(None, raw_escapes=False)
        except _Error as e:
            raise DockerfileError(f'failed to process "{self.text}": {e}') from e

    def _peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def _next(self) -> str:
        ch = self._peek()
        self.pos += len(ch)
        return ch

    def _until(self, stop: str | None, raw_escapes: bool) -> tuple[str, list[str]]:
        saved, self.raw_escapes = self.raw_escapes, raw_escapes
        try:
            return self._scan(stop)
        finally:
            self.raw_escapes = saved

    def _scan(self, stop: str | None) -> tuple[str, list[str]]:
        result: list[str] = []
        words = _Words()
        while self._peek():
            ch = self._peek()
            if stop is not None and ch == stop:
                self._next()
                return "".join(result), words.result()
            if ch == "$":
                value = self._dollar()
                result.append(value)
                words.add_string(value)
            elif self.process_quotes and ch in "'\"":
                value = self._single_quote() if ch == "'" else self._double_quote()
                result.append(value)
                words.add_raw(value)
            else:
                ch = self._next()
                if ch == self.escape:
                    if self.raw_escapes:
                        words.add_raw(ch)
                        result.append(ch)
                    ch = self._next()
                    if not ch:
                        break
                    words.add_raw(ch)
                else:
                    words.add_char(ch)
                result.append(ch)
        if stop is not None:
            raise _Error(f"unexpected end of statement while looking for matching {stop}")
        return "".join(result), words.result()

    def _single_quote(self) -> str:
        self._next()
        end = self.text.find("'", self.pos)
        if end < 0:
            raise _Error("unexpected end of statement while looking for matching single-quote")
        value = self.text[self.pos:end]
        self.pos = end + 1
        return value

    def _double_quote(self) -> str:
        self._next()
        result: list[str] = []
        while True:
            ch = self._peek()
            if not ch:
                raise _Error("unexpected end of statement while looking for matching double-quote")
            if ch == '"':
                self._next()
                return "".join(result)
            if ch == "$":
                result.append(self._dollar())
                continue
            ch = self._next()
            if ch == self.escape:
                if self.raw_escapes:
                    result.append(ch)
                following = self._peek()
                if not following:
                    continue
                # Inside double quotes the escape only escapes these; elsewhere it stays as is.
                if following in ('"', "$", self.escape):
                    ch = self._next()
            result.append(ch)

    def _name(self) -> str:
        start = self.pos
        ch = self._peek()
        if ch.isdigit():
            while self._peek().isdigit():
                self._next()
            return self.text[start:self.pos]
        if ch and ch in _SPECIAL_PARAMS:
            return self._next()
        while self._peek() and (self._peek().isalnum() or self._peek() == "_"):
            self._next()
        return self.text[start:self.pos]

    def _dollar(self) -> str:
        self._next()
        if self._peek() != "{":
            name = self._name()
            return self.env.get(name, "") if name else "$"
        self._next()
        if not self._peek():
            raise _Error("syntax error: missing '}'")
        if self._peek() in "{}:":
            raise _Error("syntax error: bad substitution")
        name = self._name()
        ch = self._next()
        modifier = ch
        if ch == "}":
            return self.env.get(name, "")
        if not ch:
            raise _Error("syntax error: missing '}'")
        if ch == "/":
            return self._replace(name)
        null_is_unset = ch == ":"
        if null_is_unset:
            ch = self._next()
            modifier += ch
        elif ch not in ("+", "-", "?", "#", "%"):
            raise _Error(f"unsupported modifier ({modifier}) in substitution")
        word = self._word_until_brace(raw_escapes=ch in ("#", "%"))
        if ch not in ("+", "-", "?", "#", "%"):
            raise _Error(f"unsupported modifier ({modifier}) in substitution")
        is_set = name in self.env
        value = self.env.get(name, "")
        empty = not is_set or (null_is_unset and value == "")
        if ch == "-":
            return word if empty else value
        if ch == "+":
            return "" if empty else word
        if ch == "?":
            if not is_set:
                raise _Error(f"{name}: {word or 'is not allowed to be unset'}")
            if empty:
                raise _Error(f"{name}: {word or 'is not allowed to be empty'}")
            return value
        greedy = word.startswith(ch)
        if greedy:
            word = word[1:]
        if ch == "#":
            return _trim_prefix(word, value, greedy)
        return _trim_prefix(_reverse_pattern(word), value[::-1], greedy)[::-1]

    def _word_until_brace(self, raw_escapes: bool) -> str:
        try:
            return self._until("}", raw_escapes)[0]
        except _Error:
            if not self._peek():
                raise _Error("syntax error: missing '}'")
            raise

    def _replace(self, name: str) -> str:
        replace_all = self._peek() == "/"
        if replace_all:
            self._next()
        try:
            pattern = self._until("/", raw_escapes=True)[0]
        except _Error:
            if not self._peek():
                raise _Error("syntax error: missing '/' in ${}")
            raise
        replacement = self._word_until_brace(raw_escapes=True)
        value = self.env.get(name, "")
        regex = _pattern_regex(pattern, greedy=True, anchored=False)
        return regex.sub(lambda _: replacement, value, count=0 if replace_all else 1)


class _Error(Exception):
    pass


def _pattern_regex(pattern: str, greedy: bool, anchored: bool) -> re.Pattern[str]:
    """A shell pattern (`*`, `?`, `\\` escapes; no brackets, as in BuildKit) as a regex."""
    out = ["^"] if anchored else []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        i += 1
        if ch == "*":
            out.append(".*" if greedy else ".*?")
        elif ch == "?":
            out.append(".")
        elif ch == "\\":
            # `\}` and `\/` were only there to get past the ${} syntax.
            if i < len(pattern) and pattern[i] in "}/":
                continue
            if i >= len(pattern) or pattern[i] not in "*?\\":
                raise _Error(f"invalid pattern ({pattern}) in substitution: invalid escape "
                             f"'\\{pattern[i:i + 1]}'")
            out.append(re.escape(pattern[i]))
            i += 1
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out), re.DOTALL)


def _trim_prefix(pattern: str, value: str, greedy: bool) -> str:
    m = _pattern_regex(pattern, greedy, anchored=True).match(value)
    return value[m.end():] if m else value


def _reverse_pattern(pattern: str) -> str:
    """The pattern read backwards with each escape kept before the character it escapes, so
    that a suffix match is a prefix match on the reversed value."""
    units = []
    i = 0
    while i < len(pattern):
        if pattern[i] == "\\" and i + 1 < len(pattern):
            units.append(pattern[i:i + 2])
            i += 2
        else:
            units.append(pattern[i])
            i += 1
    return "".join(reversed(units))
