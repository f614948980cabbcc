"""The Dagster UI as a user meets it: the webserver serves the code location, a new hardware target partition is
added and materialized through GraphQL exactly as the UI's buttons do, the run measures for real, its
materialization metadata is read back over GraphQL, and headless Chromium renders the asset graph.

The webserver runs without the daemon, so this instance launches runs directly (DefaultRunCoordinator): with the
daemon, the sensors (running by default) would start measuring every target of this host at the same time. The
concurrency pools of the repository's dagster.yaml are kept.

The last test launches a backfill of a second new target partition as the UI's "Materialize" → backfill dialog
does. Asset backfills are executed by the daemon, so that test first stops every sensor and schedule through
GraphQL (the UI's toggles), then runs ``dagster-daemon`` on the same instance until the backfill completes.
"""

from __future__ import annotations

import html
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("HWBENCH_TEST_ARTIFACTS", REPO / "test-artifacts")) / "ui"
LOCATION = "hwbench_pipeline.definitions"
REPOSITORY = {"repositoryLocationName": LOCATION, "repositoryName": "__repository__"}
TARGET = "cpu-torch"
#: a second target of this host, added as a partition and backfilled after the screenshots (which expect every
#: partition of the benchmarks group to be materialized)
BACKFILL_TARGET = "cpu-onnxruntime"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

pytestmark = pytest.mark.slow


def chromium() -> str:
    found = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if not found:
        pytest.skip("Debian's chromium is not installed and could not be (make test installs it with apt-get when "
                    "run as root); the browser half of this test needs it")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ProcessGroup:
    """A Dagster command in its own process group, logging to a file under ``root``."""

    def __init__(self, root: Path, name: str) -> None:
        self.root = root
        self.log_path = root / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    def spawn(self, args: list[str], env: dict[str, str]) -> None:
        executable = Path(sys.executable).parent / args[0]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([str(executable), *args[1:]], cwd=REPO, env=env, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self) -> None:
        """SIGTERM to the whole group (the command, its code server, run workers); SIGKILL to whatever outlives
        15 s."""
        if self.proc is None:
            return
        pgid = self.proc.pid  # start_new_session: the group id is the leader's pid
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                self.proc.poll()  # reap the leader, or its zombie keeps the group alive
                if not _group_alive(pgid):
                    return
                time.sleep(0.5)

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""


