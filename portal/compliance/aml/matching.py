"""Name matching for AML screening: normalisation and similarity, pure functions (no database).

The approach follows what list-screening engines such as OpenSanctions' yente do for person
names: bring both names to one comparable form, then score them with several complementary
string measures, and let the other facts (birth date, country) move the score a little.

Normalisation (``normalize_name``):

1. Unicode NFKC, then transliteration of every script to ASCII (``anyascii``: Cyrillic
   "Сергей" -> "Sergei", Arabic, Greek, Chinese characters to pinyin), which also drops accents
   ("José" -> "Jose");
2. case folding;
3. punctuation becomes a space ("Rodriguez-Zapatero" -> "rodriguez zapatero"), except
   apostrophes and transliterated soft signs, which join ("O'Neil" -> "oneil", "Ol'ga" -> "olga");
4. honorifics and titles ("mr", "dr", "sheikh", "general" ...) are dropped;
5. the tokens are sorted, so "Ivanov Sergei" and "Sergei Ivanov" normalise alike.

Similarity (``name_similarity``), a score from 0 to 100:

- an alignment of name parts: each token of the shorter name paired with its best partner in the
  other (exact, a spelling variant by folded key such as Mohammed/Muhammad or Sergei/Sergey, a
  nickname or short form such as Bob/Robert or Sasha/Aleksandr (``given_names``), a vowel-less
  Arabic transliteration, one typo in a long part, an initial, or a strict edit similarity),
  weighted by length, with a gendered ending (Ivan/Ivana, Maria/Mario) counted as a different
  name, so one weak part lowers a strong match without sinking it, and every part is explained
  (``name_match``);
- a name in Arabic script against one in Latin script is also compared by consonant skeletons,
  since Arabic writes no short vowels ("حسن" and "Hassan" are both h-s-n);
- rapidfuzz's ``token_sort_ratio`` and ``token_set_ratio`` over the whole normalised strings,
  which temper the alignment (20% of the score): alone they are too forgiving for names.

Both the alignment and the ratios are independent of token order. Birth date and country move
the score a little afterwards (``compare_facts``). Blocking keys (``blocking_keys``) pick the
candidates worth scoring.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache

from anyascii import anyascii
from rapidfuzz import fuzz
from rapidfuzz.distance import OSA, Levenshtein

from portal.compliance.aml import given_names

#: Titles and honorifics that say nothing about who a person is. Particles of the name itself
#: ("bin", "ibn", "van", "de") are kept: they are part of the name and are folded by
#: ``_phonetic_key`` where spellings vary.
HONORIFICS = frozenset({
    "mr", "mrs", "ms", "miss", "mx", "dr", "prof", "professor", "sir", "dame", "lord", "lady",
    "sr", "jr", "snr", "jnr", "hon", "honourable", "honorable", "rev", "reverend", "fr",
    "sheikh", "shaikh", "sheik", "haji", "hajji", "mullah", "emir", "amir",
    "gen", "general", "col", "colonel", "maj", "major", "capt", "captain", "lt", "adm", "admiral",
    "sen", "senator", "pres", "president", "minister", "h.e", "he", "excellency",
    "gospodin", "herr", "frau", "senor", "senora", "sra", "don", "dona", "monsieur", "madame", "mme",
})

_NON_ALNUM = re.compile(r"[^a-z0-9]+")

#: Spelling variants folded before the per-token comparison, in this order. Each pair is a
#: variation that transliteration or national spelling makes between the same name
#: (Mohammed/Muhammad, Sergei/Sergey, Yusuf/Youssef, Aleksandr/Alexander, Ph/F).
_FOLDS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), replacement) for pattern, replacement in (
        (r"^ye", "e"),
        (r"^yu", "iu"),
        (r"^o(?=[bcdfghjklmnpqrstvwxz])", "u"),
        (r"ph", "f"),
        (r"ck", "k"),
        (r"ks", "x"),
        (r"kh", "h"),
        (r"^gh", "k"),
        (r"q", "k"),
        (r"c(?=[eiy])", "s"),
        (r"c", "k"),
        (r"(?<=[^aeiouy])h|h$", ""),
        (r"w", "v"),
        (r"ou", "u"),
        (r"oo", "u"),
        (r"ee", "i"),
        (r"[ey]$", "i"),
        (r"(?<=[^aeiou])[aeiou]r$", "r"),
        (r"(?<=[aeiou])y+(?=[aeiou])", "j"),
        (r"ij|iy|yi", "i"),
        (r"y", "i"),
        (r"(.)\1+", r"\1"),
        (r"(?<=.)[aeo]i(?=[^aeiou])", "aj"),
        (r"(?<=.)[aeiou]+", "a"),
    )
)

#: Particles folded to one spelling ("ibn" and "bin", "ben" all mean "son of").
_PARTICLES = {"ibn": "bin", "ben": "bin", "bn": "bin", "bint": "bin", "el": "al", "ul": "al",
              "abdel": "abd", "abdul": "abd", "abdal": "abd", "abdol": "abd", "abdil": "abd"}

#: "Abd" joined to the name it governs ("Abdelkader", "Abdulrahman") is written apart as often
#: ("Abdul Qadir", "Abd al-Rahman"): the joined form is split into "abd" and the rest.
_ABD = re.compile(r"^abd(?:[aeiou]l)?([a-z]{3,})$")


_GREEK_OU = re.compile("[οΟό][υΥύ]")


def ascii_fold(text: str) -> str:
    """Any script to lower-case ASCII with accents removed ("Žižek" -> "zizek",
    "Сергей" -> "sergei", "张伟" -> "zhangwei")."""
    text = unicodedata.normalize("NFKC", text or "")
    # anyascii runs CJK syllables together; a space between ideographs keeps them as tokens.
    text = re.sub(r"([\u3400-\u9fff])", r" \1 ", text)
    # Greek "ου" is "ou" in every romanisation of names (ELOT 743, passports), not "oy".
    text = _GREEK_OU.sub(lambda m: "OU" if m.group(0)[0].isupper() else "ou", text)
    return anyascii(text).casefold()


#: Apostrophes and the transliterated Cyrillic soft and hard signs join letters, not words
#: ("Ol'ga" -> "olga", "O'Neil" -> "oneil").
_JOINERS = re.compile(r"['`\u2019\u02b9\u02bc\u02ba]")


def _raw_tokens(name: str, *, split_abd: bool = True) -> list[str]:
    folded = _JOINERS.sub("", ascii_fold(name))
    tokens: list[str] = []
    for token in _NON_ALNUM.split(folded):
        if not token or token in HONORIFICS:
            continue
        joined = _ABD.match(token)
        tokens.extend(("abd", joined.group(1)) if split_abd and joined and token not in _PARTICLES else (token,))
    return tokens


def name_tokens(name: str) -> list[str]:
    """The normalised tokens of a name, sorted, honorifics dropped."""
    tokens = _raw_tokens(name)
    return sorted(tokens)


def normalize_name(name: str) -> str:
    """The canonical comparable form: ASCII, lower case, no punctuation or honorifics, tokens
    sorted and joined by single spaces. ``""`` for a name with nothing left."""
    return " ".join(name_tokens(name))


@lru_cache(maxsize=65536)
def _phonetic_key(token: str) -> str:
    """A coarse spelling key: common transliteration variants folded, doubled letters single,
    and every run of vowels after the first letter one "a" (Mohammed and Muhammad: "mahamad")."""
    token = _PARTICLES.get(token, token)
    for pattern, replacement in _FOLDS:
        token = pattern.sub(replacement, token)
    return token


_VOWELS = frozenset("aeiou")


#: Endings that make a woman's name of a man's: Ivan/Ivana, Stefan/Stefania, Paul/Paulina,
#: Paul/Pauline, Henri/Henriette, Michel/Michelle.
_FEMININE_ENDINGS = ("a", "ia", "ina", "ine", "ette", "elle")
#: Endings of the masculine form of surnames that take a feminine ending (Slavic, Baltic:
#: Petrov/Petrova, Volkov/Volkova, Borodin/Borodina, Kowalski/Kowalska).
_GENDERED_SURNAME = re.compile(r"(?:ov|ev|in|yn|sky|ski|skiy|ckiy|tsky|ich)$")


def _gendered_pair(a: str, b: str) -> bool:
    """Tokens that differ only by a gendered ending: Ivan/Ivana, Daniel/Daniela, Maria/Mario,
    Petrov/Petrova, Stefan/Stefania, Alexander/Alexandra. In names these are different people, however close the letters.

    A long part (TYPO_MIN_LENGTH letters or more) that only gains a final "a" is a gendered pair
    when the shorter form is a given name (``given_names.is_given_name``) or a surname whose
    masculine ending takes a feminine one (-ov, -in, -ski); otherwise it is a part with its last
    letter dropped ("Tanakamur" for "Tanakamura"), one typo."""
    for x, y in ((a, b), (b, a)):
        for ending in _FEMININE_ENDINGS:
            gains = len(y) == len(x) + len(ending) and y.startswith(x) and y.endswith(ending) and len(x) >= 3
            if gains and (ending != "a" or len(x) < TYPO_MIN_LENGTH or _GENDERED_SURNAME.search(x)
                          or given_names.is_given_name(x, _phonetic_key)):
                return True
    if len(a) == len(b) >= 5 and a[:-2] == b[:-2] and {a[-2:], b[-2:]} == {"er", "ra"}:  # Alexander/Alexandra
        return True
    return (len(a) == len(b) and a[:-1] == b[:-1] and a[-1] != b[-1]
            and {a[-1], b[-1]} <= {"a", "o", "e", "i"} and ("a" in (a[-1], b[-1]) or "o" in (a[-1], b[-1])))


def _skeleton(token: str) -> str:
    """The consonants of the folded key after its first letter: what a script that does not write
    short vowels (Arabic, Hebrew) keeps, so "mhmd" meets "mohammed"."""
    consonants = token[:1] + "".join(ch for ch in token[1:] if ch not in _VOWELS and ch != "y")
    return re.sub(r"(.)\1+", r"\1", consonants)


def _edit_similarity(a: str, b: str) -> float:
    """0-100 from the Levenshtein distance, stricter than the plain ratio: each edit costs twice
    its share of a short token (5 letters or fewer) and one and a half times in a longer one. One
    typo in "Rodriguez" keeps 83; "Pedro" against "Petro" drops to 60, because in a short given
    name one letter is usually another name."""
    if not a or not b:
        return 0.0
    distance = Levenshtein.distance(a, b)
    longest = max(len(a), len(b))
    factor = 2.0 if longest <= 5 else 1.5
    return max(0.0, 100.0 * (1 - factor * distance / longest))


#: Scores of the kinds of agreement between two name parts (``token_match``).
SAME, VARIANT, SKELETON, NICKNAME, ONE_TYPO, INITIAL = 100.0, 95.0, 90.0, 92.0, 90.0, 70.0
#: A part at least this long tolerates one typo (a letter dropped, added, changed or two swapped)
#: at ONE_TYPO: in a long surname one letter is a slip, in a short name it is another name.
TYPO_MIN_LENGTH = 8


@lru_cache(maxsize=65536)
def token_match(a: str, b: str) -> tuple[float, str]:
    """(0-100, how) for two normalised tokens, ``how`` saying why, for the explanation.

    - 100 "same" when equal (particles folded first: "ibn" = "bin");
    - at most 50 "gendered ending" for a gendered pair (Ivan/Ivana);
    - 95 "spelling variant": equal folded keys (Mohammed/Muhammad, Sergei/Sergey, Yusuf/Youssef,
      Yevgeny/Evgeniy, Osama/Usama);
    - 92 "nickname": one is a nickname or short form of the other (Bob/Robert, Sasha/Aleksandr;
      ``given_names``);
    - 90 "written without vowels" when one side has no vowels ("mhmd", from Arabic script) and
      the consonant skeletons agree;
    - 90 "one typo" in a long part (TYPO_MIN_LENGTH letters or more; also of the folded keys
      when the consonants are the same: "Kovalchouzine" / "Kovalchuzin", not "Przybylski" /
      "Przemylski");
    - 70 "initial" for an initial against a name that begins with it;
    - otherwise "different spelling": the strict edit similarity of the tokens or (5% less) of
      their folded keys.
    """
    a, b = _PARTICLES.get(a, a), _PARTICLES.get(b, b)
    if a == b:
        return SAME, "same"
    plain = _edit_similarity(a, b)
    if _gendered_pair(a, b):
        return min(50.0, plain), "gendered ending"
    ka, kb = _phonetic_key(a), _phonetic_key(b)
    if ka == kb and len(ka) >= 3:
        return VARIANT, "spelling variant"
    if given_names.equivalent(a, b, _phonetic_key):
        return NICKNAME, "nickname"
    if min(len(a), len(b)) >= 3 and a[0] == b[0] and (
            not _VOWELS & set(a[1:]) or not _VOWELS & set(b[1:])) and _skeleton(a) == _skeleton(b):
        return SKELETON, "written without vowels"
    if min(len(a), len(b)) >= TYPO_MIN_LENGTH and a[0] == b[0] and (
            OSA.distance(a, b) <= 1 or (OSA.distance(ka, kb) <= 1 and _skeleton(a) == _skeleton(b))):
        return ONE_TYPO, "one typo"
    if (len(a) == 1 or len(b) == 1) and a[0] == b[0]:
        return INITIAL, "initial"
    return max(plain, 0.95 * _edit_similarity(ka, kb)), "different spelling"


def token_similarity(a: str, b: str) -> float:
    """0-100 for two normalised tokens (``token_match`` without the reason)."""
    return token_match(a, b)[0]


@dataclass(frozen=True)
class PartMatch:
    """One part of the screened name against its partner in the listed name (``""`` when left
    over on one side), with the part's score and why."""

    screened: str
    listed: str
    score: float
    how: str


