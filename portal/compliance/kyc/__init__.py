"""Identity verification (KYC, spec service 5): the levels and what each unlocks (``levels``),
the uploaded documents (``documents``), a student's submissions and the officers' decisions
(``services``, reads in ``queries``). Served by ``blueprints/wallet/verification.py`` (the
student's side) and ``blueprints/compliance/kyc_review.py`` (the officers' queue and review)."""
