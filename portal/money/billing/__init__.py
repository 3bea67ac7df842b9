"""Billing (spec service 1): plans, subscriptions with proration and dunning, invoices, entitlements."""
