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
    ``refund_payment_once(actor, payment, amount, reason, *, idempotency_key)`` -> (Refund,
    replayed): the same, one refund per form key (finance's refund form);
    ``decide_refund(actor, refund, approve=..., note=...)``; ``set_course_price(actor, course,
    price, currency)``; ``own_payment(user, id)``; ``receipt_lines(payment, course)``.
``queries`` (the payer's pages)
    ``my_payments`` (keyset), ``payment_detail`` (timeline, refunds, refundable),
    ``payment_state`` (the live state fragment, one statement), ``saved_methods``,
    ``top_up_form``, ``course_checkout``, ``STATE_LABELS``.
``admin_queries`` (finance)
    ``parse_payment_filters`` + ``payments`` (keyset) + ``payments_count`` (capped),
    ``payment_page`` (payer, ledger rows, timeline, refunds, webhooks) + ``check_refund`` (the
    refund form's review step), ``refunds_queue``, ``refund_row``, ``refund_counts``,
    ``refund_requests_waiting``, ``parse_webhook_filters`` + ``webhook_log``, ``webhook_event``,
    ``last_reconciliation``, ``course_sales`` (faculty and admins).
``admin_services`` (finance)
    ``reconcile_and_record(actor, period, fix=)``: "Run now" on the reconciliation page over
    7, 30 or 90 days or all, recorded as every run is (``reconcile.reconcile_and_record``).
``webhooks``
    ``receive`` (the route), ``replay_webhook(actor, webhook_event)`` (finance).
``reconcile.reconcile(days=, fix=, provider_calls=, user_id=)`` -> Report (the reconciliation
page and ``flask payments reconcile``); ``receipt_pdf.receipt_pdf(viewer, payment)`` -> bytes.
"""
