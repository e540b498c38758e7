"""How deeply a JSON text nests, measured on the raw bytes before anything parses it."""

from __future__ import annotations

import re
from itertools import accumulate

# A string, escapes included, up to its closing quote or the end of the text: possessive, so a text full of quotes
# is still one linear pass (an unterminated string is swallowed whole instead of retried from every quote).
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*+(?:"|\Z)', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = [0] * 256
_STEP[ord("[")] = _STEP[ord("{")] = 1
_STEP[ord("]")] = _STEP[ord("}")] = -1


def nesting_depth(text: bytes) -> int:
    """The deepest nesting of arrays and objects in `text`; brackets inside strings do not count."""
    brackets = _STRING.sub(b"", text).translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


def nests_deeper_than(text: bytes, limit: int) -> bool:
    """Whether `text` nests more than `limit` levels. Ordinary bodies have fewer brackets than the limit in all,
    which settles it with two counts in C; only a bracket-heavy body pays for the exact measure."""
    if text.count(b"[") + text.count(b"{") <= limit:
        return False
    return nesting_depth(text) > limit
