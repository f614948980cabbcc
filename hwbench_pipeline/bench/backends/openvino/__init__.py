"""OpenVINO backend (CPU plugin): torch models converted in process with ``ov.convert_model``."""
