"""Text a person reads: the characters refused in merchant names, and isolation of user text wherever it is shown."""

from __future__ import annotations

import re
import unicodedata
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import jinja2
    from markupsafe import Markup

# Every code point of Unicode categories Cc (C0 and C1 controls, DEL), Cf (format: bidi embeddings, overrides,
# isolates and marks, zero-width characters, word joiners, BOM, soft hyphen, tags, ...), Zl and Zp: characters that are
# invisible, or reorder or hide the text around them. Written out for Unicode 15.1 so that a cold start compiles one
# class instead of scanning all of Unicode; tests/unit/test_display_text.py checks it against unicodedata.
REFUSED = re.compile(
    "["
    "\x00-\x1f\x7f-\x9f"  # Cc
    "\xad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e"
    "\u200b-\u200f"  # zero width space, non-joiner, joiner; LRM, RLM
    "\u2028\u2029"  # Zl, Zp
    "\u202a-\u202e"  # bidi embeddings and overrides
    "\u2060-\u2064"  # word joiner, invisible operators
    "\u2066-\u206f"  # bidi isolates, deprecated format characters
    "\ufeff\ufff9-\ufffb"
    "\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    "\U000e0001\U000e0020-\U000e007f"  # tags
    "]"
)


def first_refused(text: str) -> str | None:
    """The first refused character of `text`, for an error message: "U+202E RIGHT-TO-LEFT OVERRIDE at position 5"."""
    found = REFUSED.search(text)
    if found is None:
        return None
    char, position = found.group(), found.start() + 1
    name = unicodedata.name(char, "")
    if not name:  # Unicode gives control characters no name
        return f"U+{ord(char):04X}, a control character, at position {position}"
    return f"U+{ord(char):04X} {name} at position {position}"


def visible(text: str) -> str:
    """Plain text with each refused character written out as "<U+202E>": nothing hidden, nothing reordered."""
    return REFUSED.sub(lambda found: f"<U+{ord(found.group()):04X}>", text)


def _json_escape(found: re.Match[str]) -> str:
    char = found.group()
    if char in "\t\n\r":  # whitespace between tokens: inside strings a serializer has escaped these already
        return char
    code = ord(char)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000  # JSON writes a code point beyond U+FFFF as its UTF-16 surrogate pair
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def json_escapes(json_text: str) -> str:
    """Serialized JSON with each refused character as a \\u escape: the same JSON, but nothing in it is hidden."""
    # Outside strings JSON holds only ASCII punctuation and whitespace, so any other refused character is in a string.
    return REFUSED.sub(_json_escape, json_text)


# The characters that change the direction of text (embeddings, overrides, isolates, marks): in HTML they are written
# out as well as isolated, so "Acme\u202eevil" reads "Acme<U+202E>evil", not "Acme live". Other hidden characters
# (a zero-width joiner inside an emoji, say) keep their effect inside the <bdi>.
BIDI_CONTROLS = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def isolate(text: str) -> Markup:
    """User text for HTML: escaped, its direction controls written out, in a <bdi> so its direction cannot reorder the
    page around it."""
    from markupsafe import Markup  # only renderers need it: the payment route imports this module for `first_refused`

    shown = BIDI_CONTROLS.sub(lambda found: f"<U+{ord(found.group()):04X}>", text)
    return Markup("<bdi>{}</bdi>").format(shown)


def user_text(context: jinja2.nodes.EvalContext, value: object, *, plain: bool = False) -> str | Markup:
    """The template filter for text a user supplied: isolated in HTML, written out visibly in plain text.

    `plain=True` is for places in HTML that hold no elements (a <title>, an <option>, an attribute)."""
    text = str(value)
    if context.autoescape and not plain:
        return isolate(text)
    return visible(text)


def register(environment: jinja2.Environment) -> None:
    """Make `user_text` available to an environment's templates."""
    import jinja2  # here, not at the top: loading Jinja would add about 25 ms to the payment route's cold start

    environment.filters["user_text"] = jinja2.pass_eval_context(user_text)


def masked_email(address: str) -> str:
    """f***@example.com: enough for an agent's developer to know which inbox to look in, no more."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}" if domain else "***"
