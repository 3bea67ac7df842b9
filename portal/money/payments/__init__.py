"""Money from outside (spec service 7, Payment Gateway): top-ups, paid courses, saved payment
methods and refunds, through payment providers behind one interface (``providers``).

What pages and commands call (all HTTP-free; the caller commits once, or rolls back on a
``DomainError``, whose message is for the user and whose ``field`` names the form field):

``services`` (writes)
    ``start_top_up(user, amount, currency, method_kind, *, idempotency_key, return_url,
    saved_method_id=None, save_method=False)`` -> Payment: send the payer to
    ``payment.next_action_url`` while ``requires_action``; after committing call
    ``raise_if_unreachable(payment)`` (``ProviderDown``, 503: the payment is kept and retried).
    ``pay_course(user, course, *, idempotency_key, from_wallet=False, method_kind=None,
    saved_method_id=None, save_method=False, return_url="")`` -> Payment.
    ``resume_payment(user, payment, source=EventSource.RETURN)``: the payer came back from the
    hosted page; ask the provider and apply. ``cancel_payment(user, payment)``.
    ``list_methods``, ``set_default_method(user, id)``, ``remove_method(user, id)``.
    ``request_course_refund(user, payment, reason)`` -> Refund (automatic or queued);
    ``refund_payment(actor, payment, amount, reason)`` (finance; empty amount: all that is left);
    ``decide_refund(actor, refund, approve=..., note=...)``; ``set_course_price(actor, course,
    price, currency)``; ``own_payment(user, id)``; ``receipt_lines(payment, course)``.
``queries`` (the payer's pages)
    ``my_payments`` (keyset), ``payment_detail`` (timeline, refunds, refundable),
    ``payment_state`` (the live state fragment, one statement), ``saved_methods``,
    ``top_up_form``, ``course_checkout``, ``STATE_LABELS``.
``admin_queries`` (finance)
    ``parse_payment_filters`` + ``payments`` (keyset), ``refunds_queue``, ``webhook_log``,
    ``webhook_event``, ``course_sales`` (faculty and admins).
``webhooks``
    ``receive`` (the route), ``replay_webhook(actor, webhook_event)`` (finance).
``reconcile.reconcile(days=, fix=, provider_calls=, user_id=)`` -> Report (the reconciliation
page and ``flask payments reconcile``); ``receipt_pdf.receipt_pdf(viewer, payment)`` -> bytes.
"""
