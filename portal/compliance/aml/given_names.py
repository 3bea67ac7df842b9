"""Given-name equivalents: the Bob or Bill of a Robert or William, the Sasha of an Aleksandr.

The English names and their nicknames come from the ``nicknames`` package (a hand-curated list
of names and their diminutives, shipped with the package). Common diminutives of other
languages that screening meets, which that list lacks, are added here (``OTHER_DIMINUTIVES``).

Two given names are equivalent when one is listed as a nickname of the other, in either
direction, compared by their spelling-folded keys (so "Aleksandr" finds the list's
"Alexander"). Two nicknames that merely share a full name (Bill and Bob, both listed under
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


@lru_cache(maxsize=4)
def _folded(fold: Callable[[str], str]) -> dict[str, set[str]]:
    folded: dict[str, set[str]] = {}
    for name, others in _pairs().items():
        folded.setdefault(fold(name), set()).update(fold(other) for other in others)
    return folded


def equivalent(a: str, b: str, fold: Callable[[str], str]) -> bool:
    """Is one of the two given names (normalised tokens) a nickname or short form of the other?
    ``fold`` is the matcher's spelling key, applied to both sides and to the list."""
    if len(a) < 2 or len(b) < 2:
        return False
    table = _folded(fold)
    ka, kb = fold(a), fold(b)
    return ka != kb and kb in table.get(ka, ())
