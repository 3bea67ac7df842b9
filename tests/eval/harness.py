"""The evaluation sets of issue 18 and where they live: every ``tutor_*.toml`` and
``names_*.toml`` in ``tests/eval/data`` (``*_tune.toml``: tuned on; ``*_test.toml``: held out,
written apart). The figures themselves are computed by ``portal.evaluation``, which
``flask eval matching`` prints too."""

from __future__ import annotations

from pathlib import Path

from portal import evaluation

DATA = Path(__file__).resolve().parent / "data"


def sets(engine: str) -> list[str]:
    """The names of the sets present for ``engine`` (``tutor`` or ``names``)."""
    return evaluation.set_names(DATA, engine)


def rows(engine: str, name: str) -> list[dict]:
    return evaluation.load(DATA, engine, name)
