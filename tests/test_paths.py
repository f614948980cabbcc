"""The measurement lock directory: one per user, mode 0700, and refused when another user could hold the lock."""

import os
import stat
import tempfile

import pytest

from hwbench_pipeline import cli
from hwbench_pipeline.paths import UnsafeLockDirError, host_lock_dir


@pytest.fixture
def temp_dir(tmp_path, monkeypatch):
    """A private temp dir in place of /tmp, with no lock-dir variables set."""
    monkeypatch.delenv("HWBENCH_LOCK_DIR", raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def _mode(path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_the_lock_dir_is_one_per_user_in_the_temp_dir_with_mode_0700(temp_dir):
    first = host_lock_dir()
    assert first == temp_dir / f"hwbench-locks-{os.getuid()}" and _mode(first) == 0o700
    assert host_lock_dir() == first and _mode(first) == 0o700  # the same folder for every later call


def test_the_lock_dir_is_0700_whatever_the_umask(temp_dir):
    previous = os.umask(0o777)
    try:
        path = host_lock_dir()
    finally:
        os.umask(previous)
    assert _mode(path) == 0o700


def test_the_users_runtime_dir_is_preferred(temp_dir, monkeypatch):
    runtime = temp_dir / "run-user"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    assert host_lock_dir() == runtime / "hwbench" and _mode(runtime / "hwbench") == 0o700


@pytest.mark.parametrize("runtime", ["{tmp}/missing", "relative/run", "{tmp}/a-file"])
def test_a_runtime_dir_that_is_not_a_folder_of_ones_own_is_passed_over(temp_dir, monkeypatch, runtime):
    (temp_dir / "a-file").write_text("")
    monkeypatch.setenv("XDG_RUNTIME_DIR", runtime.format(tmp=temp_dir))
    assert host_lock_dir() == temp_dir / f"hwbench-locks-{os.getuid()}"


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a folder to another user needs root")
def test_a_runtime_dir_of_another_user_is_passed_over(temp_dir, monkeypatch):
    runtime = temp_dir / "run-other"
    runtime.mkdir(mode=0o700)
    os.chown(runtime, os.getuid() + 1, -1)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    assert host_lock_dir() == temp_dir / f"hwbench-locks-{os.getuid()}"


@pytest.mark.parametrize("mode", [0o777, 0o755, 0o770, 0o701])
def test_an_existing_lock_dir_open_to_others_is_refused_in_one_line(temp_dir, mode):
    path = temp_dir / f"hwbench-locks-{os.getuid()}"
    path.mkdir()
    path.chmod(mode)
    with pytest.raises(UnsafeLockDirError) as refused:
        host_lock_dir()
    message = str(refused.value)
    assert f"{path}: it is open to other users (mode {mode:04o}, expected 0700)" in message and "\n" not in message
    assert "HWBENCH_LOCK_DIR" in message
    assert _mode(path) == mode  # left as it was: not ours to change


def test_a_lock_dir_that_is_a_symlink_is_refused(temp_dir):
    target = temp_dir / "elsewhere"
    target.mkdir(mode=0o700)
    (temp_dir / f"hwbench-locks-{os.getuid()}").symlink_to(target)
    with pytest.raises(UnsafeLockDirError, match="it is a symlink"):
        host_lock_dir()


def test_a_lock_dir_of_another_user_is_refused(temp_dir, monkeypatch):
    real_uid = os.getuid()
    monkeypatch.setattr(os, "getuid", lambda: real_uid + 1)  # the folder below then belongs to someone else
    (temp_dir / f"hwbench-locks-{real_uid + 1}").mkdir(mode=0o700)
    with pytest.raises(UnsafeLockDirError, match=f"belongs to uid {real_uid}, not to you \\(uid {real_uid + 1}\\)"):
        host_lock_dir()


def test_a_file_in_place_of_the_lock_dir_is_refused(temp_dir):
    (temp_dir / f"hwbench-locks-{os.getuid()}").write_text("")
    with pytest.raises(UnsafeLockDirError, match="it is not a directory"):
        host_lock_dir()


def test_hwbench_lock_dir_overrides_and_is_used_as_given(temp_dir, monkeypatch):
    shared = temp_dir / "group-locks"
    monkeypatch.setenv("HWBENCH_LOCK_DIR", str(shared))
    assert host_lock_dir() == shared and not shared.exists()  # created by the lock itself, with no checks


def test_the_cli_reports_an_unsafe_lock_dir_in_one_line(temp_dir, monkeypatch, capsys):
    (temp_dir / f"hwbench-locks-{os.getuid()}").mkdir(mode=0o700)
    (temp_dir / f"hwbench-locks-{os.getuid()}").chmod(0o777)
    monkeypatch.setattr(cli, "cmd_targets", lambda args: host_lock_dir() and 0)  # a command that takes the lock
    assert cli.main(["targets"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hwbench: error: refusing the measurement lock directory")
