"""The JSON API under ``/v1/``: checking each request's fields, then calling the engine."""

from __future__ import annotations

from portal.sandbox.psp import rules
from portal.sandbox.psp.engine import ApiError, Psp
from portal.sandbox.psp.webhooks import Dispatcher


def _bad(param: str, message: str, code: str = "parameter_invalid") -> ApiError:
    return ApiError(400, code, message, param)


def _only(body: dict, allowed: set[str]) -> None:
    for name in body:
        if name not in allowed:
            raise _bad(name, f"Unknown parameter {name!r}.", "parameter_unknown")


def _text(body: dict, name: str, *, required: bool = False, default: str | None = "", limit: int = 500) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise _bad(name, f"{name} is required.", "parameter_missing")
        return default
    if not isinstance(value, str):
        raise _bad(name, f"{name} must be a string.")
    if required and not value.strip():
        raise _bad(name, f"{name} is required.", "parameter_missing")
    if len(value) > limit:
        raise _bad(name, f"{name} is at most {limit} characters.")
    return value


def _amount(body: dict, name: str = "amount", *, required: bool = True) -> int | None:
    value = body.get(name)
    if value is None:
        if required:
            raise _bad(name, "amount is required, in minor units (1250 for 12.50 USD).", "parameter_missing")
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(name, "amount must be a whole number of minor units (1250 for 12.50 USD).")
    if not 1 <= value <= rules.MAX_AMOUNT:
        raise _bad(name, f"amount must be between 1 and {rules.MAX_AMOUNT} minor units.")
    return value


def create_customer(psp: Psp, body: dict) -> tuple[int, dict]:
    _only(body, {"email", "name"})
    email = _text(body, "email", required=True, limit=254)
    if "@" not in email:
        raise _bad("email", "email must be an e-mail address.")
    return 200, psp.create_customer(email, _text(body, "name", limit=200))


def create_payment(psp: Psp, body: dict) -> tuple[int, dict]:
    _only(body, {"amount", "currency", "method_kind", "return_url", "description", "metadata", "customer",
                 "payment_method", "save_method", "capture_method"})
    params = {"amount": _amount(body)}
    currency = _text(body, "currency", required=True, limit=3).upper()
    if currency not in rules.CURRENCY_SCALES:
        raise _bad("currency", f"Unsupported currency {currency!r}: use one of "
                   f"{', '.join(sorted(rules.CURRENCY_SCALES))}.", "currency_unsupported")
    params["currency"] = currency
    params["method_kind"] = _text(body, "method_kind", required=True)
    if params["method_kind"] not in {"card", "mobile_money"}:
        raise _bad("method_kind", "method_kind is card or mobile_money.")
    params["return_url"] = _text(body, "return_url", required=True, limit=2000)
    if not params["return_url"].startswith(("http://", "https://")):
        raise _bad("return_url", "return_url must be an http or https address.")
    params["description"] = _text(body, "description")
    metadata = body.get("metadata") or {}
    if not isinstance(metadata, dict) or len(metadata) > 50 or not all(
            isinstance(k, str) and isinstance(v, str) and len(k) <= 40 and len(v) <= 500 for k, v in metadata.items()):
        raise _bad("metadata", "metadata is an object of at most 50 strings (keys up to 40 characters).")
    params["metadata"] = metadata
    params["customer"] = _text(body, "customer", default=None, limit=100)
    params["payment_method"] = _text(body, "payment_method", default=None, limit=100)
    save = body.get("save_method", False)
    if not isinstance(save, bool):
        raise _bad("save_method", "save_method is true or false.")
    if save and (params["customer"] is None or params["method_kind"] != "card"):
        raise _bad("save_method", "Only a card of a payment with a customer can be saved.")
    if params["payment_method"] and params["customer"] is None:
        raise _bad("customer", "Paying with a saved method needs its customer.", "parameter_missing")
    params["save_method"] = save
    params["capture_method"] = _text(body, "capture_method", default="automatic")
    if params["capture_method"] not in {"automatic", "manual"}:
        raise _bad("capture_method", "capture_method is automatic or manual.")
    return 200, psp.create_payment(params)


def capture(psp: Psp, body: dict, payment_id: str) -> tuple[int, dict]:
    _only(body, {"amount"})
    return 200, psp.capture(payment_id, _amount(body, required=False))


def cancel(psp: Psp, body: dict, payment_id: str) -> tuple[int, dict]:
    _only(body, set())
    return 200, psp.cancel(payment_id)


def create_refund(psp: Psp, body: dict) -> tuple[int, dict]:
    _only(body, {"payment", "amount", "reason"})
    payment = _text(body, "payment", required=True, limit=100)
    return 200, psp.create_refund(payment, _amount(body, required=False),
                                  _text(body, "reason", default="requested_by_customer", limit=200))


def detach(psp: Psp, body: dict, method_id: str) -> tuple[int, dict]:
    _only(body, set())
    return 200, psp.detach_method(method_id)


def settle(psp: Psp, body: dict) -> tuple[int, dict]:
    _only(body, set())
    return 200, psp.settle_due(None)


def flush_webhooks(dispatcher: Dispatcher, body: dict) -> tuple[int, dict]:
    _only(body, set())
    dispatcher.flush()
    return 200, {"flushed": True}
