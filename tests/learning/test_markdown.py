"""Markdown rendering for lessons, courses and assignments: the HTML it makes, what it refuses to
let through, and the plain text used for previews."""

from __future__ import annotations

import re
import uuid
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser

import jinja2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markupsafe import Markup

from portal.learning.markdown import (
    MAX_SOURCE,
    heading_anchors,
    markdown_blocks,
    markdown_to_text,
    render_markdown,
    sanitize_html,
)

# What may appear in rendered HTML, written out here independently of the module.
TAGS = {"p", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li", "strong", "em", "code", "pre",
        "blockquote", "a", "img", "table", "thead", "tbody", "tr", "th", "td", "hr", "br", "del"}
ATTRIBUTES = {"a": {"href", "title", "rel"}, "img": {"src", "alt", "title"}, "code": {"class"},
              "th": {"align"}, "td": {"align"}, "ol": {"start"},
              **{f"h{level}": {"id"} for level in range(2, 7)}}
#: What a heading id may look like: our prefix, then ASCII letters, digits and single hyphens.
HEADING_ID = re.compile(r"s-[a-z0-9]+(-[a-z0-9]+)*")
SAFE_SCHEMES = {"http", "https", "mailto"}


def event_handler_attributes(html: str) -> list[str]:
    """`` onxxx=`` attributes inside tags. Attribute values are always double-quoted in the
    output (a quote inside one is ``&quot;``), so they are blanked first: an alt text that
    reads " onerror=" is text, not an attribute."""
    tags = (re.sub(r'"[^"]*"', '""', tag) for tag in re.findall(r"<[^>]*>", html))
    return [match for tag in tags for match in re.findall(r"\son\w+\s*=", tag, re.IGNORECASE)]


