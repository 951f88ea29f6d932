"""Protocol adapters and the request batcher they share."""
