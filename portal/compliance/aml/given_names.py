"""Given-name equivalents: the Bob or Bill of a Robert or William, the Sasha of an Aleksandr.

The English names and their nicknames come from the ``nicknames`` package (a hand-curated list
of names and their diminutives, shipped with the package). Common diminutives of other
languages that screening meets, which that list lacks, are added here (``OTHER_DIMINUTIVES``).

Two given names are equivalent when one is listed as a nickname of the other, in either
direction: one as written, the other by its spelling-folded key (so "Aleksandr" finds the
list's "Alexander"). Two nicknames that merely share a full name (Bill and Bob, both listed under
Robert) are not: that would make too many different people alike.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

__all__ = ["OTHER_DIMINUTIVES", "equivalent"]

#: Diminutives and short forms outside the English list: full name -> its short forms.
OTHER_DIMINUTIVES: dict[str, tuple[str, ...]] = {
    # Russian, Ukrainian
    "aleksandr": ("sasha", "sanya", "shura", "alex"),
    "aleksandra": ("sasha", "sanya", "shura"),
    "aleksei": ("alyosha", "lyosha"),
    "mikhail": ("misha",),
    "dmitri": ("dima",),
    "nikolai": ("kolya",),
    "vladimir": ("volodya", "vova"),
    "sergei": ("seryozha",),
    "pavel": ("pasha",),
    "evgeni": ("zhenya",),
    "ekaterina": ("katya",),
    "natalya": ("natasha",),
    "mariya": ("masha",),
    "tatyana": ("tanya",),
    "olga": ("olya",),
    "yuri": ("yura",),
    "ivan": ("vanya",),
    # Arabic, Persian, Turkish
    "muhammad": ("mo", "moe", "hamada"),
    "abdullah": ("abdu",),
    "mustafa": ("mos",),
    # Spanish, Portuguese, Italian
    "jose": ("pepe",),
    "francisco": ("paco", "pancho", "chico"),
    "ignacio": ("nacho",),
    "guadalupe": ("lupe",),
    "giuseppe": ("beppe", "peppe"),
    "alejandro": ("alex",),
    # Greek
    "nikolaos": ("nikos", "nick"),
    "georgios": ("giorgos",),
    "konstantinos": ("kostas",),
    "dimitrios": ("dimitris", "mitsos"),
}


#: Links of the list that join a man's name to a woman's (the list files Wilma, a short form of
#: Wilhelmina, under William too): different people, whatever the list says.
NOT_EQUIVALENT = frozenset({frozenset({"william", "wilma"})})


@lru_cache(maxsize=1)
def _pairs() -> dict[str, set[str]]:
    """Every name with the names it is a nickname of or has as nicknames, both ways (plain
    spellings; the caller folds)."""
    from nicknames import NickNamer

    related: dict[str, set[str]] = {}

    def link(a: str, b: str) -> None:
        if frozenset({a, b}) in NOT_EQUIVALENT:
            return
        related.setdefault(a, set()).add(b)
        related.setdefault(b, set()).add(a)

    for canonical, nicknames in NickNamer.default_lookup().items():
        for nickname in nicknames:
            link(canonical, nickname)
    for full, shorts in OTHER_DIMINUTIVES.items():
        for short in shorts:
            link(full, short)
    return related


def equivalent(a: str, b: str, fold: Callable[[str], str]) -> bool:
    """Is one of the two given names (normalised tokens) a nickname or short form of the other?
    One of them must be in the list as it is written; the other may be any spelling of a name
    listed beside it, compared by ``fold`` (the matcher's spelling key): "Aleksandr" finds the
    list's "Alexander" beside "Sasha". Comparing both sides by their keys would let a key shared
    by two unrelated names (Carlos and Charles) join their nicknames."""
    if len(a) < 2 or len(b) < 2 or fold(a) == fold(b):
        return False
    pairs = _pairs()
    for written, other in ((a, b), (b, a)):
        names = pairs.get(written)
        if names and (other in names or fold(other) in {fold(name) for name in names}):
            return True
    return False
