"""The key columns beyond labels, shape, precision and threads, as a row measured by hwbench's current method
carries them (tests that write rows by hand add these)."""

IDENTITY = {"config_hash": "0123456789abcdef", "quantization": "none", "cache_precision": "none",
            "attention": "eager", "measurement_method": "hwbench-1"}
