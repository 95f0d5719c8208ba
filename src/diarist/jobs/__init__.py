"""Jobs: the store, the queue and its workers, uploads, URL fetching and webhooks."""
