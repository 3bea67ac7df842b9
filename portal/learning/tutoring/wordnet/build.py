"""Builds ``synonyms.tsv.gz`` beside this file from the WordNet 3.0 database files, as Debian's
``wordnet-base`` package installs them (``/usr/share/wordnet``). Run it only to rebuild the file:

    python -m portal.learning.tutoring.wordnet.build [/usr/share/wordnet]

Each line of the output is ``word<TAB>related words`` (space-separated, lower case, single words
only, the most frequent sense's first): for each part of speech, the word's first ``SENSES`` senses (WordNet lists a word's senses
most frequent first), and for each of them the other words of the sense (its synonyms) and the
words derivationally related to this word in that sense ("divide" and "division"). The words of
the rarer senses are left out: they bring far more noise than help when a question is expanded.
The word forms WordNet lists as irregular ("biggest" -> "big") are kept in ``forms`` lines:
``=form<TAB>base``.

WordNet's licence (LICENSE beside this file) permits this redistribution with its notice.
"""

from __future__ import annotations

import gzip
import sys
from collections import defaultdict
from pathlib import Path

SENSES = 3
POS = {"noun": "n", "verb": "v", "adj": "a", "adv": "r"}
OUT = Path(__file__).with_name("synonyms.tsv.gz")


def _data(folder: Path, name: str) -> dict[str, tuple[list[str], list[tuple[str, int, str, int]]]]:
    """offset -> (words, [(pointer, target offset, target pos, source word number / target
    word number packed)]) of one data file."""
    synsets: dict[str, tuple[list[str], list[tuple[str, str, str, str]]]] = {}
    for line in (folder / f"data.{name}").read_text(encoding="latin-1").splitlines():
        if line.startswith("  "):
            continue
        fields = line.split(" ")
        offset, count = fields[0], int(fields[3], 16)
        words = [fields[4 + 2 * i].lower() for i in range(count)]
        words = [w.split("(")[0] for w in words]
        at = 4 + 2 * count
        pointers = []
        for i in range(int(fields[at])):
            symbol, target, pos, st = fields[at + 1 + 4 * i: at + 5 + 4 * i]
            pointers.append((symbol, target, pos, st))
        synsets[offset] = (words, pointers)
    return synsets


def build(folder: Path) -> int:
    data = {pos: _data(folder, name) for name, pos in POS.items()}
    data["s"] = data["a"]
    related: dict[str, dict[str, None]] = defaultdict(dict)
    for name, pos in POS.items():
        for line in (folder / f"index.{name}").read_text(encoding="latin-1").splitlines():
            if line.startswith("  "):
                continue
            fields = line.split(" ")
            lemma = fields[0].lower()
            if "_" in lemma or not lemma.isalpha():
                continue
            senses = int(fields[2])
            pointer_count = int(fields[3])
            offsets = fields[4 + pointer_count + 2: 4 + pointer_count + 2 + senses]
            for offset in offsets[:SENSES]:
                words, pointers = data[pos][offset]
                related[lemma].update((w, None) for w in words if w != lemma and "_" not in w and w.isalpha())
                number = next((i + 1 for i, w in enumerate(words) if w == lemma), None)
                for symbol, target, target_pos, st in pointers:
                    if symbol != "+" or number is None or int(st[:2], 16) != number:
                        continue
                    target_words = data[target_pos][target][0]
                    word = target_words[int(st[2:], 16) - 1]
                    if "_" not in word and word.isalpha() and word != lemma:
                        related[lemma][word] = None
    forms: dict[str, str] = {}
    for name in POS:
        for line in (folder / f"{name}.exc").read_text(encoding="latin-1").splitlines():
            fields = line.split()
            if len(fields) >= 2 and fields[0].isalpha() and fields[1].isalpha() and fields[0] not in forms:
                forms[fields[0]] = fields[1]
    lines = [f"{word}\t{' '.join(words)}" for word, words in sorted(related.items()) if words]
    lines += [f"={form}\t{base}" for form, base in sorted(forms.items())]
    with gzip.open(OUT, "wt", encoding="utf-8", compresslevel=9) as out:
        out.write("\n".join(lines) + "\n")
    return len(lines)


if __name__ == "__main__":
    print(build(Path(sys.argv[1] if len(sys.argv) > 1 else "/usr/share/wordnet")), "lines")
