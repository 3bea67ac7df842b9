"""The data browser (Admin > Data): a read-only look at every table of the portal.

``catalog`` describes the tables from the models' metadata (columns, what is secret and masked,
what is personal, how tables refer to each other); ``queries`` reads one page of a table or one
row with its related rows, through the request's own session, so row-level security applies as
to any other page of the acting admin. Served by ``blueprints/admin/data.py``.

It lives in the platform layer because it knows no domain: it reads the shared metadata only,
so any table a domain adds is browsable (and masked by the same rules) without a change here.
"""
