"""Currency pairs, exchange rates from several sources, and conversions (spec service 3, Exchange Rate)."""
