"""Jobs: the store, the queue and its workers, uploads and webhooks."""
