import multiprocessing
import time

from hwbench_pipeline.bench.trackers.system_load import CpuTimes, is_contaminated, load_between, read_cpu_times


def _window(busy, own, steal, total=1000):
    start = CpuTimes(busy=0, steal=0, total=0, own=0.0)
    return load_between(start, CpuTimes(busy=busy, steal=steal, total=total, own=own))


def test_noise_flag_on_synthetic_counters():
    # The measurement itself busy on one of two cores: not contaminated.
    assert not is_contaminated(_window(busy=500, own=495, steal=0))
    # Another process took a quarter of the machine beside it: contaminated.
    quiet, busy = _window(busy=500, own=495, steal=0), _window(busy=750, own=495, steal=0)
    assert busy.foreign_fraction > 0.2 and is_contaminated(busy) and not is_contaminated(quiet)
    # The hypervisor stole 10 % of the time: contaminated.
    assert is_contaminated(_window(busy=500, own=495, steal=100))


def _spin(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def test_real_foreign_load_is_seen():
    # A real competing process spinning while this one sleeps shows up as foreign CPU time.
    start = read_cpu_times()
    worker = multiprocessing.get_context("spawn").Process(target=_spin, args=(1.0,))
    worker.start()
    worker.join()
    window = load_between(start, read_cpu_times())
    assert window.foreign_fraction is not None and window.foreign_fraction > 0.2
    assert is_contaminated(window)
