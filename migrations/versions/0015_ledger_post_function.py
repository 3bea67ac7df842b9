"""The ledger's ``post`` as one database call: ``ledger_post(legs, group, initiated_by, now, spend_limit)``

Revision ID: 0015
Revises: 0014

``portal.money.wallets.ledger.post`` used to send six to nine statements for a transfer with its
fee leg (the identity switch to the ``ledger`` role and back, the wallet reads, the lock, the
balance updates, the inserts). ``ledger_post`` does the same work, in the same order, in the
caller's transaction:

1. finds the wallets the legs name: by id, a user's wallet in a currency (opened when the leg
   says so: the recipient of a transfer), or a system wallet's shard (made on first use);
2. locks them with ``SELECT ... FOR UPDATE`` in ascending id order (the ledger's order, so it
   queues behind and ahead of the Python paths ``hold``/``capture``/``release``/``reverse``);
3. checks each leg (same currency, two wallets, both active), then the optional spend limit
   (a sender's 24-hour transfer total, read under the lock), then that every user wallet's net
   outflow is covered by ``balance - lockedBalance``;
4. updates the balances and inserts the transaction rows (ids, time and texts from the caller).

A refusal is not an exception: nothing has been written when a check fails but wallets the legs
opened, as before in Python, and the function answers ``{"refused": <code>, ...}`` so the
caller's transaction stays usable (a Python ``DomainError`` never aborted it either); Python
maps each code to the same ``DomainError`` and message as before. Every other error (a CHECK
constraint, a policy) raises as any statement's would.

Rights: the functions run as their caller (SECURITY INVOKER). ``ledger_post`` sets ``app.role``
to ``ledger`` around ``ledger_move`` (the work) and gives the caller's value back after it, the
identity ``ledger.as_ledger`` gave the same statements before (an error aborts the transaction
or the savepoint, which takes the setting back with it). A ``SET`` clause on the function would
say the same, but PostgreSQL lets only a superuser attach one for a custom setting. The app role could always set
that setting itself (``portal/db/context.py``, "Limits"), so the function grants nothing new;
every row it reads or writes passes the same row-level-security policies, the audit trigger
records the same actor (``app.actor`` is untouched) and role, and the CHECK constraints hold.
"""

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

LEDGER_WALLET = """
CREATE OR REPLACE FUNCTION ledger_wallet(p_ref jsonb, p_now timestamptz) RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY INVOKER AS $$
-- The id of the wallet a leg names (``ledger_post``): {"id"}, {"user", "currency", "open"} or
-- {"system", "currency", "shard"}. NULL: a user's wallet that does not exist and is not to be opened.
DECLARE
    found uuid;
BEGIN
    IF p_ref ? 'id' THEN
        RETURN (p_ref->>'id')::uuid;
    ELSIF p_ref ? 'user' THEN
        SELECT id INTO found FROM wallets
         WHERE "userId" = (p_ref->>'user')::uuid AND currency = p_ref->>'currency';
        IF found IS NULL AND coalesce((p_ref->>'open')::boolean, false) THEN
            INSERT INTO wallets (id, "userId", currency, kind, balance, "lockedBalance", status, shard,
                                 "createdAt", "updatedAt")
            VALUES (gen_random_uuid(), (p_ref->>'user')::uuid, p_ref->>'currency', 'user', 0, 0, 'active', 0,
                    p_now, p_now)
            ON CONFLICT ("userId", currency) DO NOTHING;
            SELECT id INTO found FROM wallets
             WHERE "userId" = (p_ref->>'user')::uuid AND currency = p_ref->>'currency';
        END IF;
        RETURN found;
    ELSE
        SELECT id INTO found FROM wallets
         WHERE "systemName" = p_ref->>'system' AND currency = p_ref->>'currency'
           AND shard = (p_ref->>'shard')::smallint;
        IF found IS NULL THEN
            INSERT INTO wallets (id, "systemName", currency, kind, balance, "lockedBalance", status, shard,
                                 "createdAt", "updatedAt")
            VALUES (gen_random_uuid(), p_ref->>'system', p_ref->>'currency', 'system', 0, 0, 'active',
                    (p_ref->>'shard')::smallint, p_now, p_now)
            ON CONFLICT ("systemName", currency, shard) DO NOTHING;
            SELECT id INTO found FROM wallets
             WHERE "systemName" = p_ref->>'system' AND currency = p_ref->>'currency'
               AND shard = (p_ref->>'shard')::smallint;
        END IF;
        RETURN found;
    END IF;
END
$$
"""

