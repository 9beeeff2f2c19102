"""BuildKit's variable expansion: cases from BuildKit's own tests (shell/envVarTest, wordsTest,
lex_test.go), so a Dockerfile gets the values docker build would give it."""
from __future__ import annotations

import pytest

from rootless.errors import DockerfileError
from rootless.build.expand import expand, expand_heredoc, expand_words, parse_key_values

ENV = {"PWD": "/home", "SHELL": "bash", "KOREAN": "한국어", "NULL": ""}
ERROR = object()

# shell/envVarTest: (source, result), with ENV above.
ENV_VAR_TEST = [
    ("hello", "hello"),
    ("he'll'o", "hello"),
    ("he'llo", ERROR),
    ("he\\'llo", "he'llo"),
    ("he\\\\'llo", ERROR),
    ("abc\\tdef", "abctdef"),
    ('"abc\\tdef"', "abc\\tdef"),
    ('"abc\\\\tdef"', "abc\\tdef"),
    ("'abc\\tdef'", "abc\\tdef"),
    ("hello\\", "hello"),
    ("hello\\\\", "hello\\"),
    ('"hello', ERROR),
    ('"hello\\"', ERROR),
    ('"hel\'lo"', "hel'lo"),
    ("'hello", ERROR),
    ("'hello\\'", "hello\\"),
    ("'hello\\there'", "hello\\there"),
    ("'hello\\\\there'", "hello\\\\there"),
    ('"\'\'"', "''"),
    ("$.", "$."),
    ("he$1x", "hex"),
    ("he$.x", "he$.x"),
    ("he$pwd.", "he."),
    ("he$PWD", "he/home"),
    ("he\\$PWD", "he$PWD"),
    ("he\\\\$PWD", "he\\/home"),
    ('"he\\$PWD"', "he$PWD"),
    ('"he\\\\$PWD"', "he\\/home"),
    ("\\${}", "${}"),
    ("\\${}aaa", "${}aaa"),
    ("he\\${}", "he${}"),
    ("he\\${}xx", "he${}xx"),
    ("${}", ERROR),
    ("${}aaa", ERROR),
    ("he${}", ERROR),
    ("he${}xx", ERROR),
    ("he${hi}", "he"),
    ("he${hi}xx", "hexx"),
    ("he${PWD}", "he/home"),
    ("he${.}", ERROR),
    ("he${XXX:-000}xx", "he000xx"),
    ("he${PWD:-000}xx", "he/homexx"),
    ("he${XXX:-$PWD}xx", "he/homexx"),
    ("he${XXX:-${PWD:-yyy}}xx", "he/homexx"),
    ("he${XXX:-${YYY:-yyy}}xx", "heyyyxx"),
    ("he${XXX:YYY}", ERROR),
    ("he${XXX?}", ERROR),
    ("he${XXX:?}", ERROR),
    ("he${PWD?}", "he/home"),
    ("he${PWD:?}", "he/home"),
    ("he${NULL?}", "he"),
    ("he${NULL:?}", ERROR),
    ("he${XXX:+${PWD}}xx", "hexx"),
    ("he${PWD:+${XXX}}xx", "hexx"),
    ("he${PWD:+${SHELL}}xx", "hebashxx"),
    ("he${XXX:+000}xx", "hexx"),
    ("he${PWD:+000}xx", "he000xx"),
    ("'he${XX}'", "he${XX}"),
    ('"he${PWD}"', "he/home"),
    ("\"he'$PWD'\"", "he'/home'"),
    ('"$PWD"', "/home"),
    ("'$PWD'", "$PWD"),
    ("'\\$PWD'", "\\$PWD"),
    ("'\"hello\"'", '"hello"'),
    ("he\\$PWD", "he$PWD"),
    ('"he\\$PWD"', "he$PWD"),
    ("'he\\$PWD'", "he\\$PWD"),
    ("he${PWD", ERROR),
    ("he${PWD=000}xx", ERROR),
    ("he${PWD+${PWD}:}xx", "he/home:xx"),
    ("he${XXX-${PWD:-yyy}}xx", "he/homexx"),
    ("he${XXX-${YYY:-yyy}}xx", "heyyyxx"),
    ("he${XXX-000}xx", "he000xx"),
    ("he${PWD-000}xx", "he/homexx"),
    ("he${NULL-000}xx", "hexx"),
    ("he${NULL:-000}xx", "he000xx"),
    ("he${NULL+000}xx", "he000xx"),
    ("he${NULL:+000}xx", "hexx"),
    ("$$", ""),
    ("x${KOREAN}", "x한국어"),
    ("${KOREAN}x", "한국어x"),
    ("${KOREAN}", "한국어"),
    ('"${KOREAN} ${PWD}"', "한국어 /home"),
]


