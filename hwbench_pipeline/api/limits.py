"""The REST server's default limits, in a module with no imports: ``hwbench serve`` shows them in its help
without loading the API (~1.5 s of imports), and ``create_app`` uses the same values."""

MAX_ROWS = 1000
MAX_SECONDS = 30.0
# Per query: one heavy query cannot take the host's memory or every core ...
QUERY_MEMORY_LIMIT = "512MB"
QUERY_THREADS = 1
# ... and a few at once: 4 x 512MB and 4 cores at most, whatever the number of clients.
MAX_CONCURRENT_QUERIES = 4
QUEUE_SECONDS = 5.0
# 1000 records of the widest table are well under 16 MiB; a wide SELECT * of huge values is cut to fit.
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
# The SQL text is capped at 100,000 characters (up to 4 bytes each in UTF-8), plus parameters.
MAX_BODY_BYTES = 1024 * 1024