def _inner(tokens: list[str]) -> frozenset[str]:
    """The parts of a name written between its first and its last (middle names, a first of two
    surnames, particles), of tokens in written order."""
    return frozenset(tokens[1:-1]) - {tokens[0], tokens[-1]} if len(tokens) > 2 else frozenset()


def _align(ta: list[str], tb: list[str], scorer=token_match, *, inner: frozenset[str] = frozenset(),
           best: float = SAME) -> tuple[float, list[PartMatch]]:
    """Pair each token of the shorter name with its best unused partner in the longer one
    (greedy on the best pairs first), and average the pair scores weighted by token length.

    Two corrections keep the average honest:
    - a token left over in the longer name costs a quarter of its length in weight (a patronymic,
      or a part written between the name's first and last, ``inner``, when both of those are
      paired: a tenth), so a missing middle name, patronymic or second surname ("Jose Luis
      Rodriguez" / "Jose Luis Rodriguez Zapatero", "Fatima Benhaddou" / "Fatima Zahra
      El-Mansouri Benhaddou") stays high, while "John" against "John Smith" does not;
    - the worst pair pulls the result down by 30% of its shortfall from ``best`` (the scorer's
      best: 100, or SKELETON for consonant skeletons, which cannot tell more), so one wholly
      different token (a different given name) is not hidden by a long shared surname.

    Returns the score and the parts (``ta``'s token first in each), pairs then leftovers.
    """
    if not ta or not tb:
        return 0.0, []
    swapped = len(ta) > len(tb)
    short, long_ = (tb, ta) if swapped else (ta, tb)
    scored = {(i, j): scorer(s, t) for i, s in enumerate(short) for j, t in enumerate(long_)}
    order = sorted(scored, key=lambda ij: (-scored[ij][0], ij))
    used_s: set[int] = set()
    used_l: set[int] = set()
    total = weight = 0.0
    worst = 100.0
    parts: list[PartMatch] = []
    for i, j in order:
        if i in used_s or j in used_l:
            continue
        score, how = scored[(i, j)]
        used_s.add(i)
        used_l.add(j)
        w = (len(short[i]) + len(long_[j])) / 2
        total += score * w
        weight += w
        worst = min(worst, score)
        parts.append(PartMatch(long_[j], short[i], score, how) if swapped else PartMatch(short[i], long_[j], score, how))
    paired = {long_[j] for j in used_l}
    outer_paired = len(inner) > 0 and not ({t for t in long_ if t not in inner} - paired)
    for j, t in enumerate(long_):
        if j not in used_l:
            weight += len(t) / (10 if _PATRONYMIC.search(t) or (outer_paired and t in inner) else 4)
            parts.append(PartMatch(t, "", 0.0, "not in the other name") if swapped
                         else PartMatch("", t, 0.0, "not in the other name"))
    mean = total / weight if weight else 0.0
    return max(0.0, mean - 0.3 * max(0.0, best - worst)), parts