@pytest.mark.parametrize(("source", "result"), ENV_VAR_TEST)
def test_env_var_test(source: str, result: object) -> None:
    if result is ERROR:
        with pytest.raises(DockerfileError):
            expand(source, ENV)
    else:
        assert expand(source, ENV) == result


# shell/lex_test.go TestProcessWithMatches: the pattern modifiers.
PATTERNS = [
    ("${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}", {"FOO": "xxx", "BAR": ""}, "xxx  ccc"),
    ("${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc}", {"FOO": "xxx", "BAR": ""}, "xxx bbb ccc"),
    ("${FOO+aaa} ${BAR+bbb} ${BAZ+ccc}", {"FOO": "xxx", "BAR": ""}, "aaa bbb "),
    ("${FOO:+aaa} ${BAR:+bbb} ${BAZ:+ccc}", {"FOO": "xxx", "BAR": ""}, "aaa  "),
    ("${FOO#()[]{\\}^$.\\*\\?|\\\\}", {"FOO": "()[]{}^$.*?|\\x"}, "x"),
    ("${FOO%%\\**}", {"FOO": "xx**"}, "xx"),
    ("${FOO#*x*y}", {"FOO": "xxyy"}, "y"),
    ("${FOO##*x}", {"FOO": "xxyy"}, "yy"),
    ("${FOO#?\\?}", {"FOO": "???y"}, "?y"),
    ("${ABC:-.}${FOO%x}${ABC:-.}", {"FOO": "xxyy"}, ".xxyy."),
    ("${FOO%%\\**\\*}", {"FOO": "a***yy*"}, "a"),
    ("${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}", {"FOO": "/foo*/*/*.txt", "NEEDLE": "\\*/"},
     "/foo.*/*.txt - /foo..*.txt"),
    ("${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}", {"FOO": "/tmp/tmp/bar.txt", "NEEDLE": "/tmp"},
     "/tmp/bar.txt - /bar.txt"),
    ("${FOO/$NEEDLE/$REPLACEMENT} - ${FOO//$NEEDLE/$REPLACEMENT}",
     {"FOO": "/a/foo/b/c.txt", "NEEDLE": "/?/", "REPLACEMENT": "/"}, "/foo/b/c.txt - /foo/c.txt"),
    ("${FOO/$NEEDLE/$REPLACEMENT}", {"FOO": "http://google.de", "NEEDLE": "http://",
                                    "REPLACEMENT": "https://"}, "https://google.de"),
    ("${FOO//\\//\\/}", {"FOO": "/tmp/foo.txt"}, "\\/tmp\\/foo.txt"),
    ("something-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tar.gz",
     {"VERSION": "v1.2.3", "TARGETOS": "linux", "TARGETARCH": "arm", "TARGETVARIANT": "v7"},
     "something-v1.2.3.linux-arm-v7.tar.gz"),
    ("something-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tar.gz",
     {"VERSION": "v1.2.3", "TARGETOS": "linux", "TARGETARCH": "arm64"},
     "something-v1.2.3.linux-arm64.tar.gz"),
]


@pytest.mark.parametrize(("source", "env", "result"), PATTERNS)
def test_modifiers(source: str, env: dict[str, str], result: str) -> None:
    assert expand(source, env) == result


@pytest.mark.parametrize("source", ["${BAZ?ccc}", "${BAR:?bbb}", "${BAZ:?ccc}", "${FOO=aaa}",
                                    "${FOO=:aaa}"])