class _Scan(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attributes.extend((tag, name, value or "") for name, value in attrs)

    handle_startendtag = handle_starttag


def scan(html: str) -> _Scan:
    scanner = _Scan()
    scanner.feed(html)
    scanner.close()
    return scanner


def url_scheme(url: str) -> str | None:
    """The scheme a browser would see: it ignores ASCII whitespace and control characters."""
    squeezed = re.sub(r"[\x00-\x20\x7f]", "", url)
    match = re.match(r"([A-Za-z][A-Za-z0-9+.\-]*):", squeezed)
    return match.group(1).lower() if match else None


def assert_safe(html: str) -> None:
    """Only allowed tags and attributes, no event handlers or styles, only safe URLs."""
    assert "<script" not in html.lower()
    assert not event_handler_attributes(html), html
    found = scan(html)
    assert set(found.tags) <= TAGS, html
    for tag, name, value in found.attributes:
        assert name in ATTRIBUTES.get(tag, set()), (tag, name, html)
        if name == "href":
            assert url_scheme(value) in SAFE_SCHEMES | {None}, html
        if name == "src":
            assert url_scheme(value) is None and not value.startswith("//"), html
        if name == "class":
            assert re.fullmatch(r"language-[\w+#.\-]+", value), html
        if name == "rel":
            assert value == "noopener noreferrer nofollow"
        if name == "id":
            assert HEADING_ID.fullmatch(value), html


# --- what Markdown becomes --------------------------------------------------------------------

def test_returns_markup_that_templates_do_not_escape_again():
    html = render_markdown("**bold**")
    assert isinstance(html, Markup)
    page = jinja2.Environment(autoescape=True).from_string("<div>{{ body }}</div>").render(body=html)
    assert page == "<div><p><strong>bold</strong></p></div>"


def test_empty_and_none_give_empty_markup():
    assert render_markdown("") == Markup("")
    assert render_markdown("   \n\n ") == Markup("")
    assert render_markdown(None) == Markup("")


def test_headings_are_demoted_one_level():
    html = render_markdown("# One\n\n## Two\n\n### Three\n\n###### Six")
    assert html == ('<h2 id="s-one">One</h2>\n<h3 id="s-two">Two</h3>\n<h4 id="s-three">Three</h4>\n'
                    '<h6 id="s-six">Six</h6>')
    assert "<h1" not in html


def test_headings_get_ids_made_from_their_text_unique_in_the_document():
    html = render_markdown("# Loops\n\ntext\n\n## Loops\n\n# Loops 2\n\n### Loops")
    assert re.findall(r'id="([^"]*)"', html) == ["s-loops", "s-loops-2", "s-loops-2-2", "s-loops-3"]


def test_heading_ids_are_ascii_slugs_of_the_text_and_never_markup():
    html = render_markdown('# Ça "va"? <script>alert(1)</script>\n\n## Use `for` with [range](http://example.com)\n\n'
                           "## 🙂\n\n## ---\n\n#  \n\n## " + "word " * 40)
    ids = re.findall(r'<h[2-6] id="([^"]*)"', html)
    # Any script is transliterated (anyascii); text with no letters or digits at all is a "section".
    assert ids[:5] == ["s-ca-va-script-alert-1-script", "s-use-for-with-range", "s-slight-smile", "s-section",
                       "s-section-2"]
    assert ids[5].startswith("s-word-word") and len(ids[5]) <= 2 + 60
    assert_safe(html)


def test_the_sanitizer_keeps_only_our_heading_ids():
    html = sanitize_html('<h2 id="s-ok">a</h2><h3 id="main">b</h3><p id="s-x">c</p><h4 id="s-a b">d</h4>'
                         '<h5 id="S-UP">e</h5>')
    assert html == '<h2 id="s-ok">a</h2><h3>b</h3><p>c</p><h4>d</h4><h5>e</h5>'


def test_heading_anchors_are_one_function_for_pages_and_passages():
    assert heading_anchors(["Key takeaways", "Key takeaways", "Key-takeaways"]) == [
        "s-key-takeaways", "s-key-takeaways-2", "s-key-takeaways-3"]
    source = "intro\n\n# Why budget?\n\nBecause.\n\n## Why budget?\n\n```\ncode\n```"
    blocks = markdown_blocks(source)
    assert [(b.heading, b.anchor, b.text, b.code) for b in blocks] == [
        (False, "", "intro", False), (True, "s-why-budget", "Why budget?", False),
        (False, "", "Because.", False), (True, "s-why-budget-2", "Why budget?", False), (False, "", "code", True)]
    assert re.findall(r'id="([^"]*)"', render_markdown(source)) == ["s-why-budget", "s-why-budget-2"]


def test_lists_and_emphasis():
    html = render_markdown("- *em* and **strong**\n- `code` and ~~gone~~\n\n3. three\n4. four")
    assert "<ul>\n<li><em>em</em> and <strong>strong</strong></li>" in html
    assert "<li><code>code</code> and <del>gone</del></li>" in html
    assert '<ol start="3">\n<li>three</li>\n<li>four</li>\n</ol>' in html
    assert_safe(html)


def test_blockquote_rule_and_hard_break():
    html = render_markdown("> quoted\n\n---\n\nline  \nbreak")
    assert html == "<blockquote>\n<p>quoted</p>\n</blockquote>\n<hr>\n<p>line<br>\nbreak</p>"


def test_fenced_code_keeps_its_language_class_and_escapes_content():
    html = render_markdown("```python title=x\nif a < b:\n    print('<b>')\n```")
    assert html == ('<pre><code class="language-python">if a &lt; b:\n'
                    "    print('&lt;b&gt;')\n</code></pre>")


@pytest.mark.parametrize("info", ['"><script>', "<script>alert(1)</script>", "x onclick=alert(1)"])
def test_fence_info_cannot_smuggle_markup_into_the_class(info):
    html = render_markdown(f"```{info}\nbody\n```")
    assert "<script" not in html.lower()
    assert "onclick" not in html.lower()
    assert "<pre><code" in html and "body" in html
    assert_safe(html)


def test_fence_without_language_has_no_class():
    assert render_markdown("```\nplain\n```") == "<pre><code>plain\n</code></pre>"


def test_tables_with_alignment():
    html = render_markdown("| Left | Mid | Right |\n|:-----|:---:|------:|\n| 1 | *2* | 3 |")
    assert "<table>\n<thead>\n<tr>\n" in html
    assert '<th align="left">Left</th>' in html
    assert '<th align="center">Mid</th>' in html
    assert '<td align="right">3</td>' in html
    assert '<td align="center"><em>2</em></td>' in html
    assert "style" not in html
    assert_safe(html)


def test_links_get_rel_and_keep_allowed_targets():
    html = render_markdown(
        '[site](https://example.org/a?b=1 "A title") [plain](http://example.org) '
        "[mail](mailto:team@example.org) [here](/courses/3#part) [up](../notes) <https://example.net>"
    )
    assert ('<a href="https://example.org/a?b=1" title="A title" rel="noopener noreferrer nofollow">'
            "site</a>") in html
    assert '<a href="http://example.org" rel="noopener noreferrer nofollow">plain</a>' in html
    assert '<a href="mailto:team@example.org" rel="noopener noreferrer nofollow">mail</a>' in html
    assert '<a href="/courses/3#part" rel="noopener noreferrer nofollow">here</a>' in html
    assert '<a href="../notes" rel="noopener noreferrer nofollow">up</a>' in html
    assert '<a href="https://example.net" rel="noopener noreferrer nofollow">https://example.net</a>' in html
    assert html.count("<a ") == 6


def test_local_images_stay_images():
    html = render_markdown('![A diagram](/uploads/7/diagram.png "Figure 1")')
    assert html == '<p><img src="/uploads/7/diagram.png" alt="A diagram" title="Figure 1"></p>'


def test_remote_images_become_links_to_them():
    html = render_markdown("![Remote *chart*](https://cdn.example.com/c.png) ![proto](//cdn.example.com/p.png)")
    assert "<img" not in html
    assert ('<a href="https://cdn.example.com/c.png" rel="noopener noreferrer nofollow">'
            "Remote <em>chart</em></a>") in html
    assert '<a href="//cdn.example.com/p.png" rel="noopener noreferrer nofollow">proto</a>' in html


def test_data_and_script_images_keep_only_their_alt_text():
    html = render_markdown("![pixel](data:image/svg+xml;base64,PHN2Zz4=) ![x](javascript:alert(1))")
    assert html == "<p>pixel x</p>"


# --- what must not survive --------------------------------------------------------------------

# Markdown links whose target is the attack: the link goes, its text stays, and no trace of the
# scheme is left anywhere in the output.
BAD_LINKS = [
    "[x](javascript:alert(1))",
    "[x](JaVaScRiPt:alert(1))",
    "[x](java&#x09;script:alert(1))",
    "[x](java&#9;script:alert(1))",
    "[x](&#106;avascript:alert(1))",
    "[x](javascript&colon;alert(1))",
    "[x](%6Aavascript:alert(1))",
    "[x](<java\tscript:alert(1)>)",
    "[x](<javascript:alert(1)>)",
    "[x]( javascript:alert(1) )",
    "[x](vbscript:msgbox(1))",
    "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "[x](DATA:text/html,<script>alert(1)</script>)",
    "[x](file:///etc/passwd)",
    "[x][ref]\n\n[ref]: javascript:alert(1)",
    "[x][ref]\n\n[ref]: <JAVASCRIPT:alert(1)>",
    "![x](javascript:alert(1))",
    "![x](data:image/png;base64,iVBORw0KGgo=)",
    "[![x](/ok.png)](javascript:alert(1))",
]


@pytest.mark.parametrize("source", BAD_LINKS)
def test_dangerous_link_targets_are_removed(source):
    html = render_markdown(source)
    lowered = html.lower()
    for trace in ("javascript", "vbscript", "data:", "file:", "<a", "href", "alert"):
        assert trace not in lowered, (source, html)
    assert "x" in html  # the link text is kept
    assert_safe(html)


# Raw HTML in the source: it is shown as text, never parsed into elements.
RAW_HTML = [
    "<script>alert(1)</script>",
    "<SCRIPT SRC=//evil.example/x.js></SCRIPT>",
    "<img src=x onerror=alert(1)>",
    '<a href="javascript:alert(1)">x</a>',
    '<a href="JaVaScRiPt:alert(1)" onclick="alert(1)">x</a>',
    '<iframe src="https://evil.example"></iframe>',
    "<svg onload=alert(1)><circle r=1 /></svg>",
    '<div style="background:url(javascript:alert(1))">x</div>',
    '<p onclick="alert(1)" onmouseover=alert(1)>x</p>',
    "<style>body{display:none}</style>",
    '<object data="data:text/html,<script>alert(1)</script>"></object>',
    '<math><mtext><table><mglyph><style><img src=x onerror=alert(1)></style></mglyph></table></mtext></math>',
    "<!-- <script>alert(1)</script> -->",
    '<details open ontoggle="alert(1)">x</details>',
    "<body onload=alert(1)>",
    '<form action="javascript:alert(1)"><button>x</button></form>',
    '<meta http-equiv="refresh" content="0;url=javascript:alert(1)">',
    "<<script>script>alert(1)<</script>/script>",
    "Paragraph\n\n<div>\n*inside*\n</div>",
    "`<script>alert(1)</script>`",
    "```html\n<script>alert(1)</script>\n```",
]


@pytest.mark.parametrize("source", RAW_HTML)
def test_raw_html_is_escaped_text(source):
    html = render_markdown(source)
    lowered = html.lower()
    assert "<script" not in lowered
    assert not event_handler_attributes(html)
    for tag in ("<img", "<iframe", "<svg", "<style", "<div", "<object", "<math", "<a ", "<body",
                "<form", "<meta", "<details", "<!--"):
        assert tag not in lowered, (source, html)
    assert "&lt;" in html  # the author's markup is visible as text
    assert_safe(html)


def test_raw_html_reads_as_the_author_wrote_it():
    assert render_markdown('<img src=x onerror="alert(1)">') == (
        '<p>&lt;img src=x onerror="alert(1)"&gt;</p>'
    )


def test_autolink_with_a_dangerous_scheme_is_plain_text():
    html = render_markdown("<javascript:alert(1)> <JAVASCRIPT:alert(1)>")
    assert "<a" not in html and "href" not in html
    assert_safe(html)


def test_titles_and_alt_text_cannot_break_out_of_attributes():
    html = render_markdown(
        '[x](/a "\\"><script>alert(1)</script>") ![a" onerror="alert(1)](/i.png \'" onload=x \')'
    )
    assert "<script" not in html.lower()
    assert not event_handler_attributes(html)
    found = scan(html)
    assert found.tags == ["p", "a", "img"]
    assert ("a", "title", '"><script>alert(1)</script>') in found.attributes
    assert ("img", "alt", 'a" onerror="alert(1)') in found.attributes
    assert_safe(html)


def test_sanitizer_layer_alone_strips_what_the_parser_never_emits():
    html = sanitize_html(
        '<h1 id="t">Top</h1><a href="javascript:alert(1)" onclick="x()" target="_blank">a</a>'
        '<a href="https://ok.example" rel="opener">b</a><img src="https://evil.example/t.gif" onerror="x()">'
        '<img src="/local.png" style="width:1px"><code class="language-js evil">c</code>'
        '<code class="language-py">d</code><script>alert(1)</script><iframe src="/x"></iframe>'
        '<svg onload="x()"><g></g></svg><p style="color:red" onmouseover="x()">p</p>'
        '<td align="justify">cell</td><ol start="2; x">e</ol><ol start="5">f</ol>'
    )
    assert "alert" not in html
    assert "Top" in html and "<h1" not in html
    assert "<a rel=\"noopener noreferrer nofollow\">a</a>" in html
    assert '<a href="https://ok.example" rel="noopener noreferrer nofollow">b</a>' in html
    assert '<img src="/local.png">' in html
    assert "evil.example" not in html
    assert "<code>c</code>" in html and '<code class="language-py">d</code>' in html
    assert "<p>p</p>" in html
    assert '<ol start="5">' in html and 'start="2' not in html
    assert "justify" not in html
    assert_safe(html)


# --- limits and robustness --------------------------------------------------------------------

def test_oversize_source_is_refused():
    render_markdown("a" * MAX_SOURCE)  # exactly at the limit is fine
    with pytest.raises(ValueError, match="200,000"):
        render_markdown("a" * (MAX_SOURCE + 1))
    with pytest.raises(ValueError, match="limit"):
        markdown_to_text("a" * (MAX_SOURCE + 1))


def test_deep_nesting_does_not_raise():
    html = render_markdown("before\n\n" + "> " * 500 + "deep\n\nafter")
    assert html.startswith("<p>before</p>\n<blockquote>")
    assert html.endswith("</blockquote>\n<p>after</p>")
    assert_safe(html)
    html = render_markdown("".join("  " * i + "- x\n" for i in range(300)))
    assert html.startswith("<ul>\n<li>x")
    assert_safe(html)


def test_rendering_from_many_threads_matches_rendering_in_one():
    sources = [f"# Part {n}\n\n*{n}* [link](/l/{n}) ![i](/i/{n}.png)\n\n```py\nx = {n}\n```"
               for n in range(40)]
    expected = [render_markdown(source) for source in sources]
    with ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(render_markdown, sources)) == expected


