"""Another build of hwbench as a launcher: each measurement is that build's ``hwbench bench`` in a new
interpreter (another checkout's virtual environment, another torch or transformers), one measuring window.

It is how a configuration is compared with its baseline build, interleaved with this build's processes
(``hwbench compare --baseline-python``). Only the command line is relied on, so a build from before this
module existed works too; where the build knows ``--processes`` it is asked for one process, else its bench
measures one window anyway. The child gets a lock directory of its own: the comparison already holds this
host's measurement lock, and the child measures inside it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from hwbench_pipeline.bench.launchers.base import FailureFunction

#: seconds the other build may take beyond the measurement's own timeout (its imports, its fork server)
START_GRACE_S = 120.0


class BuildUnusableError(Exception):
    """The interpreter given for another build cannot run its ``hwbench bench``."""


class BuildLauncher:
    def __init__(self, python: str) -> None:
        self.python = python
        try:
            shown = subprocess.run([python, "-m", "hwbench_pipeline.cli", "bench", "--help"], capture_output=True,
                                   text=True, timeout=180)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BuildUnusableError(f"{python} cannot be run: {exc}") from None
        if shown.returncode != 0:
            last = (shown.stderr.strip().splitlines() or ["no output"])[-1]
            raise BuildUnusableError(f"{python} -m hwbench_pipeline.cli bench --help failed: {last}")
        self._one_process = ["--processes", "1", "--max-processes", "1"] if "--processes" in shown.stdout else []

    def unavailable(self, cfg: Any) -> str | None:
        return None

    def measure(self, cfg: Any, run_id: str, timeout_s: float, failure: FailureFunction,
                workspace: str | None = None) -> dict:
        rule = cfg.rule
        with tempfile.TemporaryDirectory(prefix="hwbench-build-") as tmp:
            out = Path(tmp) / "rows.json"
            command = [self.python, "-m", "hwbench_pipeline.cli", "bench", "--model", cfg.family, "--preset",
                       cfg.preset, "--target", cfg.target, "--batch", str(cfg.batch_size), "--seq", str(cfg.seq_len),
                       "--precision", cfg.spec, "--threads", str(cfg.threads), "--ci-target", str(rule.ci_target),
                       "--max-seconds", str(rule.max_seconds), "--timeout", str(timeout_s), "--dispatch", "process",
                       "--json", str(out), *self._one_process]
            env = {**os.environ, "HWBENCH_LOCK_DIR": str(Path(tmp) / "locks")}
            env.pop("RAY_ADDRESS", None)
            # its own session: a timeout or an interrupt ends its fork server and measuring process with it
            child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                     start_new_session=True)
            try:
                output, _ = child.communicate(timeout=timeout_s + START_GRACE_S)
            except subprocess.TimeoutExpired:
                return failure(cfg, run_id, "timeout", f"{self.python}'s hwbench bench gave no result within "
                                                       f"{timeout_s + START_GRACE_S:.0f} s")
            finally:
                _end_session(child)
            try:
                [row] = json.loads(out.read_text())
            except (OSError, ValueError) as exc:  # no file, not JSON, not exactly one row
                tail = "\n".join(output.strip().splitlines()[-5:])
                return failure(cfg, run_id, "worker_crashed", f"{self.python}'s hwbench bench exited with "
                                                              f"{child.returncode} and no row ({exc}): {tail}")
        row["build_python"] = self.python
        return row


def _end_session(child: subprocess.Popen) -> None:
    """Kill what is left of the child's session (its fork server, a measuring process)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGKILL)
    child.wait()