def _alignment_score(ta: list[str], tb: list[str]) -> float:
    return _align(ta, tb)[0]


#: Patronymics and their like, often left out of one of two records of the same person
#: (Russian -ovich/-ovna, Turkic -oglu/-ogly/-kyzy, Icelandic -son/-dottir are surnames and stay).
_PATRONYMIC = re.compile(r"(?:ovich|evich|yevich|ovych|ovna|evna|ivna|ogly|oglu|kyzy)$")

#: Weight of the per-token alignment in the final score; the rest is the whole-string ratios.
ALIGNMENT_WEIGHT = 0.8


def name_similarity(a: str, b: str) -> float:
    """Similarity of two names, 0 to 100, independent of token order, case, accents, script,
    punctuation and honorifics. Either argument may be raw or already normalised."""
    return name_match(a, b)[0]


def name_match(a: str, b: str) -> tuple[float, list[PartMatch]]:
    """The similarity of two names (0-100) and the parts it is made of: each part of ``a``
    against its partner in ``b``, with the part's score and why (the screening's explanation).

    ``0.8 * alignment + 0.2 * whole-string``, where the whole-string part is the better of
    rapidfuzz's ``token_sort_ratio`` and ``token_set_ratio`` (the latter scaled down by how much
    of the longer name it leaves out, since it is 100 for any subset), computed after each part
    that the alignment found equivalent to its partner (a spelling variant, a nickname) is
    written as that partner. The whole-string ratios alone are too forgiving for names ("Maria
    Garcia" / "Mario Garcia" is 92 by both), so they only temper the alignment, which scores name
    part against name part. Names equal once the spaces are removed ("Abdul Rahman" /
    "Abdulrahman") score 97. A name in Arabic script against one in Latin script is compared by
    consonant skeletons too (``_arabic_match``), as Arabic does not write short vowels.
    """
    ta, tb = name_tokens(a), name_tokens(b)
    arabic = _arabic_match(a, b)
    if not ta or not tb:
        return arabic or (0.0, [])
    na, nb = " ".join(ta), " ".join(tb)
    if na == nb:
        return 100.0, [PartMatch(t, t, SAME, "same") for t in ta]
    written_a, written_b = _raw_tokens(a), _raw_tokens(b)
    align, parts = _align(ta, tb, inner=_inner(written_a if len(ta) > len(tb) else written_b))
    if _compact(a) == _compact(b) or na.replace(" ", "") == nb.replace(" ", ""):
        return 97.0, [PartMatch(" ".join(_raw_tokens(a, split_abd=False)), " ".join(_raw_tokens(b, split_abd=False)),
                                97.0, "same letters, spaced apart")]
    # Parts found equivalent are compared as written alike in the whole-string ratios.
    alike = {p.screened: p.listed for p in parts if p.screened and p.listed and p.score >= ONE_TYPO}
    na2 = " ".join(sorted(alike.get(t, t) for t in ta))
    sort_ratio = fuzz.token_sort_ratio(na2, nb)
    set_ratio = fuzz.token_set_ratio(na2, nb)
    shorter, longer = sorted((len(na2), len(nb)))
    whole = max(sort_ratio, set_ratio * (0.75 + 0.25 * shorter / longer))
    score = round(ALIGNMENT_WEIGHT * align + (1 - ALIGNMENT_WEIGHT) * whole, 2)
    if arabic and arabic[0] > score:
        return arabic
    return score, parts


