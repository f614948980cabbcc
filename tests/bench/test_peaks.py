from hwbench_pipeline.bench.peaks import GEMM_N_START, free_memory_bytes, gemm_size, gemm_size_limit


def test_the_peak_gemm_may_grow_as_far_as_memory_allows_not_to_a_fixed_cap():
    # an 80 GB GPU: three 32768² fp32 matrices (12 GiB) fit in a quarter of it, 65536² would not
    assert gemm_size_limit(80e9) == 32768
    assert gemm_size_limit(1e9) == 4096
    assert gemm_size_limit(0) == GEMM_N_START


def test_the_chosen_gemm_is_a_power_of_two_within_the_memory_limit():
    n = gemm_size("cpu")
    assert n >= GEMM_N_START and n & (n - 1) == 0
    assert n <= gemm_size_limit(free_memory_bytes("cpu"))
