"""The API gateway: fixed-window rate limits (``services``: the login throttle and the JSON API
count there), personal access tokens (``tokens``), and the request log (``logs`` writes it in
batches after the response, ``log_queries`` reads it for Admin > Traffic, ``tasks`` drops old
rows). Served by ``blueprints/api`` (the JSON API), ``blueprints/auth/tokens.py`` (the account's
API tokens page) and ``blueprints/admin/traffic.py``."""