# ------------------------------------------------------------------ Arabic script against Latin

_ARABIC = re.compile(r"[\u0600-\u06ff\u0750-\u077f\ufb50-\ufdff\ufe70-\ufeff]")
#: Arabic (and Persian) letters to the Latin consonant a transliteration writes for them. The
#: long vowels and glides (alif, waw, ya), the hamza, ain and ta marbuta are left out: Latin
#: spellings write them as vowels, or not at all. Letters that spellings render several ways
#: meet the Latin side's folding below (kh -> k, sh -> s, th -> t, dh -> d, gh and j -> j, q -> k).
_ARABIC_LETTERS = {
    "ب": "b", "ت": "t", "ث": "t", "ج": "j", "ح": "h", "خ": "k", "د": "d", "ذ": "d", "ر": "r", "ز": "z",
    "س": "s", "ش": "s", "ص": "s", "ض": "d", "ط": "t", "ظ": "z", "غ": "j", "ف": "f", "ق": "k", "ك": "k",
    "ل": "l", "م": "m", "ن": "n", "ه": "h", "پ": "b", "چ": "s", "ژ": "z", "گ": "j", "ک": "k",
}
_LATIN_DIGRAPHS = ((re.compile(r"kh"), "k"), (re.compile(r"gh|g"), "j"), (re.compile(r"sh|ch"), "s"),
                   (re.compile(r"th"), "t"), (re.compile(r"dh"), "d"), (re.compile(r"ph"), "f"),
                   (re.compile(r"dj"), "j"), (re.compile(r"[qc]"), "k"), (re.compile(r"x"), "ks"),
                   (re.compile(r"p"), "b"))
