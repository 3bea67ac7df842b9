"""Virtual cards: issuing and managing cards on wallets, and the card network's side
(authorizations, captures, reversals, refunds) against the ledger."""
