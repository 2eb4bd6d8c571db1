"""Domain types: job states, specs, errors, views and filters. Imports nothing else of ours."""
