"""Hypothesis strategies and settings shared by the fuzz tests (tests/test_fuzz_*.py).

Every fuzz test runs a fixed number of examples drawn the same way on every run
(``derandomize``, no example database): CI is stable and a failure replays. Set
``DJANGO_JOBS_FUZZ_EXPLORE=1`` to draw new (and ten times as many) examples instead.
"""

from __future__ import annotations

import json
import math
import os

from hypothesis import HealthCheck, Phase, settings, strategies as st

EXPLORE = bool(os.environ.get("DJANGO_JOBS_FUZZ_EXPLORE"))


def fuzz_settings(max_examples: int) -> settings:
    """A fixed, modest number of examples, the same on every run; no deadline (a loaded CI
    machine is slow, and each test bounds its own work)."""
    return settings(max_examples=max_examples * (10 if EXPLORE else 1), deadline=None,
                    derandomize=not EXPLORE, database=None,
                    phases=(Phase.explicit, Phase.generate, Phase.shrink),
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


#: Strings that have broken something somewhere: NUL, lone surrogates (both halves), a
#: surrogate pair written as two code points, line and paragraph separators, markup, SQL and
#: format syntax, right-to-left marks, a long string.
HOSTILE_STRINGS = [
    "", "\x00", "a\x00b", "\ud800", "x\udfffy", "\ud83d\ude00", "\U0001f600", "\u2028\u2029",
    "<script>alert(1)</script>", "'; DROP TABLE django_jobs_job; --", "%s", "%(x)s", "{0}",
    "\\u0000", "\\", '"', "\u202e", "null", "NaN", " ", "ß" * 3, "x" * 10_000,
]

#: Numbers at the edges: of 64-bit integers, of floats, past what JSON or Python read back.
HOSTILE_NUMBERS = [
    0, -1, 2**31, 2**63 - 1, 2**63, -(2**63) - 1, 2**64, 10**400, -(10**30), 0.1, -0.0,
    5e-324, 1e16, 1.2345678901234567e25, 1e308, float("inf"), float("-inf"), float("nan"),
]

#: The longest integer Python writes as text (4300 digits), and one digit more (refused).
LONGEST_INTEGERS = [int("9" * 4300), 10**4300]

hostile_text = st.one_of(st.text(max_size=12), st.sampled_from(HOSTILE_STRINGS))
#: (Not the longest integers: hypothesis cannot print 10**4300 in a report; tests take them
#: one by one.)
numbers = st.one_of(st.integers(), st.floats(), st.sampled_from(HOSTILE_NUMBERS))
scalars = st.one_of(st.none(), st.booleans(), numbers, hostile_text)


def json_values(max_leaves: int = 12) -> st.SearchStrategy:
    """Any JSON-shaped value: scalars, lists and dicts nested a few levels, plus a value nested
    about as deep as the limit now and then (not far deeper: hypothesis could not print it)."""
    shallow = st.recursive(scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(hostile_text, inner, max_size=4)),
        max_leaves=max_leaves)
    return st.one_of(shallow, st.integers(95, 130).map(nested))


def nested(depth: int) -> object:
    """A list ``depth`` levels deep."""
    value: object = 1
    for level in range(depth - 1):
        value = [value] if level % 2 else {"n": value}
    return value


def json_objects(max_size: int = 4) -> st.SearchStrategy:
    return st.dictionaries(hostile_text, json_values(), max_size=max_size)


def refusals(value: object) -> set[str]:
    """The reasons django_jobs must refuse ``value`` as args or meta, each as a word its error
    names (any of them may be the one reported), or an empty set when it must take it: NUL,
    lone surrogates, NaN and infinities, integers longer than Python converts to text,
    nesting past ``jsonutil.MAX_DEPTH``."""
    from django_jobs.jsonutil import MAX_DEPTH

    found = set()
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (dict, list)):
            if level > MAX_DEPTH:
                found.add("deeply")
                continue
            if isinstance(item, dict):
                stack.extend((key, level) for key in item)
                stack.extend((child, level + 1) for child in item.values())
            else:
                stack.extend((child, level + 1) for child in item)
        elif isinstance(item, str):
            if "\x00" in item:
                found.add("NUL")
            # A surrogate pair written as two code points reads back as one character.
            elif not _utf8(json.loads(json.dumps(item))):
                found.add("surrogate")
        elif isinstance(item, float) and not math.isfinite(item):
            found.add("JSON")
        elif isinstance(item, int) and not isinstance(item, bool) and abs(item) >= 10**4300:
            found.add("JSON")
    return found


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
