"""The API's description: the OpenAPI 3.1 document (``/api/v1/openapi.json``) and a page that
reads it for people (``/api/v1/reference``), both public and both made from ``spec.OPERATIONS``."""

from __future__ import annotations

import json

from flask import render_template, request

from blueprints.api import bp
from blueprints.api.problems import KINDS, TYPE_BASE
from blueprints.api.spec import OPERATIONS, PREFIX, SCHEMAS, document, operation


@operation(bp, "GET", "/openapi.json", summary="This API's OpenAPI 3.1 document", response="document", scope=None,
           group="docs")
def openapi():
    return document(request.host_url.rstrip("/"))


@operation(bp, "GET", "/reference", summary="This API's reference, as a page", response="html", scope=None,
           group="docs")
def reference():
    ops = [op for op in OPERATIONS if op.response not in ("html", "document")]
    schemas = {name: json.dumps(schema, indent=2) for name, schema in SCHEMAS.items()}
    problems = [(TYPE_BASE + kind, status, title) for status, (kind, title) in sorted(KINDS.items())]
    return render_template("api/reference.html", operations=ops, prefix=PREFIX, schemas=schemas,
                           problems=problems, base=request.host_url.rstrip("/"))