_ARABIC_ARTICLE = re.compile(r"^(?:ال|لل)(?=..)")
#: "Son of" and "daughter of", written or left out in one record or the other: not compared.
_ARABIC_SON_OF = frozenset({"بن", "ابن", "بنت"})
_LATIN_ARTICLES = frozenset({"al", "el", "ul", "ad", "ar", "as", "ash", "az", "an", "at"})


def _arabic_skeleton(token: str) -> str:
    token = _ARABIC_ARTICLE.sub("", token)
    return re.sub(r"(.)\1+", r"\1", "".join(_ARABIC_LETTERS.get(ch, "") for ch in token))


def _latin_skeleton(token: str) -> str:
    for pattern, replacement in _LATIN_DIGRAPHS:
        token = pattern.sub(replacement, token)
    return re.sub(r"(.)\1+", r"\1", "".join(ch for ch in token if ch not in "aeiouywv"))


def _skeleton_match(a: str, b: str) -> tuple[float, str]:
    if a == b and a:
        return SKELETON, "same consonants (Arabic script)"
    if min(len(a), len(b)) >= 3 and OSA.distance(a, b) <= 1:
        return 70.0, "consonants one apart (Arabic script)"
    return 0.0, "different consonants (Arabic script)"


def _arabic_match(a: str, b: str) -> tuple[float, list[PartMatch]] | None:
    """A name in Arabic script against one in Latin script: their consonant skeletons, part by
    part (aligned as other names are) and whole in written order (so "عبد الله" meets
    "Abdullah"), the article "al" and "bin" (son of) left out on both sides. None unless exactly
    one side is in Arabic script."""
    if bool(_ARABIC.search(a or "")) == bool(_ARABIC.search(b or "")):
        return None
    flip = bool(_ARABIC.search(b))
    arabic_name, latin_name = (b, a) if flip else (a, b)
    arabic = [t for t in re.split(r"[^\w]+", unicodedata.normalize("NFKC", arabic_name)) if t and t not in _ARABIC_SON_OF]
    latin = [t for t in _raw_tokens(latin_name) if t not in _LATIN_ARTICLES and _PARTICLES.get(t, t) != "bin"]
    sa = [sk for sk in (_arabic_skeleton(t) for t in arabic) if sk]
    sl = [sk for sk in (_latin_skeleton(_PARTICLES.get(t, t)) for t in latin) if sk]
    if not sa or not sl:
        return None
    score, parts = _align(sl, sa, _skeleton_match, inner=_inner(sl if len(sl) > len(sa) else sa), best=SKELETON)
    # The skeletons stand for the parts as written.
    by_sk_l = dict(zip(sl, latin, strict=False))
    by_sk_a = dict(zip(sa, arabic, strict=False))
    parts = [PartMatch(by_sk_l.get(p.screened, p.screened), by_sk_a.get(p.listed, p.listed), p.score, p.how)
             for p in parts]
    if "".join(sa) == "".join(sl) and score < SKELETON:
        # The same consonants in the same order, cut into parts differently ("عبد الله" / "Abdullah").
        score = SKELETON
        if any(p.score < SKELETON for p in parts):
            parts = [PartMatch(" ".join(latin), " ".join(arabic), SKELETON, "same consonants (Arabic script)")]
    if flip:
        return score, parts
    return score, [PartMatch(p.listed, p.screened, p.score, p.how) for p in parts]


