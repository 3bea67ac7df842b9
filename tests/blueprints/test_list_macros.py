"""The filter form and pager macros (templates/macros/lists.html), and that list pages use them
instead of writing their own copies."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
MACROS = TEMPLATES / "macros" / "lists.html"


def _render(app, source: str, **context) -> str:
    with app.test_request_context():
        return app.jinja_env.from_string('{% from "macros/lists.html" import filter_form, pager, page_links %}'
                                         + source).render(**context)


def _squeezed(html: str) -> str:
    return re.sub(r"\s+", " ", html).strip()


def test_filter_form_is_a_search_form_that_swaps_the_results(app):
    html = _squeezed(_render(app, '{% call filter_form("/admin/users", trigger="change from:select, submit") %}'
                                  '<input name="q">{% endcall %}'))
    assert html.startswith('<form method="get" action="/admin/users" class="filters" role="search"')
    for attribute in ('hx-get="/admin/users"', 'hx-target="#results"', 'hx-swap="outerHTML"', 'hx-push-url="true"',
                      'hx-trigger="change from:select, submit"', 'hx-sync="this:replace"'):
        assert attribute in html
    assert html.endswith('<input name="q"> </form>')


def test_filter_form_options(app):
    html = _squeezed(_render(app, '{% call filter_form(url, target="#report", class="filters x", label="Filter it") %}'
                                  '{% endcall %}', url="/r?a=1&b=2"))
    assert 'action="/r?a=1&amp;b=2"' in html and 'class="filters x"' in html and 'aria-label="Filter it"' in html
    assert 'hx-target="#report"' in html and "hx-trigger" not in html


def test_pager_in_a_table_replaces_its_row_with_the_next_rows(app):
    html = _squeezed(_render(app, '{{ pager("/wallet/?after=abc", 5, "Show older") }}'))
    assert html == ('<tr class="load-more"><td colspan="5"> <a href="/wallet/?after=abc" hx-get="/wallet/?after=abc" '
                    'hx-target="closest tr" hx-swap="outerHTML" role="button" class="secondary outline">Show older</a> '
                    '</td></tr>')


def test_pager_in_a_list_is_an_item(app):
    html = _squeezed(_render(app, '{{ pager("/n?after=x", button="secondary") }}'))
    assert html == ('<li class="load-more"> <a href="/n?after=x" hx-get="/n?after=x" hx-target="closest li" '
                    'hx-swap="outerHTML" role="button" class="secondary">Show more</a> </li>')


@pytest.mark.parametrize(("previous", "following"), [("/p?page=1", "/p?page=3"), (None, "/p?page=2"), ("/p?page=1", None)])
def test_page_links(app, previous, following):
    html = _squeezed(_render(app, '{{ page_links(previous, following, "Page 2", target="#results") }}',
                             previous=previous, following=following))
    assert html.startswith('<nav class="pager" aria-label="Pages">') and '<span class="muted small">Page 2</span>' in html
    assert ('rel="prev"' in html) == bool(previous) and ('rel="next"' in html) == bool(following)
    # an empty cell keeps the other link on its side
    assert html.count("<span></span>") == (previous is None) + (following is None)
    if following:
        assert (f'<a href="{following}" hx-get="{following}" hx-target="#results" hx-swap="outerHTML" '
                'hx-push-url="true" role="button" class="secondary outline" rel="next">Next →</a>') in html


def test_list_pages_use_the_macros_instead_of_their_own_copies():
    pages = [path for path in TEMPLATES.rglob("*.html") if path != MACROS]
    copies = {
        "load-more row": re.compile(r'class="load-more"'),
        "pager nav": re.compile(r'<nav class="pager"'),
        "filter form": re.compile(r'<form method="get"[^>]*hx-get=', re.S),
    }
    found = [f"{path.relative_to(TEMPLATES)}: {what}" for path in pages for what, pattern in copies.items()
             if pattern.search(path.read_text())]
    assert found == []