def test_modifier_errors(source: str) -> None:
    with pytest.raises(DockerfileError):
        expand(source, {"FOO": "xxx", "BAR": ""})


def test_required_variable_message_names_the_variable() -> None:
    with pytest.raises(DockerfileError, match="VERSION: set it with --build-arg"):
        expand("app-${VERSION:?set it with --build-arg}", {})
    with pytest.raises(DockerfileError, match="VAR: message herex"):
        expand("${VAR:?message here$ARG}", {"VAR": "", "ARG": "x"})
    assert expand("${VAR?message here$ARG}", {"VAR": "", "ARG": "x"}) == ""


# shell/wordsTest: (source, words) with the ENV lines in force.
WORDS_ENV = {"hi": "hi", "space": "abc  def", "leading": "  ab c", "trailing": "ab c   "}
WORDS_TEST = [
    ("hello", ["hello"]),
    ("hello${hi}bye", ["hellohibye"]),
    ("hello${space}bye", ["helloabc", "defbye"]),
    ('hello"${space}"bye', ["helloabc  defbye"]),
    ('hello "${space}"bye', ["hello", "abc  defbye"]),
    ("hello${leading}def", ["hello", "ab", "cdef"]),
    ('hello"${leading}" def', ["hello  ab c", "def"]),
    ('hello"${leading}"', ["hello  ab c"]),
    ("hello${leading}", ["hello", "ab", "c"]),
    ("hello${trailing}", ["helloab", "c"]),
    ("hello${trailing}d", ["helloab", "c", "d"]),
    ('hello"${trailing}"d', ["helloab c   d"]),
    ('hel"lo${trailing}"', ["helloab c   "]),
    ('hello" there  "', ["hello there  "]),
    ("hello there     ", ["hello", "there"]),
    ("hello\\ there", ["hello there"]),
    ('hello\\" there', ['hello"', "there"]),
    ('hello"\\\\there"', ["hello\\there"]),
    ('hello"\\there"', ["hello\\there"]),
    ("hello'\\\\there'", ["hello\\\\there"]),
    ("hello'\\there'", ["hello\\there"]),
    ("hello'$there'", ["hello$there"]),
]


@pytest.mark.parametrize(("source", "words"), WORDS_TEST)
def test_words_test(source: str, words: list[str]) -> None:
    assert expand_words(source, WORDS_ENV) == words


def test_unterminated_quote_in_words_is_an_error() -> None:
    with pytest.raises(DockerfileError, match="double-quote"):
        expand_words('hello" there', WORDS_ENV)


def test_backtick_escape_directive() -> None:
    env = {"X": "1"}
    assert expand("a`$X", env, "`") == "a$X"
    # With ` as the escape, a backslash is an ordinary character (Windows paths).
    assert expand("C:\\dir\\$X", env, "`") == "C:\\dir\\1"


def test_env_both_syntaxes_remove_quotes_and_use_the_previous_values() -> None:
    env = {"a": "old"}
    # `ENV k=v k2="v 2" k3=$a` as the parser splits it
    pairs = parse_key_values("ENV", ("k", "v", "k2", '"v 2"', "k3", "$a", "a", "new"), env)
    assert pairs == [("k", "v"), ("k2", "v 2"), ("k3", "old"), ("a", "new")]
    # `ENV k some words $a`
    assert parse_key_values("ENV", ("k", "some words $a"), env) == [("k", "some words old")]
    assert parse_key_values("LABEL", ('"my label"', "'$a'"), env) == [("my label", "$a")]


def test_arg_defaults() -> None:
    env = {"BASE": "debian"}
    assert parse_key_values("ARG", ("NAME", "IMAGE=${BASE}:12", "EMPTY="), env) == [
        ("NAME", None), ("IMAGE", "debian:12"), ("EMPTY", "")]


def test_heredoc_body_keeps_quotes_and_expands() -> None:
    assert expand_heredoc('echo "$X" \'$X\' \\$X\n', {"X": "1"}) == "echo \"1\" '1' $X\n"
