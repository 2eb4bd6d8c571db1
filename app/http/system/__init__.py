"""/health, /ready, /info and /metrics: probes and the scrape endpoint."""