FRAGMENTS = st.sampled_from([
    "<script>", "</script>", "<SCRIPT", "<img src=x onerror=alert(1)>", "javascript:", "JaVaScRiPt:",
    "java\tscript:", "&#x09;", "&#106;", "&colon;", "data:", " onload=", " onerror=", '"', "'", "<", ">",
    "[", "]", "(", ")", "![", "](", "`", "```", "~~~", "*", "_", "~~", "#", "> ", "- ", "1. ", "|", "|-|",
    "\n", "\n\n", "    ", "\\", "&", "&amp;", "<!--", "-->", "<a href=", "http://", "/x", "//", "%6A",
    "<svg", "<iframe", "style=", "\x00", "\r\n", "\t", "\u2028", "\ufeff",
])
SOURCES = st.one_of(st.text(max_size=300), st.lists(st.one_of(FRAGMENTS, st.text(max_size=8)),
                                                    max_size=60).map("".join))
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(source=SOURCES)
def test_any_text_renders_to_safe_html(source):
    html = render_markdown(source)
    assert isinstance(html, Markup)
    assert "<script" not in html.lower()
    assert not event_handler_attributes(html)
    assert_safe(html)


@FUZZ
@given(source=SOURCES)
def test_any_text_gives_unique_safe_heading_ids_that_the_blocks_share(source):
    html = render_markdown(source)
    ids = re.findall(r'<h[2-6] id="([^"]*)"', html)
    assert len(ids) == len(set(ids))
    assert all(HEADING_ID.fullmatch(anchor) for anchor in ids)
    anchors = [block.anchor for block in markdown_blocks(source) if block.heading]
    # Every heading the page shows has the anchor the tutor's passages use (a heading whose
    # text is empty is still a heading with an id).
    assert ids == anchors


