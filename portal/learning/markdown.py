"""Markdown for lessons, courses and assignments: safe HTML for pages, plain text for previews.

Authors write CommonMark with tables and strikethrough. Rendering is two layers, each safe on its
own:

1. markdown-it-py parses with raw HTML switched off, so any ``<tag>`` in the source comes out as
   escaped text. Link and image targets are vetted on the token stream (see ``_vet_inline``):
   a link whose target is not http, https, mailto or relative keeps its text and loses the link.
2. nh3 (the ammonia sanitizer) re-parses the HTML and keeps only an allow-list of tags and
   attributes, URL schemes and ``language-xxx`` classes, and puts ``rel="noopener noreferrer
   nofollow"`` on every link.

The page's Content-Security-Policy (no inline script or style) is a third layer.

Choices:

- Headings are demoted one level (``#`` becomes ``<h2>``, ``######`` stays ``<h6>``): the page
  around the text owns its ``<h1>``, so the document outline stays whole.
- Images are kept only when their source is a same-site relative path (an uploaded file served
  by the portal). The CSP allows images from the portal itself only, and an image from elsewhere
  would also tell a third party who reads the lesson and when; such an image becomes a link to it
  with its alt text, which the reader may follow. ``data:`` images are refused outright.
- Table column alignment comes out as the ``align`` attribute (left, center or right): the
  markdown library writes it as an inline ``style``, which the CSP would block anyway.
- ``~~text~~`` renders as ``<del>``.
- Each heading gets an ``id`` (``heading_anchors``): ``s-`` and a slug of its text, unique within
  the document (``s-loops``, ``s-loops-2``), so a page can link to a section (the tutor cites
  sections this way). The prefix keeps them clear of the page's own ids; the slug is ASCII letters,
  digits and hyphens only, and the sanitizer lets through no other ``id``.

Nothing here holds mutable state shared between requests but a bounded cache of recent
renderings keyed by their source (``render_markdown``): the MarkdownIt instance and the nh3
Cleaner are configured once and only read afterwards, and each render builds its own parse state.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from urllib.parse import unquote

import nh3
from anyascii import anyascii
from markdown_it import MarkdownIt
from markdown_it.rules_core import StateCore
from markdown_it.token import Token
from markupsafe import Markup

__all__ = ["ANCHOR_PREFIX", "MAX_SOURCE", "TextBlock", "heading_anchors", "markdown_blocks", "markdown_to_text",
           "render_markdown", "sanitize_html"]

#: The longest source accepted, in characters; longer ones raise ``ValueError``.
MAX_SOURCE = 200_000

#: Schemes a link may use; a link with no scheme (a relative one) is allowed as well.
LINK_SCHEMES = frozenset({"http", "https", "mailto"})

ALLOWED_TAGS = frozenset({
    "p", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li", "strong", "em", "code", "pre",
    "blockquote", "a", "img", "table", "thead", "tbody", "tr", "th", "td", "hr", "br", "del",
})

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
# Browsers drop ASCII tab and newline anywhere in a URL and C0 controls and spaces around it.
_URL_NOISE = re.compile(r"[\x00-\x20\x7f]")
_LANGUAGE_CLASS = re.compile(r"language-[A-Za-z0-9][A-Za-z0-9_+#.\-]{0,39}")
_ALIGN_STYLE = re.compile(r"text-align:(left|center|right)")
_WHITESPACE = re.compile(r"\s+")
_SPACES = re.compile(r"[^\S\n]+")

#: Every heading id starts with this: the page's own ids never do.
ANCHOR_PREFIX = "s-"
#: Longest slug kept from a heading's text (before the prefix and any ``-2`` suffix).
_SLUG_MAX = 60
_SLUG_JUNK = re.compile(r"[^a-z0-9]+")
_ANCHOR = re.compile(r"s-[a-z0-9]+(?:-[a-z0-9]+)*")


# --- heading anchors --------------------------------------------------------------------------

def _slug(heading: str) -> str:
    slug = _SLUG_JUNK.sub("-", anyascii(heading).lower()).strip("-")
    if len(slug) > _SLUG_MAX:
        cut = slug[:_SLUG_MAX]
        slug = cut.rsplit("-", 1)[0] if "-" in cut else cut
    return slug or "section"


def heading_anchors(headings: list[str]) -> list[str]:
    """The ``id`` of each heading of one document, in order: ``s-`` + a slug of its text
    (transliterated to ASCII, lower case, runs of anything else made one hyphen), with ``-2``,
    ``-3`` ... added where an earlier heading already took the id. The lesson page and the
    tutor's passages both get their anchors here, so a citation's link lands on its section."""
    taken: set[str] = set()
    anchors = []
    for heading in headings:
        base = ANCHOR_PREFIX + _slug(heading)
        anchor, n = base, 1
        while anchor in taken:
            n += 1
            anchor = f"{base}-{n}"
        taken.add(anchor)
        anchors.append(anchor)
    return anchors


# --- URL checks -------------------------------------------------------------------------------

def _url_forms(url: str) -> tuple[str, ...]:
    """The URL as written and percent-decoded, each without the characters browsers ignore."""
    return tuple(_URL_NOISE.sub("", form) for form in (url, unquote(url)))


def _scheme_of(form: str) -> str | None:
    """The scheme of a URL; ``""`` when a colon comes before any ``/?#`` without being a
    valid scheme (no sensible relative URL looks like that); ``None`` for a relative URL."""
    match = _SCHEME.match(form)
    if match:
        return match.group(1).lower()
    head = re.split(r"[/?#]", form, maxsplit=1)[0]
    return "" if ":" in head else None


def link_allowed(url: str) -> bool:
    """May ``url`` be a link target: http, https, mailto, or relative."""
    for form in _url_forms(url):
        scheme = _scheme_of(form)
        if scheme is not None and scheme not in LINK_SCHEMES:
            return False
    return True


def image_allowed(url: str) -> bool:
    """May ``url`` be an image source: a relative URL on this site (not ``//host/...``)."""
    for form in _url_forms(url):
        if not form or _scheme_of(form) is not None:
            return False
        if len(form) >= 2 and form[0] in "/\\" and form[1] in "/\\":
            return False
    return True


# --- markdown-it ------------------------------------------------------------------------------

def _vet_inline(children: list[Token]) -> list[Token]:
    """Drop links to disallowed targets (keeping their text) and turn images that are not local
    into links to them (or into their alt text when the target is not a link either)."""
    vetted: list[Token] = []
    dropping_link = False
    for token in children:
        if token.type == "link_open":
            if not link_allowed(str(token.attrGet("href") or "")):
                dropping_link = True
                continue
        elif token.type == "link_close" and dropping_link:
            dropping_link = False  # CommonMark links do not nest
            continue
        elif token.type == "image":
            src = str(token.attrGet("src") or "")
            if not image_allowed(src):
                alt = _vet_inline(token.children or [])
                if link_allowed(src):
                    link_open = Token("link_open", "a", 1)
                    link_open.attrSet("href", src)
                    title = token.attrGet("title")
                    if title:
                        link_open.attrSet("title", str(title))
                    vetted.extend([link_open, *alt, Token("link_close", "a", -1)])
                else:
                    vetted.extend(alt)
                continue
            token.children = _vet_inline(token.children or [])
        elif token.type in ("s_open", "s_close"):
            token.tag = "del"
        vetted.append(token)
    return vetted


def _portal_rules(state: StateCore) -> None:
    """Core rule run after inline parsing: vet links and images, demote headings and give them
    ids, turn table alignment styles into ``align`` attributes."""
    opens = [i for i, token in enumerate(state.tokens) if token.type == "heading_open"]
    texts = []
    for i in opens:
        parts: list[str] = []
        following = state.tokens[i + 1] if i + 1 < len(state.tokens) else None
        if following is not None and following.type == "inline":
            _inline_text(following.children or [], parts)
        texts.append(_WHITESPACE.sub(" ", "".join(parts)).strip())
    for i, anchor in zip(opens, heading_anchors(texts), strict=True):
        state.tokens[i].attrSet("id", anchor)
    for token in state.tokens:
        if token.type == "inline" and token.children:
            token.children = _vet_inline(token.children)
        elif token.type in ("heading_open", "heading_close"):
            level = int(token.tag[1])
            token.tag = f"h{min(level + 1, 6)}"
        elif token.type in ("th_open", "td_open"):
            style = token.attrGet("style")
            if style is not None:
                token.attrs.pop("style", None)
                match = _ALIGN_STYLE.fullmatch(str(style))
                if match:
                    token.attrSet("align", match.group(1))


def _build_parser() -> MarkdownIt:
    parser = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    parser.enable(["table", "strikethrough"])
    # Every link target is accepted by the parser so that the link's text is parsed as the
    # author meant; _portal_rules then decides which targets stay links.
    parser.validateLink = lambda _url: True  # type: ignore[method-assign]
    parser.core.ruler.push("azora_portal", _portal_rules)
    return parser


_PARSER = _build_parser()


# --- nh3 --------------------------------------------------------------------------------------

def _attribute_filter(element: str, attribute: str, value: str) -> str | None:
    if attribute == "id":
        return value if _ANCHOR.fullmatch(value) and len(value) <= 100 else None
    if attribute == "class":
        return value if element == "code" and _LANGUAGE_CLASS.fullmatch(value) else None
    if element == "ol" and attribute == "start":
        return value if value.isascii() and value.isdigit() and len(value) <= 9 else None
    if element == "img" and attribute == "src":
        return value if image_allowed(value) else None
    if element == "a" and attribute == "href":
        return value if link_allowed(value) else None
    return value


_CLEANER = nh3.Cleaner(
    tags=set(ALLOWED_TAGS),
    clean_content_tags={"script", "style"},
    attributes={
        "a": {"href", "title"},
        "img": {"src", "alt", "title"},
        "code": {"class"},
        "ol": {"start"},
        **{tag: {"id"} for tag in ("h2", "h3", "h4", "h5", "h6")},
    },
    tag_attribute_values={
        "th": {"align": {"left", "center", "right"}},
        "td": {"align": {"left", "center", "right"}},
    },
    attribute_filter=_attribute_filter,
    url_schemes=set(LINK_SCHEMES),
    link_rel="noopener noreferrer nofollow",
    strip_comments=True,
)


# --- public API -------------------------------------------------------------------------------

def _checked(source: str | None) -> str:
    if source is None:
        return ""
    source = str(source)
    if len(source) > MAX_SOURCE:
        raise ValueError(
            f"Markdown text is {len(source):,} characters long; the limit is {MAX_SOURCE:,}."
        )
    return source


#: Sources up to this many characters keep their rendered HTML in ``_rendered`` and their plain
#: text in ``_plain_text`` (a lesson is a few thousand): at most ``RENDERED_KEPT`` of each, so
#: the memory this takes is bounded.
RENDERED_SOURCE_LIMIT = 32_000
RENDERED_KEPT = 256


def render_markdown(source: str | None) -> Markup:
    """Safe HTML for the Markdown ``source`` (``None`` gives empty markup).

    Raises ``ValueError`` when ``source`` is longer than ``MAX_SOURCE`` characters.

    The HTML is a function of the source alone, and making it (parse, then sanitise) costs
    about a millisecond per thousand characters, on every view of a lesson or a course page:
    the recent ones are kept, keyed by the source itself, so an edit is a new key.
    """
    source = _checked(source)
    if not source.strip():
        return Markup("")
    if len(source) <= RENDERED_SOURCE_LIMIT:
        return _rendered(source)
    return sanitize_html(_PARSER.render(source))


@functools.lru_cache(maxsize=RENDERED_KEPT)
def _rendered(source: str) -> Markup:
    return sanitize_html(_PARSER.render(source))


@functools.lru_cache(maxsize=RENDERED_KEPT)
def _plain_text(source: str) -> str:
    """The whole plain text of ``source`` (``markdown_to_text`` cuts it), kept like ``_rendered``."""
    parts: list[str] = []
    for token in _PARSER.parse(source):
        if token.type == "inline":
            _inline_text(token.children or [], parts)
        elif token.type in ("fence", "code_block"):
            parts.append(token.content)
        # Blocks are separate words even where the source had no blank between them.
        parts.append(" ")
    return _WHITESPACE.sub(" ", "".join(parts)).strip()


def sanitize_html(html: str) -> Markup:
    """``html`` reduced to the allow-list this module renders (tags, attributes, URL schemes,
    ``language-xxx`` classes, ``rel`` on links). The second layer of ``render_markdown``."""
    return Markup(_CLEANER.clean(html).strip())  # noqa: S704 - this is the sanitizer


def _inline_text(children: list[Token], parts: list[str]) -> None:
    for token in children:
        if token.type in ("text", "code_inline"):
            parts.append(token.content)
        elif token.type in ("softbreak", "hardbreak"):
            parts.append(" ")
        elif token.type == "image":
            _inline_text(token.children or [], parts)


@dataclass(frozen=True)
class TextBlock:
    """One top-level block of a document as plain text: a heading (with its page anchor and
    level, 2 to 6 as rendered) or a paragraph, list, table, quote or code block."""

    text: str
    heading: bool = False
    anchor: str = ""
    level: int = 0
    #: A fenced or indented code block (its text keeps its lines and indentation).
    code: bool = False


def markdown_blocks(source: str | None) -> list[TextBlock]:
    """The document's top-level blocks in order, as plain text: one line per paragraph, list
    item or table row (cells separated by `` | ``), code blocks as written. Headings carry the
    same ``id`` the rendered page gives them.

    Raises ``ValueError`` when ``source`` is longer than ``MAX_SOURCE`` characters."""
    source = _checked(source)
    blocks: list[TextBlock] = []
    parts: list[str] = []
    tokens = _PARSER.parse(source)
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token.type == "heading_open":
            inline = tokens[i + 1] if i + 1 < len(tokens) and tokens[i + 1].type == "inline" else None
            words: list[str] = []
            _inline_text(inline.children or [] if inline else [], words)
            blocks.append(TextBlock(_WHITESPACE.sub(" ", "".join(words)).strip(), heading=True,
                                    anchor=str(token.attrGet("id") or ""), level=int(token.tag[1])))
            while i < len(tokens) and tokens[i].type != "heading_close":
                i += 1
        elif token.type == "inline":
            _inline_text(token.children or [], parts)
            in_cell = i > 0 and tokens[i - 1].type in ("th_open", "td_open")
            parts.append(" | " if in_cell else "\n")
        elif token.type == "tr_close":
            parts.append("\n")
        elif token.type in ("fence", "code_block"):
            parts.append(token.content.rstrip("\n"))
        if token.level == 0 and token.nesting <= 0 and token.type != "heading_close":
            if token.type in ("fence", "code_block"):
                text = "".join(parts).strip("\n")
            else:
                lines = (_SPACES.sub(" ", line).strip().removesuffix(" |") for line in "".join(parts).split("\n"))
                text = "\n".join(line for line in lines if line)
            if text.strip():
                blocks.append(TextBlock(text, code=token.type in ("fence", "code_block")))
            parts = []
        i += 1
    return blocks


def markdown_to_text(source: str | None, limit: int | None = 280) -> str:
    """Plain text of the Markdown ``source`` for search snippets and previews.

    No markup is left (the result is text: templates escape it as usual), whitespace is
    collapsed to single spaces, and when the text is longer than ``limit`` characters it is cut
    at a word boundary and ends with "…" (the result, ellipsis included, is at most ``limit``
    long). ``limit=None`` keeps the whole text.

    Raises ``ValueError`` when ``source`` is longer than ``MAX_SOURCE`` characters or ``limit``
    is less than 1.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}.")
    source = _checked(source)
    text = _plain_text(source) if len(source) <= RENDERED_SOURCE_LIMIT else _plain_text.__wrapped__(source)
    if limit is None or len(text) <= limit:
        return text
    room = text[: limit - 1]
    if text[limit - 1] != " ":
        # Cut inside a word: go back to the last space, unless the first word alone is too long.
        space = room.rfind(" ")
        if space > 0:
            room = room[:space]
    return room.rstrip(" ,;:.-—–") + "…"
