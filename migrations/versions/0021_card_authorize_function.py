"""A card authorization as one database call: ``card_authorize(message)``

Revision ID: 0021_card_authorize
Revises: 0020

``portal.money.cards.network.authorize`` used to send six statements for an approval (the
network's identity, the card locked and read, the ledger's lock of the wallets, the hold's
transaction row, the wallet's locked balance, the card transaction row) and build three ORM
objects on the way; its budget is p99 under 100 ms. ``card_authorize`` makes the same decision,
in the same order, in the caller's transaction:

1. sets the identity the caller acts with (``app.user_id``, ``app.role``, ``app.actor``, as
   ``session_by_token`` of 0009 does for a logged-in request), so no separate ``set_config``
   statement goes before it;
2. locks the card found by the keyed hash of its number (``FOR UPDATE``), then looks the
   message's network id up: a statement after the lock, so a second delivery of one message
   that waited on the lock finds the first one's row (a duplicate), and one that did not is
   refused by the unique network id as before (``DeliveredAtOnce``);
3. the checks, in the order the Python ones made them: state, expiry, the expiry sent, the
   security code (checked in Python, which alone holds the card verification key: the call
   gets only whether it matched), the reset of wrong codes, currency, amount, merchant
   category and country, the amount in the card's currency, per-purchase, daily and monthly
   limits (the sums read under the card's lock);
4. the hold, as ``ledger.hold`` makes it, with the ledger's role (``app.role`` = ``ledger``, as
   ``ledger.as_ledger`` and ``ledger_post`` give it; the caller's role back after it): the card
   float's shard found (made on first use, ``ledger_wallet`` of 0015), both wallets locked in
   ascending id order, both active, the user wallet's available balance enough; the locked
   balance raised and the pending transaction row inserted;
5. the card transaction row, approved or declined, with the reason the caller sent for each
   decline (the texts stay in Python, ``portal.money.cards.codes`` and ``network``).

When the merchant's currency is not the card's, the call answers ``{"convert": <code>}`` before
writing anything: the caller reads the exchange's current rate (its rules live in Python) and
calls again with the amount converted, the card still locked by its transaction. Other answers:
``{"no_card": true, "duplicate": id|null}``, ``{"duplicate": id}``, or the decision
``{"id", "code", "reason", "wrong_cvv", "card", "cvv_reset"}`` (a wrong security code is then
counted in Python, which may freeze the card and raise a security event), with the hold's
transaction, the wallet and its new locked balance for an approval (the caller's session copies
are brought up to date from them, as ``ledger.post`` does with ``ledger_post``'s answer).

The hold is not announced after the commit (``ledger_posted``): a pending hold moves nothing the
transaction monitoring judges, and the card sweep (``monitor_card_activity``) judges the
authorization itself.

Rights: SECURITY INVOKER; every row passes the same row-level-security policies as the Python
statements did, under the identity the caller states (which the app role could always set
itself: ``portal/db/context.py``, "Limits"); the audit trigger records the same actor; every
CHECK constraint holds.
"""

from alembic import op

revision = "0021_card_authorize"
down_revision = "0020"
branch_labels = None
depends_on = None

