"""Analytics (spec service 16): product events and recorded metrics."""
