"""Finding an installed browser and running it headless on one URL, in a fresh profile, as its own process group
that dies with the process that started it."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hwbench_pipeline.bench.trackers.system_load import proc_stat

#: the executables tried for each browser, first found wins; ``HWBENCH_<NAME>`` (HWBENCH_CHROMIUM …) overrides
EXECUTABLES: dict[str, tuple[str, ...]] = {
    "chromium": ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"),
    "firefox": ("firefox-esr", "firefox"),
}
#: how each browser is installed where it is missing (Debian; `make test` does it as root)
INSTALL_HINTS = {"chromium": "apt-get install chromium", "firefox": "apt-get install firefox-esr"}
CHROMIUM_FLAGS = ("--headless=new", "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync", "--mute-audio",
                  "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
                  "--disable-backgrounding-occluded-windows", "--disable-dev-shm-usage")
#: Firefox preferences of a measuring profile: no first-run pages, no updates, no slow-script dialog (a page
#: that hangs is ended by our timeout, not by a dialog nobody can click)
FIREFOX_PREFS = {
    "browser.shell.checkDefaultBrowser": False, "browser.startup.homepage_override.mstone": "ignore",
    "datareporting.policy.dataSubmissionEnabled": False, "toolkit.telemetry.reportingpolicy.firstRun": False,
    "app.update.enabled": False, "dom.max_script_run_time": 0, "browser.tabs.remote.autostart": True,
}
LOG_TAIL_LINES = 8
_PR_SET_PDEATHSIG = 1


def find_browser(name: str) -> Path | None:
    """The executable of browser ``name`` (chromium, firefox) here, or None."""
    override = os.environ.get(f"HWBENCH_{name.upper()}")
    if override:
        return Path(override) if Path(override).is_file() else None
    for candidate in EXECUTABLES[name]:
        found = shutil.which(candidate)
        if found:
            return Path(found)
    return None


@functools.cache
def browser_version(executable: Path) -> str:
    """What ``<browser> --version`` prints ("Chromium 156.0.8078.129 …", "Mozilla Firefox 140.12.0esr")."""
    done = subprocess.run([str(executable), "--version"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "MOZ_HEADLESS": "1"})
    return (done.stdout.strip() or done.stderr.strip()).splitlines()[0] if done.returncode == 0 else ""


def _death_signal() -> Callable[[], None] | None:
    """What the child runs before exec: SIGKILL when the measuring process ends, however it ends. prctl is
    looked up here, in the parent: the child, forked beside other threads, only calls it."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux
        return None
    return lambda: prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class BrowserProcess:
    """A headless browser showing one URL."""

    name: str
    process: subprocess.Popen
    profile: Path
    log: Path

    @classmethod
    def start(cls, name: str, executable: Path, flags: Sequence[str], url: str) -> BrowserProcess:
        profile = Path(tempfile.mkdtemp(prefix=f"hwbench-{name}-"))
        log = profile / "browser.log"
        if name == "chromium":
            command = [str(executable), *CHROMIUM_FLAGS, *flags, f"--user-data-dir={profile / 'profile'}"]
            if os.geteuid() == 0:
                command.append("--no-sandbox")  # chromium refuses to run as root with its sandbox
            command.append(url)
        else:
            (profile / "profile").mkdir()
            prefs = "".join(f"user_pref({json.dumps(k)}, {json.dumps(v)});\n" for k, v in FIREFOX_PREFS.items())
            (profile / "profile" / "user.js").write_text(prefs)
            command = [str(executable), "--headless", "--no-remote", "--profile", str(profile / "profile"), *flags,
                       url]
        with log.open("wb") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       start_new_session=True, preexec_fn=_death_signal(),
                                       env={**os.environ, "MOZ_HEADLESS": "1"})
        return cls(name, process, profile, log)

    def exited(self) -> int | None:
        return self.process.poll()

    def log_tail(self) -> str:
        try:
            lines = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        # chromium's complaints about the missing desktop bus, and its Debian wrapper script's, say nothing about
        # the page
        lines = [line.strip() for line in lines if "dbus" not in line and "unexpected operator" not in line]
        return " | ".join(lines[-LOG_TAIL_LINES:])

    def pids(self) -> list[int]:
        """The browser's processes: it and its descendants (renderers, GPU and utility processes, some of which
        start sessions of their own). Only the browser itself where /proc is missing."""
        children: dict[int, list[int]] = {}
        with contextlib.suppress(OSError):
            for entry in Path("/proc").iterdir():
                fields = proc_stat(int(entry.name)) if entry.name.isdigit() else None
                if fields is not None:
                    children.setdefault(int(fields[1]), []).append(int(entry.name))
        found, todo = [], [self.process.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo.extend(children.get(pid, []))
        return found

    def peak_rss_mb(self) -> float | None:
        """The sum of the browser's processes' peak resident memory (VmHWM) so far; None without /proc."""
        total, seen = 0.0, False
        for pid in self.pids():
            with contextlib.suppress(OSError, ValueError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        total, seen = total + int(line.split()[1]) / 1024, True
        return total if seen else None

    def close(self) -> None:
        """End every process of the browser (its group, and descendants that left it) and remove its profile."""
        descendants = self.pids()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        for pid in descendants:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        shutil.rmtree(self.profile, ignore_errors=True)
