"""The characters refused in merchant names, and how user text is isolated wherever a person reads it."""

from __future__ import annotations

import json
import subprocess
import sys
import unicodedata

import jinja2
import pytest

from shared.platform import display_text
from tests.conftest import REPO

REFUSED_CATEGORIES = {"Cc", "Cf", "Zl", "Zp"}
ALL_OF_UNICODE = "".join(chr(cp) for cp in range(sys.maxunicode + 1))


def test_the_class_is_every_control_format_and_separator_character_of_this_pythons_unicode() -> None:
    expected = {ch for ch in ALL_OF_UNICODE if unicodedata.category(ch) in REFUSED_CATEGORIES}
    matched = set(display_text.REFUSED.findall(ALL_OF_UNICODE))
    missing = sorted(f"U+{ord(ch):04X} {unicodedata.name(ch, '')}" for ch in expected - matched)
    assert not missing, f"Unicode {unicodedata.unidata_version} has more of Cc/Cf/Zl/Zp: add them to the class"
    # The class is written for the newest Unicode of the Pythons we run (Lambda's may be newer than this one): what
    # it refuses beyond this Python's Cc/Cf/Zl/Zp must be code points this Python does not know yet, nothing else.
    extra = sorted(f"U+{ord(ch):04X} {unicodedata.category(ch)}" for ch in matched - expected)
    assert all(entry.endswith(" Cn") for entry in extra), extra
    assert len(extra) <= 7, extra  # U+13439..U+1343F, Egyptian format controls of Unicode 15.0


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("evil\u202emoc.elgoog", "U+202E RIGHT-TO-LEFT OVERRIDE at position 5"),
        ("\u200bshop.example", "U+200B ZERO WIDTH SPACE at position 1"),
        ("shop.exampl\ue000e\U000e0041", "U+E0041 TAG LATIN CAPITAL LETTER A at position 14"),
        ("red\x1b[0m", "U+001B, a control character, at position 4"),
        ("ok\x9b", "U+009B, a control character, at position 3"),
        ("😀\u2028", "U+2028 LINE SEPARATOR at position 2"),  # positions count characters, not UTF-16 units
    ],
)
def test_the_first_refused_character_is_named_with_its_position(text: str, found: str) -> None:
    assert display_text.first_refused(text) == found


@pytest.mark.parametrize(
    "text", ["api.example.com", "bücher.example", "例え.テスト", "שלום.example", "Z̤̭̓a̴͓̓l̦̈́g̛͕o", "shop\ue000", "😀" * 3, "a b"]
)
def test_ordinary_text_of_any_script_passes(text: str) -> None:
    assert display_text.first_refused(text) is None
    assert display_text.visible(text) == text


def test_visible_writes_each_refused_character_as_its_code_point() -> None:
    assert display_text.visible("invoice\u202egnp.exe") == "invoice<U+202E>gnp.exe"
    assert display_text.visible("\u200b\ufeffx\xad\x7f\x85") == "<U+200B><U+FEFF>x<U+00AD><U+007F><U+0085>"
    assert display_text.visible("tab\tnew\nline") == "tab<U+0009>new<U+000A>line"
    assert display_text.visible("flag\U000e0067\U000e007f") == "flag<U+E0067><U+E007F>"


def test_json_escapes_keep_the_json_and_show_what_was_hidden() -> None:
    value = {"k\u202e": ["evil\u202egnp.exe", "\x7f\x9b\t\n", "\U000e0001", "ok ü 😀"]}
    compact = display_text.json_escapes(json.dumps(value, ensure_ascii=False))
    assert json.loads(compact) == value
    assert display_text.REFUSED.search(compact) is None
    assert "\\u202e" in compact and "ü 😀" in compact  # ordinary non-ASCII text stays readable
    pretty = display_text.json_escapes(json.dumps(value, ensure_ascii=False, indent=2))
    assert json.loads(pretty) == value
    assert pretty.splitlines()[:2] == ["{", '  "k\\u202e": [']  # its layout stays layout


def environment(extension: str) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.DictLoader(
            {
                f"t.{extension}": "[{{ value | user_text }}]",
                f"plain.{extension}": "<title>{{ value | user_text(plain=True) }}</title>",
            }
        ),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False),
    )
    display_text.register(env)
    return env


def test_the_filter_isolates_user_text_in_html_and_escapes_it() -> None:
    env = environment("html")
    html = env.get_template("t.html").render(value="<b>invoice\u202egnp.exe</b>")
    assert html == "[<bdi>&lt;b&gt;invoice&lt;U+202E&gt;gnp.exe&lt;/b&gt;</bdi>]"
    # Where an element cannot go (a title, an option, an attribute): visible escapes, HTML-escaped.
    title = env.get_template("plain.html").render(value="<b>bot\u202e</b>")
    assert title == "<title>&lt;b&gt;bot&lt;U+202E&gt;&lt;/b&gt;</title>"


def test_the_filter_shows_hidden_characters_in_plain_text() -> None:
    text = environment("txt").get_template("t.txt").render(value="<b>invoice\u202egnp.exe</b>")
    assert text == "[<b>invoice<U+202E>gnp.exe</b>]"


def test_the_payment_route_checks_merchants_without_loading_jinja() -> None:
    # The hottest Lambda imports this module for its rule; Jinja would add about 25 ms to each of its cold starts.
    code = "import sys, functions.payment_request.app; print([m for m in ('jinja2', 'markupsafe') if m in sys.modules])"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert loaded.stdout.strip() == "[]"
