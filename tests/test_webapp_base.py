"""The escaping template helper: string.Template syntax, escaped values, strict keys."""
from __future__ import annotations

from string import Template

import pytest

from picron.webapp.base import Raw, redirect, render


def test_values_are_escaped_unless_raw():
    out = render("<p title=\"$title\">$body ${tail}x</p>", title='"><script>', body="a & b",
                 tail=Raw("<b>ok</b>"))
    assert out == '<p title="&quot;&gt;&lt;script&gt;">a &amp; b <b>ok</b>x</p>'
    assert isinstance(out, Raw)


def test_template_syntax_matches_string_template():
    text = "$$5 {literal} {{double}} $a${b}c"
    values = {"a": "1", "b": "2"}
    assert render(text, **values) == Template(text).substitute(values)
    assert render(Template(text), **values) == "$5 {literal} {{double}} 12c"


def test_a_missing_value_fails_loudly():
    with pytest.raises(KeyError):
        render("<p>$missing</p>")
    with pytest.raises(ValueError):
        render("cost: $ 5")


def test_raw_plus_str_is_no_longer_raw():
    assert not isinstance(Raw("<b>") + "<i>", Raw)
    assert render("$x", x=Raw("<b>") + "<i>") == "&lt;b&gt;&lt;i&gt;"


@pytest.mark.parametrize("target", ["//evil.com/", "https://evil.com", "\\\\evil", "evil"])
def test_redirects_stay_on_this_site(target):
    assert redirect(target).headers["Location"] == "/"
    assert redirect("/history?task=1").headers["Location"] == "/history?task=1"
