"""Work beside the requests: the embedding worker, the HNSW indexer, the expiry sweeper."""