CARD_AUTHORIZE = """
CREATE OR REPLACE FUNCTION card_authorize(p jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY INVOKER AS $$
DECLARE
    reasons jsonb := p->'reasons';
    created timestamptz;
    clock_offset interval;
    card record;
    existing uuid;
    code text;
    why text;
    amount numeric := 0;
    rate numeric;
    spent record;
    hex text;
    shard int;
    float_id uuid;
    w record;
    wallet_status text;
    wallet_kind text;
    wallet_available numeric;
    wallet_user uuid;
    float_status text;
    float_user uuid;
    tx_id uuid;
    row_id uuid := gen_random_uuid();
    reason text;
    locked numeric;
    cvv_reset boolean := false;
BEGIN
    PERFORM set_config('app.user_id', p->'actor'->>'user_id', true),
            set_config('app.role', p->'actor'->>'role', true),
            set_config('app.actor', p->'actor'->>'label', true);

    SELECT c.id, c."userId" AS user_id, c."walletId" AS wallet_id, c.currency, c.state, c."expMonth" AS exp_month,
           c."expYear" AS exp_year, c.last4, c."perPurchaseLimit" AS per_purchase_limit,
           c."dailyLimit" AS daily_limit, c."monthlyLimit" AS monthly_limit,
           c."blockedMccGroups" AS blocked_mcc_groups, c."blockedCountries" AS blocked_countries,
           c."wrongCvvCount" AS wrong_cvv_count
      INTO card
      FROM virtual_cards c WHERE c."panLookup" = p->>'lookup'
       FOR UPDATE;
    SELECT id INTO existing FROM card_transactions WHERE "networkId" = p->>'network_id';
    IF card.id IS NULL THEN
        RETURN jsonb_build_object('no_card', true, 'duplicate', existing);
    END IF;
    IF existing IS NOT NULL THEN
        RETURN jsonb_build_object('duplicate', existing);
    END IF;
    -- The rows' time: the database's clock now that the card is locked, so the authorizations
    -- of one card are dated in the order they were decided, whichever process sent them. A
    -- caller whose clock is set apart from the real one (tests move it) by more than a second
    -- keeps its offset.
    clock_offset := (p->>'created')::timestamptz - statement_timestamp();
    created := clock_timestamp()
               + CASE WHEN abs(extract(epoch FROM clock_offset)) > 1 THEN clock_offset ELSE interval '0' END;

    <<decide>>
    BEGIN
        IF card.state IN ('canceled', 'replaced') THEN
            code := '46'; why := card.state; EXIT decide;
        END IF;
        IF card.state = 'frozen' THEN
            code := '62'; why := 'frozen'; EXIT decide;
        END IF;
        IF (p->>'now_year')::int * 12 + (p->>'now_month')::int > card.exp_year * 12 + card.exp_month THEN
            code := '54'; why := 'expired'; EXIT decide;
        END IF;
        IF p->>'exp_month' <> card.exp_month::text OR p->>'exp_year' <> card.exp_year::text THEN
            code := '54'; why := 'expiry_mismatch'; EXIT decide;
        END IF;
        IF NOT (p->>'cvv_ok')::boolean THEN
            code := 'N7'; why := 'cvv'; EXIT decide;
        END IF;
        IF card.wrong_cvv_count > 0 THEN
            UPDATE virtual_cards SET "wrongCvvCount" = 0, "updatedAt" = created WHERE id = card.id;
            cvv_reset := true;
        END IF;
        IF NOT (p->>'currency_known')::boolean THEN
            code := 'CU'; why := 'currency'; EXIT decide;
        END IF;
        IF NOT (p->>'scale_ok')::boolean THEN
            code := '13'; why := 'amount'; EXIT decide;
        END IF;
        IF p->>'mcc_group' IS NOT NULL AND p->>'mcc_group' = ANY (card.blocked_mcc_groups) THEN
            code := '57'; why := 'mcc'; EXIT decide;
        END IF;
        IF p->>'country' = ANY (card.blocked_countries) THEN
            code := '57'; why := 'country'; EXIT decide;
        END IF;
        IF card.currency = p->>'currency' THEN
            amount := (p->>'amount')::numeric;
        ELSIF p->'converted'->>'currency' IS DISTINCT FROM card.currency THEN
            RETURN jsonb_build_object('convert', card.currency);
        ELSIF p->'converted' ? 'no_rate' THEN
            code := '91'; why := 'rate'; EXIT decide;
        ELSE
            amount := (p->'converted'->>'amount')::numeric;
            rate := (p->'converted'->>'rate')::numeric;
        END IF;
        IF card.per_purchase_limit IS NOT NULL AND amount > card.per_purchase_limit THEN
            code := '61'; why := 'per_purchase'; EXIT decide;
        END IF;
        IF card.daily_limit IS NOT NULL OR card.monthly_limit IS NOT NULL THEN
            SELECT coalesce(sum(CASE WHEN t.state = 'captured' THEN t."capturedAmount" ELSE t.amount END)
                            FILTER (WHERE t."createdAt" >= (p->>'day')::timestamptz), 0) AS day_sum,
                   coalesce(sum(CASE WHEN t.state = 'captured' THEN t."capturedAmount" ELSE t.amount END), 0)
                       AS month_sum
              INTO spent
              FROM card_transactions t
             WHERE t."cardId" = card.id AND t.kind = 'authorization' AND t.state IN ('pending', 'captured')
               AND t."createdAt" >= (p->>'month')::timestamptz;
            IF card.daily_limit IS NOT NULL AND spent.day_sum + amount > card.daily_limit THEN
                code := '61'; why := 'daily'; EXIT decide;
            END IF;
            IF card.monthly_limit IS NOT NULL AND spent.month_sum + amount > card.monthly_limit THEN
                code := '61'; why := 'monthly'; EXIT decide;
            END IF;
        END IF;

        -- The hold (``ledger.hold``), with the ledger's role as ``ledger.as_ledger`` gives it:
        -- the holder's shard of the card float (user id modulo the shards, as
        -- ``ledger.shard_of``), both wallets locked in ascending id order, checked, then changed.
        PERFORM set_config('app.role', 'ledger', true);
        hex := replace(card.user_id::text, '-', '');
        shard := ((('x' || substr(hex, 1, 8))::bit(32)::bigint::numeric * 79228162514264337593543950336
                   + ('x' || substr(hex, 9, 8))::bit(32)::bigint::numeric * 18446744073709551616
                   + ('x' || substr(hex, 17, 8))::bit(32)::bigint::numeric * 4294967296
                   + ('x' || substr(hex, 25, 8))::bit(32)::bigint::numeric) % (p->>'float_shards')::int)::int;
        float_id := ledger_wallet(jsonb_build_object('system', 'card_float', 'currency', card.currency,
                                                     'shard', shard), created);
        FOR w IN SELECT id, status, kind, balance - "lockedBalance" AS available, "userId" AS user_id
                   FROM wallets WHERE id IN (card.wallet_id, float_id) ORDER BY id FOR UPDATE LOOP
            IF w.id = card.wallet_id THEN
                wallet_status := w.status; wallet_kind := w.kind; wallet_available := w.available;
                wallet_user := w.user_id;
            ELSE
                float_status := w.status; float_user := w.user_id;
            END IF;
        END LOOP;
        IF wallet_status IS NULL OR float_status IS NULL OR float_id = card.wallet_id THEN
            RAISE EXCEPTION 'A wallet of this movement does not exist.';
        END IF;
        IF wallet_status <> 'active' OR float_status <> 'active' THEN
            code := '05'; why := 'wallet'; EXIT decide;
        END IF;
        IF wallet_kind = 'user' AND wallet_available < amount THEN
            code := '51'; why := 'funds'; EXIT decide;
        END IF;
        UPDATE wallets SET "lockedBalance" = "lockedBalance" + amount, "updatedAt" = created
         WHERE id = card.wallet_id
        RETURNING "lockedBalance" INTO locked;
        tx_id := gen_random_uuid();
        INSERT INTO transactions (id, "groupId", type, phase, "debitWalletId", "creditWalletId", "debitUserId",
                                  "creditUserId", amount, currency, description, details, "createdAt", "updatedAt")
        VALUES (tx_id, gen_random_uuid(), 'card_purchase', 'pending', card.wallet_id, float_id, wallet_user,
                float_user, amount, card.currency, left('Card ' || card.last4 || ': ' || (p->>'merchant_name'), 300),
                jsonb_build_object('card', card.last4, 'merchant', p->>'merchant_name', 'mcc', p->>'mcc'),
                created, created);
    END;
    PERFORM set_config('app.role', p->'actor'->>'role', true);

    IF code IS NOT NULL THEN
        reason := left(coalesce(reasons->>why, reasons->>code, 'Declined'), 200);
        INSERT INTO card_transactions (id, "cardId", "userId", "walletId", kind, state, "networkId", "merchantName",
                                       mcc, "merchantCountry", "merchantAmount", "merchantCurrency", amount, currency,
                                       rate, "capturedAmount", "refundedAmount", "responseCode", "declineReason",
                                       "ledgerTransactionIds", "createdAt", "updatedAt")
        VALUES (row_id, card.id, card.user_id, card.wallet_id, 'authorization', 'declined', p->>'network_id',
                p->>'merchant_name', p->>'mcc', p->>'country', (p->>'merchant_amount')::numeric, p->>'currency',
                amount, card.currency, rate, 0, 0, code, reason, '{}', created, created);
        RETURN jsonb_build_object('id', row_id, 'code', code, 'reason', reason, 'wrong_cvv', code = 'N7',
                                  'card', card.id, 'cvv_reset', cvv_reset);
    END IF;

    INSERT INTO card_transactions (id, "cardId", "userId", "walletId", kind, state, "networkId", "merchantName", mcc,
                                   "merchantCountry", "merchantAmount", "merchantCurrency", amount, currency, rate,
                                   "capturedAmount", "refundedAmount", "responseCode", "declineReason",
                                   "holdTransactionId", "ledgerTransactionIds", "holdExpiresAt", "createdAt",
                                   "updatedAt")
    VALUES (row_id, card.id, card.user_id, card.wallet_id, 'authorization', 'pending', p->>'network_id',
            p->>'merchant_name', p->>'mcc', p->>'country', (p->>'merchant_amount')::numeric, p->>'currency', amount,
            card.currency, rate, 0, 0, '00', '', tx_id, ARRAY[tx_id], (p->>'hold_expires_at')::timestamptz,
            created, created);
    RETURN jsonb_build_object('id', row_id, 'code', '00', 'hold', tx_id, 'currency', card.currency, 'card', card.id,
                              'cvv_reset', cvv_reset, 'wallet', card.wallet_id, 'locked', locked::text);
END
$$
"""


def upgrade():
    op.execute(CARD_AUTHORIZE)


def downgrade():
    op.execute("DROP FUNCTION IF EXISTS card_authorize(jsonb)")