@FUZZ
@given(source=SOURCES, limit=st.integers(min_value=1, max_value=120))
def test_any_text_gives_plain_text_within_the_limit(source, limit):
    full = markdown_to_text(source, None)
    text = markdown_to_text(source, limit)
    assert len(text) <= limit
    assert not re.search(r"\s\s", full) and full == full.strip()
    if len(full) <= limit:
        assert text == full
    else:
        assert text.endswith("…")
        assert full.startswith(text[:-1])


# --- plain text -------------------------------------------------------------------------------

def test_text_has_no_markup():
    source = ("# Welcome\n\nThis is **bold**, *em*, ~~gone~~ and `code` with a [link](https://x.example)."
              "\n\n- one\n- two\n\n![diagram](/d.png)\n\n> quoted")
    assert markdown_to_text(source, None) == (
        "Welcome This is bold, em, gone and code with a link. one two diagram quoted"
    )


def test_text_of_tables_code_and_dropped_links():
    source = "| a | b |\n|---|---|\n| 1 | 2 |\n\n```py\nx = 1\n```\n\n[click](javascript:alert(1))"
    assert markdown_to_text(source, None) == "a b 1 2 x = 1 click"


def test_text_collapses_whitespace():
    assert markdown_to_text("  a\n\n\n   b\t\tc  \n", None) == "a b c"
    assert markdown_to_text("first\nsecond  \nthird", None) == "first second third"


