"""The `pgq run` worker: runs registered pipelines under lock, lease and heartbeat."""
