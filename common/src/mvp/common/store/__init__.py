"""The embedded S3-compatible store behind `mvp store serve`: moto's server with durable snapshots
(``cli``) and SigV4 access keys (``auth``). For local runs and tests; a cluster uses MinIO."""
