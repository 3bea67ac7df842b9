"""Query expansion: a question's words with the words a lesson may use for the same idea.

A student asks in their own words ("how should I divide up my salary?") and the lesson that
answers uses others ("split your take-home pay"). Each content word of the question becomes a
*group*: the word itself, its dictionary form ("biggest" -> "big") and the words WordNet relates
to its most frequent senses (synonyms, derived forms: "salary" -> "wage", "pay", "earnings";
``wordnet/synonyms.tsv.gz``, built from WordNet 3.0 by ``wordnet/build.py``, offline, shipped in
the package). Retrieval counts a group as present in a passage when any of its words is, the
word itself in full and a related word at ``RELATED_WEIGHT``.

The dictionary form is found the way WordNet's own morphology does it: the irregular forms it
lists, then its suffix rules ("-ies" -> "-y", "-ing" -> "", "-est" -> ""), keeping the first
candidate the dictionary knows.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

__all__ = ["RELATED_PER_WORD", "RELATED_WEIGHT", "Term", "expand", "lemma", "related"]

#: How much a passage having a related word (not the question's own) counts, against 1.
RELATED_WEIGHT = 0.6
#: Related words per question word at most (the most frequent senses' first).
RELATED_PER_WORD = 8

_SUFFIXES = (("ies", "y"), ("ses", "s"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"), ("men", "man"),
             ("es", "e"), ("es", ""), ("s", ""), ("ing", "e"), ("ing", ""), ("ed", "e"), ("ed", ""), ("est", ""),
             ("est", "e"), ("er", ""), ("er", "e"))


@dataclass(frozen=True)
class Term:
    #: The index of the question word this term stands for.
    group: int
    word: str
    #: 1 for the question's own word (and its dictionary form), RELATED_WEIGHT for a related one.
    weight: float


@lru_cache(maxsize=1)
def _table() -> tuple[dict[str, tuple[str, ...]], dict[str, str]]:
    related_words: dict[str, tuple[str, ...]] = {}
    forms: dict[str, str] = {}
    source = resources.files("portal.learning.tutoring.wordnet").joinpath("synonyms.tsv.gz")
    with source.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as lines:
        for line in lines:
            word, _, others = line.rstrip("\n").partition("\t")
            if word.startswith("="):
                forms[word[1:]] = others
            else:
                related_words[word] = tuple(others.split())
    return related_words, forms


def lemma(word: str) -> str:
    """The dictionary form of ``word`` (lower case) that WordNet knows, or the word itself."""
    word = word.lower()
    table, forms = _table()
    if word in table:
        return word
    if word in forms:
        return forms[word]
    for suffix, replacement in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 2:
            candidate = word[: len(word) - len(suffix)] + replacement
            if candidate in table:
                return candidate
    return word


def related(word: str) -> tuple[str, ...]:
    """The words WordNet relates to the most frequent senses of ``word`` (at most
    RELATED_PER_WORD), none if it does not know it."""
    return _table()[0].get(lemma(word), ())[:RELATED_PER_WORD]


def expand(words: list[str], *, stop_words: frozenset[str] = frozenset()) -> list[Term]:
    """The terms of a question: one group per distinct content word (``stop_words`` left out),
    each with the word, its dictionary form and its related words."""
    terms: list[Term] = []
    seen: set[str] = set()
    for word in words:
        lower = word.lower()
        if lower in seen or lower in stop_words or len(lower) < 2:
            continue
        seen.add(lower)
        group = len(seen) - 1
        terms.append(Term(group, lower, 1.0))
        base = lemma(lower)
        if base != lower:
            terms.append(Term(group, base, 1.0))
        terms.extend(Term(group, other, RELATED_WEIGHT) for other in related(lower) if other not in (lower, base))
    return terms
