"""The shared cache (spec 14): ``cache_entries``, an UNLOGGED table every process and machine
reads. ``services`` has the interface (keys, get, set, get-or-compute, invalidation, metrics),
``models`` the table, ``tasks`` the clean-up job. No page of its own: pages and services call it
to keep what is costly to compute (README, "Cache")."""