def _compact(name: str) -> str:
    """The name's letters in their written order, without spaces or honorifics."""
    return "".join(_raw_tokens(name, split_abd=False))


# ------------------------------------------------------------------------------ other facts

#: How much a fact moves the name score, in points. Small on purpose: a name decides whether
#: someone is a candidate at all; birth date and country only separate namesakes. A full birth
#: date that agrees is strong evidence (+5); one that disagrees is strong evidence of a namesake
#: (-15), but data-entry mistakes happen, so it does not rule the hit out alone. The year alone
#: agreeing (a list often knows only the year, or the day and month were swapped) is weaker (+2).
#: Country is weak evidence in both directions (+3 / -5): people move and hold several
#: nationalities.
BIRTH_DATE_AGREES = 5.0
BIRTH_YEAR_AGREES = 2.0
BIRTH_DATE_DISAGREES = -15.0
COUNTRY_AGREES = 3.0
COUNTRY_DISAGREES = -5.0


@dataclass
class FactComparison:
    adjustment: float = 0.0
    agreeing: list[str] = field(default_factory=list)
    disagreeing: list[str] = field(default_factory=list)


def compare_facts(birth_a: date | None, country_a: str | None,
                  birth_b: date | None, country_b: str | None) -> FactComparison:
    """Compare birth dates and countries where both sides know them.

    - same birth date: +5 points; same year but a different day: +2; a different year: -15;
    - same country: +3; a different country: -5;
    - a fact unknown on either side changes nothing (absence is not evidence).

    The adjustments are deliberately small beside the name score (0-100, hits from 85 by
    default): a disagreeing birth date takes a 95 down to 80, below the default threshold, while
    a weak name match (80) with the same birth date and country reaches 88 and is shown.
    """
    result = FactComparison()
    if birth_a and birth_b:
        if birth_a == birth_b:
            result.adjustment += BIRTH_DATE_AGREES
            result.agreeing.append("birth_date")
        elif birth_a.year == birth_b.year:
            result.adjustment += BIRTH_YEAR_AGREES
            result.agreeing.append("birth_year")
        else:
            result.adjustment += BIRTH_DATE_DISAGREES
            result.disagreeing.append("birth_date")
    if country_a and country_b:
        if country_a.upper() == country_b.upper():
            result.adjustment += COUNTRY_AGREES
            result.agreeing.append("country")
        else:
            result.adjustment += COUNTRY_DISAGREES
            result.disagreeing.append("country")
    return result


def combined_score(name_score: float, facts: FactComparison) -> float:
    """The name score moved by the facts, kept within 0-100."""
    return round(min(100.0, max(0.0, name_score + facts.adjustment)), 2)


# --------------------------------------------------------------------------- candidate keys

def blocking_keys(normalized: str) -> set[str]:
    """Keys for the candidate pass: per token, its first three letters, its spelling-folded
    key's first three letters and its first three consonants (so a name transliterated from
    Arabic script without its vowels, "hmd", meets "Ahmed"). Two names share a key when some token of one begins like some
    token of the other, which every pair worth scoring does (a name with no token in common
    even by prefix scores far below any sensible threshold)."""
    keys: set[str] = set()
    for token in normalized.split():
        if len(token) < 2:
            continue
        keys.add("p:" + token[:3])
        folded = _phonetic_key(token)
        if folded:
            keys.add("f:" + folded[:3])
        consonants = _latin_skeleton(token)
        if len(consonants) >= 2:
            keys.add("s:" + consonants[:3])
    keys.add("j:" + normalized.replace(" ", "")[:4])
    return keys