def test_text_keeps_angle_brackets_as_text_for_the_template_to_escape():
    text = markdown_to_text("Use <b> tags &amp; a < b", None)
    assert text == "Use <b> tags & a < b"
    assert not isinstance(text, Markup)
    rendered = jinja2.Environment(autoescape=True).from_string("{{ t }}").render(t=text)
    assert rendered == "Use &lt;b&gt; tags &amp; a &lt; b"


def test_text_truncates_on_a_word_boundary():
    assert markdown_to_text("alpha beta gamma", 16) == "alpha beta gamma"
    assert markdown_to_text("alpha beta gamma", 15) == "alpha beta…"
    assert markdown_to_text("alpha beta gamma", 12) == "alpha beta…"
    assert markdown_to_text("alpha beta gamma", 11) == "alpha beta…"
    assert markdown_to_text("alpha beta gamma", 10) == "alpha…"


def test_text_truncation_drops_trailing_punctuation_before_the_ellipsis():
    assert markdown_to_text("One, two; three.", 10) == "One, two…"
    assert markdown_to_text("Done. Next part", 7) == "Done…"


def test_text_cuts_a_single_long_word():
    assert markdown_to_text("a" * 50, 10) == "a" * 9 + "…"


def test_text_default_limit_and_bad_limits():
    long = " ".join(["word"] * 200)
    assert len(markdown_to_text(long)) <= 280
    assert markdown_to_text(long).endswith("…")
    assert markdown_to_text(None) == ""
    with pytest.raises(ValueError):
        markdown_to_text("x", 0)


def test_renderings_are_kept_by_source_and_bounded():
    from portal.learning import markdown

    source = "# Kept\n\nA paragraph about *caching*. " + uuid.uuid4().hex
    first = render_markdown(source)
    assert render_markdown(source) is first  # the same source: the same rendering, not made again
    assert render_markdown(source + " edited") != first  # an edit is a new source
    long = "word " * (markdown.RENDERED_SOURCE_LIMIT // 5 + 1)
    before = markdown._rendered.cache_info().currsize
    assert render_markdown(long).startswith("<p>word")
    assert markdown._rendered.cache_info().currsize == before  # too long to keep
    assert markdown._rendered.cache_info().maxsize == markdown.RENDERED_KEPT