class Webserver(ProcessGroup):
    """dagster-webserver in its own process group, on a temporary DAGSTER_HOME and data directory."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, "webserver")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env: dict[str, str] = {}

    def start(self, env: dict[str, str]) -> None:
        self.env = env
        self.spawn(["dagster-webserver", "-h", "127.0.0.1", "-p", str(self.port),
                    "-w", str(REPO / "workspace.yaml")], env)

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        request = urllib.request.Request(f"{self.url}/graphql", headers={"Content-Type": "application/json"},
                                         data=json.dumps({"query": query, "variables": variables or {}}).encode())
        with urllib.request.urlopen(request, timeout=60) as response:
            body = json.load(response)
        assert "errors" not in body, body["errors"]
        return body["data"]

    def wait_until_loaded(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        status = "not answering"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"dagster-webserver exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                entries = self.graphql(WORKSPACE)["workspaceOrError"]["locationEntries"]
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(1)
                continue
            entry = next((e for e in entries if e["name"] == LOCATION), None)
            status = entry and entry["loadStatus"]
            if status == "LOADED":
                error = entry["locationOrLoadError"]
                assert error["__typename"] == "RepositoryLocation", error
                return
            time.sleep(1)
        pytest.fail(f"code location not loaded after {timeout_s:.0f} s (status {status}):\n{self.log_tail()}")


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


WORKSPACE = """{ workspaceOrError { __typename ... on Workspace { locationEntries {
    name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
ASSET_NODE = """query($key: AssetKeyInput!) { assetNodeOrError(assetKey: $key) { __typename ... on AssetNode {
    groupName partitionDefinition { name } assetChecksOrError { ... on AssetChecks { checks { name } } } } } }"""
ADD_PARTITION = """mutation($selector: RepositorySelector!, $name: String!, $key: String!) {
    addDynamicPartition(repositorySelector: $selector, partitionsDefName: $name, partitionKey: $key) {
        __typename ... on AddDynamicPartitionSuccess { partitionKey } ... on PythonError { message } } }"""
PARTITION_KEYS = """query($key: AssetKeyInput!) { assetNodeOrError(assetKey: $key) {
    ... on AssetNode { partitionKeys } } }"""
LAUNCH = """mutation($params: ExecutionParams!) { launchPipelineExecution(executionParams: $params) {
    __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
    ... on InvalidSubsetError { message } ... on RunConfigValidationInvalid { errors { message } } } }"""
RUN_STATUS = """query($runId: ID!) { runOrError(runId: $runId) { __typename ... on Run { status } } }"""
RUN_ERRORS = """query($runId: ID!) { logsForRun(runId: $runId) { ... on EventConnection { events {
    __typename ... on MessageEvent { message } ... on ExecutionStepFailureEvent { error { message } } } } } }"""
MATERIALIZATION = """query($key: AssetKeyInput!, $partition: String!) { assetOrError(assetKey: $key) { ... on Asset {
    assetMaterializations(partitions: [$partition], limit: 1) { runId partition metadataEntries {
        label __typename
        ... on IntMetadataEntry { intValue } ... on FloatMetadataEntry { floatValue }
        ... on TextMetadataEntry { text } ... on PathMetadataEntry { path } } } } } }"""
CHECKS = """query($key: AssetKeyInput!) { assetNodeOrError(assetKey: $key) { ... on AssetNode {
    assetChecksOrError { ... on AssetChecks { checks { name executionForLatestMaterialization {
        status evaluation { success } } } } } } } }"""


def metadata_values(entries: list[dict]) -> dict[str, object]:
    fields = ("intValue", "floatValue", "text", "path")
    return {e["label"]: next((e[f] for f in fields if f in e), None) for e in entries}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("ui")
    home, data_dir = root / "dagster_home", root / "data"
    home.mkdir()
    instance_config = yaml.safe_load((REPO / ".dagster_home" / "dagster.yaml").read_text())
    instance_config["run_coordinator"] = {"module": "dagster._core.run_coordinator", "class": "DefaultRunCoordinator"}
    (home / "dagster.yaml").write_text(yaml.safe_dump(instance_config))
    profile = root / "ui_tiny.yaml"
    profile.write_text(yaml.safe_dump({
        "description": "UI test: one tiny model", "families": ["bert"], "presets": ["tiny"], "batch_sizes": [1],
        "seq_lens": [16], "precisions": ["fp32"], "threads": 1, "timeout_s": 180,
        "stopping": {"ci_target": 0.05, "min_samples": 5, "max_seconds": 0.3, "warmup_max_seconds": 0.2}}))
    env = {**os.environ, "DAGSTER_HOME": str(home), "HWBENCH_DATA_DIR": str(data_dir),
           "HWBENCH_PROFILE": str(profile), "GX_ANALYTICS_ENABLED": "false", "RAY_AUTH_MODE": "disabled",
           "DAGSTER_DISABLE_TELEMETRY": "1"}
    env.pop("RAY_ADDRESS", None)
    server = Webserver(root)
    server.start(env)
    try:
        server.wait_until_loaded(timeout_s=240)
        server.graphql("mutation { setNuxSeen }")  # the first-visit modal would cover the screenshot
        yield server, data_dir
    finally:
        server.stop()
        print(f"\nwebserver log: {server.log_path}")


@pytest.fixture(scope="module")
def materialized(served):
    """A new target partition, added and materialized the way the UI's buttons do it."""
    server, _ = served
    key = {"path": ["inference_runs"]}
    node = server.graphql(ASSET_NODE, {"key": key})["assetNodeOrError"]
    assert node["groupName"] == "benchmarks"
    partitions_def = node["partitionDefinition"]["name"]
    added = server.graphql(ADD_PARTITION, {"selector": REPOSITORY, "name": partitions_def, "key": TARGET})
    assert added["addDynamicPartition"] == {"__typename": "AddDynamicPartitionSuccess", "partitionKey": TARGET}
    keys = server.graphql(PARTITION_KEYS, {"key": key})
    assert keys["assetNodeOrError"]["partitionKeys"] == [TARGET]

    # The asset's checks travel with it: the UI selects them too (the asset cannot be subset without them).
    checks = [{"assetKey": key, "name": c["name"]} for c in node["assetChecksOrError"]["checks"]]
    launched = server.graphql(LAUNCH, {"params": {
        "mode": "default", "runConfigData": "{}",
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": TARGET}]},
        "selector": {**REPOSITORY, "pipelineName": "__ASSET_JOB", "assetSelection": [key],
                     "assetCheckSelection": checks},
    }})["launchPipelineExecution"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]

    deadline = time.monotonic() + 900  # another hwbench process on this host may hold the measurement lock
    status = None
    while time.monotonic() < deadline:
        status = server.graphql(RUN_STATUS, {"runId": run_id})["runOrError"]["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        time.sleep(2)
    if status != "SUCCESS":
        events = server.graphql(RUN_ERRORS, {"runId": run_id})["logsForRun"]["events"]
        errors = [e.get("error", {}).get("message") or e.get("message") for e in events][-15:]
        pytest.fail(f"run {run_id} ended {status}: " + "\n".join(filter(None, errors)))
    return run_id


def test_a_materialization_launched_like_the_ui_succeeds_with_its_metadata(served, materialized):
    server, data_dir = served
    key = {"path": ["inference_runs"]}
    events = server.graphql(MATERIALIZATION, {"key": key, "partition": TARGET})["assetOrError"]
    event = events["assetMaterializations"][0]
    assert (event["runId"], event["partition"]) == (materialized, TARGET)
    meta = metadata_values(event["metadataEntries"])
    assert meta["profile"] == "ui_tiny"
    assert (meta["configurations"], meta["measured"], meta["failed"]) == (1, 1, 0)
    assert meta["fastest_p50_ms"] > 0
    results_path = Path(meta["results_path"])
    assert results_path.is_file() and results_path.is_relative_to(data_dir)

    # The blocking Great Expectations checks ran in the same run and passed.
    checks = server.graphql(CHECKS, {"key": key})["assetNodeOrError"]["assetChecksOrError"]["checks"]
    statuses = {c["name"]: c["executionForLatestMaterialization"]["status"] for c in checks}
    assert "inference_results_suite" in statuses and set(statuses.values()) == {"SUCCEEDED"}, statuses


def chromium_command(browser: str, profile_dir: Path, *args: str) -> list[str]:
    profile_dir.mkdir(parents=True, exist_ok=True)
    return [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile_dir}", "--window-size=1600,1000", "--virtual-time-budget=20000", *args]


def screenshot(browser: str, url: str, path: Path, profile_dir: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    done = subprocess.run(chromium_command(browser, profile_dir, f"--screenshot={path}", url),
                          capture_output=True, text=True, timeout=180)
    assert path.is_file(), f"chromium wrote no screenshot (exit {done.returncode}): {done.stderr[-2000:]}"
    return path


def rendered_text(browser: str, url: str, profile_dir: Path) -> str:
    """The page's visible text once its scripts have run (what the screenshot shows, as text)."""
    done = subprocess.run(chromium_command(browser, profile_dir, "--dump-dom", url),
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    body = re.sub(r"<script.*?</script>|<style.*?</style>", " ", done.stdout, flags=re.S)
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body)))


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_MAGIC, f"{path} is not a PNG"
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def test_the_asset_graph_renders_in_headless_chromium(served, materialized, tmp_path):
    browser = chromium()
    server, _ = served
    # The whole graph (collapsed to its groups), and the benchmarks group with the partition just materialized.
    pages = {
        "asset_graph.png": (f"{server.url}/asset-groups", ["benchmarks", "catalog", "warehouse", "predict"]),
        "benchmarks_group.png": (f"{server.url}/locations/{LOCATION}/asset-groups/benchmarks/lineage",
                                 ["inference_runs", "hardware_targets", "model_catalog", "inference_results",
                                  "3 / 3 Passed", "100% filled"]),
    }
    for name, (url, expected) in pages.items():
        path = screenshot(browser, url, ARTIFACTS / name, tmp_path / f"chromium-{name}")
        print(f"\nscreenshot of {url}: {path}")
        assert png_size(path) == (1600, 1000)
        assert path.stat().st_size > 20_000, f"{path} is only {path.stat().st_size} bytes: a blank page?"
        # Not a loading spinner: the graph's nodes, their check results and partition fill are on the page.
        text = rendered_text(browser, url, tmp_path / f"chromium-dom-{name}")
        missing = [word for word in expected if word not in text]
        assert not missing, f"{url} rendered without {missing}: {text[:1500]}"


class Daemon(ProcessGroup):
    """dagster-daemon on the webserver's instance and workspace (it executes asset backfills)."""

    def __init__(self, server: Webserver) -> None:
        super().__init__(server.root, "daemon")
        self.env = server.env

    def start(self) -> None:
        self.spawn(["dagster-daemon", "run", "-w", str(REPO / "workspace.yaml")], self.env)


SENSORS = """query($selector: RepositorySelector!) { sensorsOrError(repositorySelector: $selector) {
    __typename ... on Sensors { results { name sensorState { id status } } } ... on PythonError { message } } }"""
SCHEDULES = """query($selector: RepositorySelector!) { schedulesOrError(repositorySelector: $selector) {
    __typename ... on Schedules { results { name scheduleState { id status } } } ... on PythonError { message } } }"""
STOP_SENSOR = """mutation($id: String!) { stopSensor(id: $id) { __typename
    ... on StopSensorMutationResult { instigationState { status } } ... on PythonError { message } } }"""
STOP_SCHEDULE = """mutation($id: String!) { stopRunningSchedule(id: $id) { __typename
    ... on ScheduleStateResult { scheduleState { status } } ... on PythonError { message } } }"""
LAUNCH_BACKFILL = """mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
    __typename ... on LaunchBackfillSuccess { backfillId } ... on PartitionKeysNotFoundError { message }
    ... on PythonError { message } ... on InvalidSubsetError { message } } }"""
BACKFILL = """query($id: String!) { partitionBackfillOrError(backfillId: $id) { __typename
    ... on PartitionBackfill { status error { message } runs { runId status tags { key value } } }
    ... on PythonError { message } } }"""
ALL_RUNS = """{ runsOrError(limit: 100) { ... on Runs { results { runId status tags { key value } } } } }"""
BACKFILL_TERMINAL = ("COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED")


def instigator_states(server: Webserver) -> dict[str, tuple[str, str, str]]:
    """Every sensor and schedule of the repository: name → (sensor or schedule, instigation state id, status)."""
    sensors = server.graphql(SENSORS, {"selector": REPOSITORY})["sensorsOrError"]
    schedules = server.graphql(SCHEDULES, {"selector": REPOSITORY})["schedulesOrError"]
    assert sensors["__typename"] == "Sensors" and schedules["__typename"] == "Schedules", (sensors, schedules)
    states = {s["name"]: ("sensor", s["sensorState"]) for s in sensors["results"]}
    states |= {s["name"]: ("schedule", s["scheduleState"]) for s in schedules["results"]}
    return {name: (kind, state["id"], state["status"]) for name, (kind, state) in states.items()}


def stop_all_instigators(server: Webserver) -> None:
    """The UI's Automation toggles, switched off: no sensor or schedule may launch runs once the daemon runs."""
    states = instigator_states(server)
    assert {"new_hardware_target_sensor", "new_catalog_model_sensor", "refresh_after_measurement_sensor",
            "nightly_quick_schedule", "weekly_full_schedule"} <= set(states), states
    for name, (kind, state_id, status) in states.items():
        if status != "RUNNING":
            continue
        if kind == "sensor":
            stopped = server.graphql(STOP_SENSOR, {"id": state_id})["stopSensor"]
            assert stopped["__typename"] == "StopSensorMutationResult", (name, stopped)
            assert stopped["instigationState"]["status"] == "STOPPED", (name, stopped)
        else:
            stopped = server.graphql(STOP_SCHEDULE, {"id": state_id})["stopRunningSchedule"]
            assert stopped["__typename"] == "ScheduleStateResult", (name, stopped)
    still = {name: status for name, (_, _, status) in instigator_states(server).items() if status != "STOPPED"}
    assert not still, f"sensors or schedules still running: {still}"


def test_a_backfill_launched_like_the_ui_for_a_new_partition_succeeds(served):
    """Runs after the screenshots: they expect every benchmarks partition materialized, and this one adds one."""
    if importlib.util.find_spec("onnxruntime") is None:
        pytest.skip(f"onnxruntime is not installed: {BACKFILL_TARGET} is not a target of this host")
    server, data_dir = served
    key = {"path": ["inference_runs"]}
    node = server.graphql(ASSET_NODE, {"key": key})["assetNodeOrError"]
    partitions_def = node["partitionDefinition"]["name"]
    before = server.graphql(PARTITION_KEYS, {"key": key})["assetNodeOrError"]["partitionKeys"]
    assert BACKFILL_TARGET not in before
    # The backfill dialog's "Add partition" for a dynamic partitions definition.
    added = server.graphql(ADD_PARTITION, {"selector": REPOSITORY, "name": partitions_def, "key": BACKFILL_TARGET})
    assert added["addDynamicPartition"] == {"__typename": "AddDynamicPartitionSuccess",
                                            "partitionKey": BACKFILL_TARGET}
    assert server.graphql(PARTITION_KEYS, {"key": key})["assetNodeOrError"]["partitionKeys"] == [
        *before, BACKFILL_TARGET]

    stop_all_instigators(server)
    daemon = Daemon(server)
    daemon.start()
    try:
        # What the dialog sends for an asset backfill: the selected assets and the chosen partition keys (the
        # daemon's runs include the asset's checks, as the UI's own runs do).
        launched = server.graphql(LAUNCH_BACKFILL, {"params": {
            "assetSelection": [key], "partitionNames": [BACKFILL_TARGET], "tags": [],
            "title": f"UI test: backfill {BACKFILL_TARGET}"}})["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        backfill_id = launched["backfillId"]

        deadline = time.monotonic() + 1200  # daemon start, its 30 s ticks, and maybe the host's measurement lock
        backfill = None
        while time.monotonic() < deadline:
            if daemon.proc.poll() is not None:
                pytest.fail(f"dagster-daemon exited with {daemon.proc.returncode}:\n{daemon.log_tail()}")
            backfill = server.graphql(BACKFILL, {"id": backfill_id})["partitionBackfillOrError"]
            assert backfill["__typename"] == "PartitionBackfill", backfill
            if backfill["status"] in BACKFILL_TERMINAL:
                break
            time.sleep(3)
        runs = backfill["runs"] if backfill else []
        for run in runs:
            if run["status"] != "SUCCESS":
                events = server.graphql(RUN_ERRORS, {"runId": run["runId"]})["logsForRun"]["events"]
                errors = [e.get("error", {}).get("message") or e.get("message") for e in events][-15:]
                print(f"\nbackfill run {run['runId']} ended {run['status']}:\n" + "\n".join(filter(None, errors)))
        assert backfill and backfill["status"] == "COMPLETED_SUCCESS", (
            f"backfill {backfill_id}: {backfill}\ndaemon log:\n{daemon.log_tail()}")
        assert len(runs) == 1 and runs[0]["status"] == "SUCCESS", runs
        run_id = runs[0]["runId"]
        tags = {t["key"]: t["value"] for t in runs[0]["tags"]}
        assert tags["dagster/partition"] == BACKFILL_TARGET and tags["dagster/backfill"] == backfill_id, tags

        # With the sensors stopped, the daemon launched nothing else: every run came from the UI or the backfill.
        all_runs = server.graphql(ALL_RUNS)["runsOrError"]["results"]
        automated = [r for r in all_runs if any(t["key"] in ("dagster/sensor_name", "dagster/schedule_name")
                                                for t in r["tags"])]
        assert not automated, automated
    finally:
        daemon.stop()
        print(f"\ndaemon log: {daemon.log_path}")

    events = server.graphql(MATERIALIZATION, {"key": key, "partition": BACKFILL_TARGET})["assetOrError"]
    event = events["assetMaterializations"][0]
    assert (event["runId"], event["partition"]) == (run_id, BACKFILL_TARGET)
    meta = metadata_values(event["metadataEntries"])
    assert meta["profile"] == "ui_tiny"
    assert meta["measured"] >= 1 and meta["failed"] == 0, meta
    results_path = Path(meta["results_path"])
    assert results_path.is_file() and results_path.is_relative_to(data_dir)

    # The asset's blocking checks ran in the backfill's run too, against this materialization.
    checks = server.graphql(CHECKS, {"key": key})["assetNodeOrError"]["assetChecksOrError"]["checks"]
    statuses = {c["name"]: c["executionForLatestMaterialization"]["status"] for c in checks}
    assert "inference_results_suite" in statuses and set(statuses.values()) == {"SUCCEEDED"}, statuses
