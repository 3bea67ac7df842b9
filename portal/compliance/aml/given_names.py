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

__all__ = ["COGNATES", "OTHER_DIMINUTIVES", "equivalent", "is_given_name"]

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


#: One given name in the forms other languages give it, against its English form: the nicknames
#: of the English form then serve every form ("Kate" for a "Yekaterina"). From the equivalents
#: listed by Behind the Name (the "related names" of each name) and Wiktionary's entries for these
#: given names; only forms that are the same name, not names merely alike, and none that is a
#: different name in English use (Ian and Sean are not John there, nor Isabel Elizabeth; Andrea
#: and Nicola are women's names there).
COGNATES: dict[str, tuple[str, ...]] = {
    "katherine": ("ekaterina", "katarzyna", "katerina", "caterina", "catalina", "katharina", "catarina"),
    "elizabeth": ("elizaveta", "elisabeth", "elisabetta", "elzbieta"),
    "eleanor": ("eleonora", "leonor", "eleonore"),
    "helen": ("elena", "helena", "olena", "jelena", "hélène"),
    "mary": ("maria", "marie", "mariya", "maryam", "mariam"),
    "margaret": ("margarita", "margherita", "margarethe", "malgorzata"),
    "anne": ("anna", "ana", "anya"),
    "sophia": ("sofia", "sofiya", "sophie", "zofia"),
    "alexander": ("aleksandr", "alejandro", "alessandro", "alexandre", "aleksander", "iskandar"),
    "michael": ("mikhail", "miguel", "michel", "michal", "mykhailo"),
    "peter": ("pyotr", "petr", "pedro", "pietro", "pierre", "piotr", "petro"),
    "paul": ("pavel", "pablo", "paolo", "pawel", "pavlo"),
    "nicholas": ("nikolai", "nikolay", "nicolas", "nikolaos", "mykola", "mikolaj"),
    "andrew": ("andrei", "andrey", "andres", "andre", "andrzej", "andriy"),
    "stephen": ("stepan", "esteban", "stefano", "stefan", "etienne", "stephane"),
    "james": ("giacomo", "jacques", "jaime"),
    "joseph": ("jose", "giuseppe", "josef", "osip", "yusuf", "youssef"),
    "john": ("ivan", "juan", "giovanni", "johann", "johannes"),
    "william": ("guillermo", "guillaume", "wilhelm", "guglielmo"),
    "george": ("georgios", "georgi", "jorge", "giorgio", "jurgen"),
    "dmitri": ("dimitrios", "dimitri", "dmytro"),
    "francis": ("francisco", "francesco", "francois", "franz", "frantisek"),
    "henry": ("enrique", "enrico", "henri", "heinrich", "henrique"),
    "charles": ("carlos", "carlo", "karl", "karol"),
    "jacob": ("yakov", "jakob", "jacopo", "yaqub", "yakub"),
    "thomas": ("tomas", "tommaso", "foma", "tomasz"),
}

#: Links of the list that join a man's name to a woman's (the list files Wilma, a short form of
#: Wilhelmina, under William too), or a name to a nickname that belongs to another name (the list
#: files Bill and Billy, William's, under Robert too): different people, whatever the list says.
NOT_EQUIVALENT = frozenset({frozenset({"william", "wilma"}), frozenset({"robert", "bill"}),
                            frozenset({"robert", "billy"})})

#: The diminutive endings English adds to a short name after a doubled consonant ("Nelly",
#: "Billy", "Tommy", "Bobbie").
_DIMINUTIVE = ("ie", "ey", "y")


def _plain(nickname: str) -> str | None:
    """The short name a nickname with a diminutive ending is made of ("Nelly" -> "Nell", "Billy"
    -> "Bill", "Tommy" -> "Tom", "Bobbie" -> "Bob"), so the one form stands for the other; None
    for any other nickname."""
    for ending in _DIMINUTIVE:
        stem = nickname[: -len(ending)]
        if nickname.endswith(ending) and len(stem) >= 3 and stem[-1] == stem[-2] and stem[-1] not in "aeiouy":
            return stem if stem[-1] in "ls" else stem[:-1]
    return None


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
            plain = _plain(nickname)
            if plain and plain != canonical:
                link(canonical, plain)
    for full, shorts in OTHER_DIMINUTIVES.items():
        for short in shorts:
            link(full, short)
    # A name in another language has the nicknames of its English form, and is that form.
    for english, forms in COGNATES.items():
        for form in forms:
            link(english, form)
            for nickname in list(related.get(english, ())):
                if nickname not in COGNATES and nickname not in forms:
                    link(form, nickname)
    return related


@lru_cache(maxsize=1)
def _given_name_keys() -> frozenset[str]:
    return frozenset(_pairs())


def is_given_name(token: str, fold: Callable[[str], str]) -> bool:
    """Is ``token`` (a normalised name part) a given name the lists know, as written or by its
    spelling key (``fold``)?"""
    if token in _given_name_keys():
        return True
    return fold(token) in _folded_names(fold)


_FOLDED: dict[int, frozenset[str]] = {}
_BY_KEY: dict[int, dict[str, set[str]]] = {}


def _by_key(fold: Callable[[str], str]) -> dict[str, set[str]]:
    """The names related to each listed name of six letters or more, by its spelling key, for a
    full name written otherwise than the list does ("Yekaterina" for its "Ekaterina"). Keys that
    two listed names share are left out: they would join unrelated names' nicknames."""
    key = id(fold)
    if key not in _BY_KEY:
        found: dict[str, set[str]] = {}
        shared: set[str] = set()
        for name, related in _pairs().items():
            if len(name) < 6:
                continue
            folded = fold(name)
            if folded in found:
                shared.add(folded)
            found.setdefault(folded, set()).update(related)
        _BY_KEY[key] = {k: v for k, v in found.items() if k not in shared}
    return _BY_KEY[key]


def _folded_names(fold: Callable[[str], str]) -> frozenset[str]:
    key = id(fold)
    if key not in _FOLDED:
        _FOLDED[key] = frozenset(fold(name) for name in _given_name_keys())
    return _FOLDED[key]


def equivalent(a: str, b: str, fold: Callable[[str], str]) -> bool:
    """Is one of the two given names (normalised tokens) a nickname or short form of the other?
    One of them must be in the list as it is written; the other may be any spelling of a name
    listed beside it, compared by ``fold`` (the matcher's spelling key) and its first two letters:
    "Aleksandr" finds the list's "Alexander" beside "Sasha", "Carla" does not find "Charlie" (both
    fold to "karla"). A full name of six letters or more may be written otherwise than the list
    does ("Yekaterina"): it is then found by its key, unless two listed names share that key.
    Comparing both sides by their keys would let a key shared by two unrelated names (Carlos and
    Charles) join their nicknames."""
    if len(a) < 2 or len(b) < 2 or fold(a) == fold(b):
        return False
    pairs = _pairs()
    for written, other in ((a, b), (b, a)):
        names = pairs.get(written) or _by_key(fold).get(fold(written)) if len(written) >= 6 else pairs.get(written)
        if names and (other in names or any(fold(other) == fold(name) and other[:2] == name[:2] for name in names)):
            return True
    return False