LEDGER_POST = """
CREATE OR REPLACE FUNCTION ledger_move(p_legs jsonb, p_group uuid, p_initiated_by uuid, p_now timestamptz,
                                       p_spend_limit jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY INVOKER AS $$
-- The work of ``ledger_post``, with whatever identity the caller has.
DECLARE
    n int := jsonb_array_length(p_legs);
    leg jsonb;
    debit uuid[] := '{}';
    credit uuid[] := '{}';
    ids uuid[];
    w_status text[] := '{}';
    w_currency text[] := '{}';
    w_kind text[] := '{}';
    w_available numeric[] := '{}';
    w_user uuid[] := '{}';
    net numeric[];
    seen uuid[] := '{}';
    w record;
    i int;
    d int;
    c int;
    amount numeric;
    sent numeric;
    left_ numeric;
    answer_wallets jsonb := '[]';
    answer_legs jsonb := '[]';
BEGIN
    -- 1. The wallets: those that must exist first, then those a leg may open (so a missing
    --    sender's wallet is refused before anything is made).
    FOR pass IN 1..2 LOOP
        FOR i IN 1..n LOOP
            leg := p_legs->(i - 1);
            IF pass = 1 AND NOT coalesce((leg->'debit'->>'open')::boolean, false) AND NOT leg->'debit' ? 'system' THEN
                debit[i] := ledger_wallet(leg->'debit', p_now);
                IF debit[i] IS NULL THEN
                    RETURN jsonb_build_object('refused', 'no_wallet', 'user', leg->'debit'->'user',
                                              'currency', leg->'debit'->'currency');
                END IF;
            ELSIF pass = 2 AND debit[i] IS NULL THEN
                debit[i] := ledger_wallet(leg->'debit', p_now);
            END IF;
            IF pass = 1 AND NOT coalesce((leg->'credit'->>'open')::boolean, false) AND NOT leg->'credit' ? 'system' THEN
                credit[i] := ledger_wallet(leg->'credit', p_now);
                IF credit[i] IS NULL THEN
                    RETURN jsonb_build_object('refused', 'no_wallet', 'user', leg->'credit'->'user',
                                              'currency', leg->'credit'->'currency');
                END IF;
            ELSIF pass = 2 AND credit[i] IS NULL THEN
                credit[i] := ledger_wallet(leg->'credit', p_now);
            END IF;
        END LOOP;
    END LOOP;

    -- 2. Lock them in ascending id order.
    SELECT array_agg(DISTINCT x ORDER BY x) INTO ids FROM unnest(debit || credit) AS x;
    FOR w IN SELECT id, status, currency, kind, balance - "lockedBalance" AS available, "userId"
                 FROM wallets WHERE id = ANY (ids) ORDER BY id FOR UPDATE LOOP
        i := array_position(ids, w.id);
        w_status[i] := w.status;
        w_currency[i] := w.currency;
        w_kind[i] := w.kind;
        w_available[i] := w.available;
        w_user[i] := w."userId";
    END LOOP;
    net := array_fill(0::numeric, ARRAY[cardinality(ids)]);
    FOR i IN 1..cardinality(ids) LOOP
        IF w_status[i] IS NULL THEN
            RETURN jsonb_build_object('refused', 'unknown_wallet', 'wallet', ids[i]);
        END IF;
    END LOOP;

    -- 3. The checks, in the order the Python ledger made them.
    FOR i IN 1..n LOOP
        leg := p_legs->(i - 1);
        d := array_position(ids, debit[i]);
        c := array_position(ids, credit[i]);
        IF w_currency[d] <> leg->>'currency' OR w_currency[c] <> leg->>'currency' THEN
            RETURN jsonb_build_object('refused', 'currency', 'leg', i - 1);
        END IF;
        IF d = c THEN
            RETURN jsonb_build_object('refused', 'same_wallet', 'leg', i - 1);
        END IF;
        IF w_status[d] <> 'active' THEN
            RETURN jsonb_build_object('refused', 'unavailable', 'wallet', ids[d], 'user', w_user[d],
                                      'status', w_status[d], 'currency', w_currency[d], 'sending', true);
        END IF;
        IF w_status[c] <> 'active' THEN
            RETURN jsonb_build_object('refused', 'unavailable', 'wallet', ids[c], 'user', w_user[c],
                                      'status', w_status[c], 'currency', w_currency[c], 'sending', false);
        END IF;
        amount := (leg->>'amount')::numeric;
        net[d] := net[d] + amount;
        net[c] := net[c] - amount;
        IF NOT debit[i] = ANY (seen) THEN seen := seen || debit[i]; END IF;
        IF NOT credit[i] = ANY (seen) THEN seen := seen || credit[i]; END IF;
    END LOOP;
    IF p_spend_limit IS NOT NULL THEN
        -- What the sender moved of this type and currency since the window began, read under
        -- the lock of their wallet: a second transfer of theirs waits above and sees this one.
        SELECT coalesce(sum(t.amount), 0) INTO sent FROM transactions t
         WHERE t."debitUserId" = (p_spend_limit->>'user')::uuid
           AND t."createdAt" > (p_spend_limit->>'since')::timestamptz
           AND t.type = p_spend_limit->>'type' AND t.currency = p_spend_limit->>'currency'
           AND t.phase IN ('single', 'post');
        left_ := greatest((p_spend_limit->>'limit')::numeric - sent, 0);
        IF (p_spend_limit->>'amount')::numeric > left_ THEN
            RETURN jsonb_build_object('refused', 'limit', 'left', left_::text);
        END IF;
    END IF;
    FOR i IN 1..cardinality(seen) LOOP
        d := array_position(ids, seen[i]);
        IF net[d] > 0 AND w_kind[d] = 'user' AND w_available[d] < net[d] THEN
            RETURN jsonb_build_object('refused', 'insufficient', 'wallet', ids[d], 'user', w_user[d],
                                      'currency', w_currency[d], 'available', w_available[d]::text,
                                      'needed', net[d]::text);
        END IF;
    END LOOP;

    -- 4. Move: balances, then the rows.
    FOR i IN 1..cardinality(ids) LOOP
        IF net[i] <> 0 THEN
            UPDATE wallets SET balance = balance - net[i], "updatedAt" = p_now WHERE id = ids[i]
            RETURNING jsonb_build_object('id', id, 'balance', balance::text, 'lockedBalance', "lockedBalance"::text)
                 INTO leg;
            answer_wallets := answer_wallets || leg;
        END IF;
    END LOOP;
    FOR i IN 1..n LOOP
        leg := p_legs->(i - 1);
        d := array_position(ids, debit[i]);
        c := array_position(ids, credit[i]);
        INSERT INTO transactions (id, "groupId", type, phase, "debitWalletId", "creditWalletId", "debitUserId",
                                  "creditUserId", amount, currency, "initiatedById", description, details,
                                  "createdAt", "updatedAt")
        VALUES ((leg->>'id')::uuid, p_group, leg->>'type', 'single', debit[i], credit[i], w_user[d], w_user[c],
                (leg->>'amount')::numeric, leg->>'currency', p_initiated_by, leg->>'description',
                coalesce(leg->'details', '{}'::jsonb), p_now, p_now);
        answer_legs := answer_legs || jsonb_build_object('debit', debit[i], 'credit', credit[i],
                                                         'debitUser', w_user[d], 'creditUser', w_user[c]);
    END LOOP;
    RETURN jsonb_build_object('legs', answer_legs, 'wallets', answer_wallets);
END
$$
"""


LEDGER_POST_AS_LEDGER = """
CREATE OR REPLACE FUNCTION ledger_post(p_legs jsonb, p_group uuid, p_initiated_by uuid, p_now timestamptz,
                                       p_spend_limit jsonb DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY INVOKER AS $$
DECLARE
    caller_role text := coalesce(current_setting('app.role', true), '');
    answer jsonb;
BEGIN
    PERFORM set_config('app.role', 'ledger', true);
    answer := ledger_move(p_legs, p_group, p_initiated_by, p_now, p_spend_limit);
    PERFORM set_config('app.role', caller_role, true);
    RETURN answer;
END
$$
"""


def upgrade():
    op.execute(LEDGER_WALLET)
    op.execute(LEDGER_POST)
    op.execute(LEDGER_POST_AS_LEDGER)


def downgrade():
    op.execute("DROP FUNCTION IF EXISTS ledger_post(jsonb, uuid, uuid, timestamptz, jsonb)")
    op.execute("DROP FUNCTION IF EXISTS ledger_move(jsonb, uuid, uuid, timestamptz, jsonb)")
    op.execute("DROP FUNCTION IF EXISTS ledger_wallet(jsonb, timestamptz)")
