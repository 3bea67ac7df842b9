"""TechEmpower's "Fortunes" test as a tiny Flask app: per request one query for every row of
``fortune``, one more fortune added in memory, a sort by message and an HTML table rendered
through an autoescaping Jinja template. No ORM: psycopg 3 with one connection per server thread,
kept open (autocommit, so the query is the one round trip; psycopg prepares it after a few
runs). The database is ``FORTUNES_DATABASE_URL``, a scratch database on the portal's server
(``load_fortunes`` fills it)."""

from __future__ import annotations

import os
import threading

import psycopg
from flask import Flask, render_template

#: TechEmpower's Fortunes data (toolset/databases/postgres/create-postgres.sql of
#: TechEmpower/FrameworkBenchmarks): the 12 rows every implementation serves.
FORTUNES = [
    (1, "fortune: No such file or directory"),
    (2, "A computer scientist is someone who fixes things that aren't broken."),
    (3, "After enough decimal places, nobody gives a damn."),
    (4, "A bad random number generator: 1, 1, 1, 1, 1, 4.33e+67, 1, 1, 1"),
    (5, "A computer program does what you tell it to do, not what you want it to do."),
    (6, "Emacs is a nice operating system, but I prefer UNIX. — Tom Christaensen"),
    (7, "Any program that runs right is obsolete."),
    (8, "A list is only as strong as its weakest link. — Donald Knuth"),
    (9, "Feature: A bug with seniority."),
    (10, "Computers make very fast, very accurate mistakes."),
    (11, '<script>alert("This should not be displayed in a browser alert box.");</script>'),
    (12, "フレームワークのベンチマーク"),
]
ADDED = (0, "Additional fortune added at request time.")

app = Flask(__name__)
_local = threading.local()


def _connection() -> psycopg.Connection:
    connection = getattr(_local, "connection", None)
    if connection is None or connection.closed:
        connection = _local.connection = psycopg.connect(os.environ["FORTUNES_DATABASE_URL"], autocommit=True)
    return connection


@app.get("/fortunes")
def fortunes():
    rows = _connection().execute("SELECT id, message FROM fortune").fetchall()
    rows.append(ADDED)
    rows.sort(key=lambda row: row[1])
    return render_template("fortunes.html", fortunes=rows)


def load_fortunes(url: str) -> None:
    """Create the ``fortune`` table in the (empty) database at ``url`` and fill it."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE fortune (id integer PRIMARY KEY, message varchar(2048) NOT NULL)")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO fortune (id, message) VALUES (%s, %s)", FORTUNES)
        conn.execute("ANALYZE fortune")
