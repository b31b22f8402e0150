"""The web app's pure helpers: URLs built from the query, highlights, redirects after login."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from api.web_routes import _highlight, _safe_next, _toggle, _url


def test_url_keeps_the_query_applies_changes_and_resets_the_page() -> None:
    params = {"q": "cat & dog", "label": ["face", "tabby"], "page": 3, "source": None}
    assert _url("/", params) == "/?q=cat+%26+dog&label=face&label=tabby"
    assert _url("/", params, page=4, label=_toggle(params["label"], "face")) == "/?q=cat+%26+dog&label=tabby&page=4"
    assert _url("/", {}, q="") == "/"


def test_highlight_marks_only_the_matches() -> None:
    assert str(_highlight("a <b>cat</b> <script>x</script>")) == "a <mark>cat</mark> &lt;script&gt;x&lt;/script&gt;"
    assert str(_highlight("<b>unbalanced")) == "unbalanced"


@given(st.text(max_size=200))
def test_highlight_never_lets_markup_through(text: str) -> None:
    out = str(_highlight(text)).replace("<mark>", "").replace("</mark>", "")
    assert "<" not in out and ">" not in out


def test_login_redirects_only_within_the_site() -> None:
    assert _safe_next("/?q=cat") == "/?q=cat"
    for bad in ("//evil.example/x", "https://evil.example", "/\\evil.example", "", None, "javascript:alert(1)"):
        assert _safe_next(bad) == "/"
