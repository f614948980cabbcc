"""The warehouse's tables and their columns. docs/warehouse.md explains them for readers.

Every fact row carries ``run_id``; the writer adds ``_partition`` and ``_written_at`` so views can pick the
newest run. Keys name the columns that identify one configuration within a run.
"""

from __future__ import annotations

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")

ENVIRONMENT_COLUMNS = [
    ("host", pa.string()),
    ("cpu_model", pa.string()),
    ("cpu_cores", pa.int64()),
    ("memory_gb", pa.float64()),
    ("python_version", pa.string()),
    ("torch_version", pa.string()),
    ("transformers_version", pa.string()),
    ("package_versions", pa.string()),
    ("git_revision", pa.string()),
]

#: one configuration: what ran (target, model, its config's hash), its shape, its numerics (precision,
#: quantization recipe, KV-cache precision, attention implementation), threads, and the measuring method's
#: version. Rows that differ in any of these are different configurations: never compared as a regression.
CONFIG_KEY = ["target", "family", "preset", "config_hash", "batch_size", "seq_len", "precision", "quantization",
              "cache_precision", "attention", "threads", "measurement_method"]
CONFIG_COLUMNS = [
    ("target", pa.string()),
    ("family", pa.string()),
    ("preset", pa.string()),
    ("config_hash", pa.string()),
    ("batch_size", pa.int64()),
    ("seq_len", pa.int64()),
    ("precision", pa.string()),
    ("quantization", pa.string()),
    ("cache_precision", pa.string()),
    ("attention", pa.string()),
    ("threads", pa.int64()),
    ("measurement_method", pa.string()),
]
#: what the key columns added in the open-catalog round mean for rows written before them (docs/warehouse.md,
#: "The configuration key"). Every such row was measured by hwbench's first method
#: with a model built with eager attention, unquantized, without a KV cache, or imported from
#: optimum-benchmark, whose attention the report does not record; no row recorded its config's hash.
UNRECORDED = "unrecorded"
#: the key columns beyond labels, shape, precision and threads (bench/config_key.py fills them)
IDENTITY_COLUMNS = ["config_hash", "quantization", "cache_precision", "attention", "measurement_method"]
LEGACY_KEY_VALUES: dict[str, str] = {
    "config_hash": UNRECORDED, "quantization": "none", "cache_precision": "none", "attention": "eager",
    "measurement_method": "hwbench-1",
}
#: where a table says where a row came from (``source``), an imported optimum-benchmark row is told apart (as
#: SQL: an int8 report never named its quantization recipe)
LEGACY_IMPORTED_KEY_SQL: dict[str, str] = {
    "attention": f"'{UNRECORDED}'", "measurement_method": "'optimum-benchmark'",
    "quantization": f"CASE WHEN precision = 'int8' THEN '{UNRECORDED}' ELSE 'none' END",
}


#: what ran, as opposed to what was asked for (every measured table starts with these after its key)
MEASURED_COLUMNS = [
    ("precision_ran", pa.string()),
    ("attention_ran", pa.string()),
    ("backend", pa.string()),
    ("device_kind", pa.string()),
    ("status", pa.string()),
]
#: how a latency series stopped (inference calls, training steps)
STOPPING_COLUMNS = [
    ("n_samples", pa.int64()),
    ("warmup_calls", pa.int64()),
    ("stop_reason", pa.string()),
    ("ci_target", pa.float64()),
]
#: the statistics of a latency series (trackers/stats.py)
LATENCY_STATISTICS = [
    ("p50_ms", pa.float64()),
    ("p90_ms", pa.float64()),
    ("p99_ms", pa.float64()),
    ("mean_ms", pa.float64()),
    ("std_ms", pa.float64()),
    ("cv", pa.float64()),
    ("min_ms", pa.float64()),
    ("max_ms", pa.float64()),
    ("median_ci_low_ms", pa.float64()),
    ("median_ci_high_ms", pa.float64()),
    ("ci_rel_halfwidth", pa.float64()),
]
#: how a configuration's samples were spread over measuring processes (trackers/stats.py, "Processes"); the
#: per-process lists are in the order the processes ran, undisturbed ones only unless too few were
PROCESS_COLUMNS = [
    ("processes", pa.int64()),
    ("processes_disturbed", pa.int64()),
    ("process_medians_ms", pa.list_(pa.float64())),
    ("process_sample_counts", pa.list_(pa.int64())),
    ("process_foreign_fractions", pa.list_(pa.float64())),
    ("process_steal_fractions", pa.list_(pa.float64())),
    ("process_core_slowdowns", pa.list_(pa.float64())),  # slowest core's probe / the fastest process's
    ("process_pids", pa.list_(pa.int64())),
    ("process_load_s", pa.list_(pa.float64())),
    ("ci_coverage", pa.float64()),  # of the median's interval: 95 %, or less between fewer than 6 processes
    ("noisy", pa.bool_()),  # the interval is wider than ±NOISY_HALFWIDTH
]
#: the machine's load while a measurement ran, and whether it was retried for it (trackers/system_load.py)
MACHINE_LOAD_COLUMNS = [
    ("machine_busy_fraction", pa.float64()),
    ("foreign_busy_fraction", pa.float64()),
    ("steal_fraction", pa.float64()),
    ("loadavg_1m", pa.float64()),
    ("contaminated", pa.bool_()),
    ("attempts", pa.int64()),
    ("slowest_core_ms", pa.float64()),  # trackers/core_speed.py: the worst of before and after sampling
]

#: where a browser target ran (backends/browser): null on the other targets' rows
BROWSER_COLUMNS = [
    ("browser", pa.string()),  # chromium, firefox
    ("browser_version", pa.string()),  # what the browser's --version printed
    ("execution_provider", pa.string()),  # onnxruntime-web's: wasm, webgpu, webnn
    ("ort_web_version", pa.string()),
    ("wasm_threads", pa.int64()),  # onnxruntime-web's WASM threads after loading (1 without cross-origin isolation)
    ("cross_origin_isolated", pa.bool_()),
    ("adapter", pa.string()),  # the WebGPU adapter the page got: vendor, architecture, "(software, on the CPU)"
    ("adapter_is_software", pa.bool_()),  # a software WebGPU device (SwiftShader): runs on the CPU, not a GPU
    ("provider_fallback", pa.bool_()),  # onnxruntime-web warned that some nodes ran on another provider
    ("cold_start_ms", pa.float64()),  # page load to the first result, model download included
    ("download_bytes", pa.int64()),  # what the page downloaded before its first result: page, runtime, model
    ("features_ms", pa.float64()),  # an audio model's log-mel features computed in the page (median), apart
    ("features_max_abs_diff", pa.float64()),  # the page's features against the ones Python computed
    ("features_note", pa.string()),  # why an audio row has no features_ms
    ("browser_peak_rss_mb", pa.float64()),  # the browser's processes' peak resident memory, summed
]

INFERENCE_RESULTS = pa.schema(
    [("run_id", pa.string()), *CONFIG_COLUMNS]
    + MEASURED_COLUMNS
    + [
        ("params", pa.int64()),
    ]
    + STOPPING_COLUMNS
    + LATENCY_STATISTICS
    + PROCESS_COLUMNS
    + [
        ("throughput_samples_s", pa.float64()),
        ("throughput_tokens_s", pa.float64()),
        ("first_call_ms", pa.float64()),
        ("load_s", pa.float64()),
        ("machine_s", pa.float64()),  # how long its processes occupied the machine, launch to row, all of them
        ("baseline_rss_mb", pa.float64()),
        ("peak_rss_mb", pa.float64()),
        ("device_peak_mb", pa.float64()),
        ("flops_per_call", pa.float64()),
        ("achieved_gflops", pa.float64()),
        ("pct_of_peak", pa.float64()),
        ("above_peak", pa.bool_()),
        ("max_abs_diff", pa.float64()),
        ("max_rel_diff", pa.float64()),
        ("mean_rel_diff", pa.float64()),  # the quality a precision costs, with max_rel_diff (docs/precision.md)
        # task accuracy at this precision of the weights the training scenario kept (bench/quality.py)
        ("task", pa.string()),
        ("task_samples", pa.int64()),
        ("task_accuracy", pa.float64()),
        ("task_accuracy_fp32", pa.float64()),
        ("accuracy_drop", pa.float64()),  # task_accuracy_fp32 - task_accuracy
        ("trained_run_id", pa.string()),
        ("task_precision_ran", pa.string()),  # what the task model ran in (observed by the backend, as precision_ran)
        ("task_note", pa.string()),  # why there is no task accuracy although trained weights exist
    ]
    + BROWSER_COLUMNS
    + MACHINE_LOAD_COLUMNS
    + [
        ("samples_ms", pa.list_(pa.float64())),
        ("worker_pid", pa.int64()),
        ("source", pa.string()),
        ("started_at", TS),
        ("finished_at", TS),
    ]
    + ENVIRONMENT_COLUMNS
)

#: ``strategy`` and ``workers`` are set for distributed configurations only, ``new_tokens`` and
#: ``cache_implementation`` for generation ones (null otherwise)
FAILURES = pa.schema(
    [("run_id", pa.string()), ("scenario", pa.string()), *CONFIG_COLUMNS]
    + [
        ("strategy", pa.string()),
        ("workers", pa.int64()),
        ("new_tokens", pa.int64()),
        ("cache_implementation", pa.string()),
        ("status", pa.string()),
        ("failure_class", pa.string()),
        ("message", pa.string()),
        ("attempts", pa.int64()),
        ("started_at", TS),
        ("finished_at", TS),
    ]
    + ENVIRONMENT_COLUMNS
)

QUARANTINE = pa.schema(
    [
        ("run_id", pa.string()),
        ("source_table", pa.string()),
        ("failed_expectations", pa.string()),
        ("row_json", pa.string()),
        ("quarantined_at", TS),
    ]
)

#: a model's shape, read from its config (the main tower: the language model where there is one)
SHAPE_COLUMNS = [
    ("layers", pa.int64()),
    ("hidden_size", pa.int64()),
    ("heads", pa.int64()),
    ("intermediate_size", pa.int64()),
    ("vocab_size", pa.int64()),
    ("vision_layers", pa.int64()),
    ("vision_hidden_size", pa.int64()),
    ("kv_heads", pa.int64()),
    ("experts", pa.int64()),
    ("attention_kind", pa.string()),
]

MODELS = pa.schema(
    [
        ("run_id", pa.string()),
        ("family", pa.string()),
        ("preset", pa.string()),
        ("category", pa.string()),
        ("modality", pa.string()),
        ("sequence_meaning", pa.string()),
        ("hf_class", pa.string()),
        ("params", pa.int64()),
        *SHAPE_COLUMNS,
        ("model_type", pa.string()),
        ("in_profile", pa.bool_()),
    ]
)

HARDWARE_TARGETS = pa.schema(
    [
        ("run_id", pa.string()),
        ("target", pa.string()),
        ("device_kind", pa.string()),
        ("device_index", pa.int64()),
        ("backend", pa.string()),
        ("device_name", pa.string()),
        ("precisions", pa.string()),
        ("peak_threads", pa.int64()),
        ("peak_gflops_fp32", pa.float64()),
        ("peak_gflops_bf16", pa.float64()),
        ("peak_gflops_fp16", pa.float64()),
        ("peak_gflops_int8", pa.float64()),
        ("peak_gbps", pa.float64()),
        ("peak_details", pa.string()),
        ("detected_at", TS),
    ]
    + ENVIRONMENT_COLUMNS
)

RUNS = pa.schema(
    [
        ("run_id", pa.string()),
        ("dagster_run_id", pa.string()),
        ("profile", pa.string()),
        ("target", pa.string()),
        ("scenario", pa.string()),
        ("n_configs", pa.int64()),
        ("n_ok", pa.int64()),
        ("n_failed", pa.int64()),
        ("n_quarantined", pa.int64()),
        ("started_at", TS),
        ("finished_at", TS),
        ("status", pa.string()),
        ("source", pa.string()),
        ("source_path", pa.string()),
        ("source_sha256", pa.string()),
    ]
    + ENVIRONMENT_COLUMNS
)

RECOMMENDATIONS = pa.schema(
    [
        ("run_id", pa.string()),
        ("family", pa.string()),
        ("preset", pa.string()),
        ("objective", pa.string()),
        ("target", pa.string()),
        ("batch_size", pa.int64()),
        ("seq_len", pa.int64()),
        ("precision", pa.string()),
        ("quantization", pa.string()),  # the int8 recipe of the pick (bench/precision.py)
        ("accuracy_drop", pa.float64()),  # task accuracy lost against fp32 where measured (a fraction)
        ("value", pa.float64()),
        ("unit", pa.string()),
        ("source", pa.string()),
        ("source_run_id", pa.string()),
        ("candidates", pa.int64()),
        # the pick's figures (measured, or predicted with their interval and confidence)
        ("latency_ms", pa.float64()),
        ("throughput_samples_s", pa.float64()),
        ("peak_memory_mb", pa.float64()),
        ("interval_low", pa.float64()),
        ("interval_high", pa.float64()),
        ("confidence", pa.string()),
        ("mode", pa.string()),
        ("constraints", pa.string()),
        ("max_batch_that_fits", pa.int64()),
        ("price_per_hour", pa.float64()),
        ("note", pa.string()),
    ]
)

#: one training configuration (forward, backward, AdamW step) per row; convergence columns are null where the
#: configuration ran no convergence, the sweep columns null on rows outside a batch-size sweep
TRAINING_RESULTS = pa.schema(
    [("run_id", pa.string()), *CONFIG_COLUMNS]
    + MEASURED_COLUMNS
    + [
        ("task", pa.string()),
        ("modality", pa.string()),
        ("objective", pa.string()),
        ("optimizer", pa.string()),
        ("learning_rate", pa.float64()),
        ("params", pa.int64()),
    ]
    + STOPPING_COLUMNS
    + LATENCY_STATISTICS
    + [
        ("throughput_samples_s", pa.float64()),
        ("throughput_tokens_s", pa.float64()),
        ("first_step_ms", pa.float64()),
        ("load_s", pa.float64()),
        ("machine_s", pa.float64()),  # its processes' time on the machine, launch to row
        ("baseline_rss_mb", pa.float64()),
        ("peak_rss_mb", pa.float64()),
        ("device_peak_mb", pa.float64()),
        ("memory_budget_mb", pa.float64()),
        ("within_budget", pa.bool_()),
        ("max_batch_in_budget", pa.int64()),
        ("batch_scaling_stop", pa.string()),
        ("flops_per_step", pa.float64()),
        ("forward_flops_per_step", pa.float64()),
        ("achieved_gflops", pa.float64()),
        ("pct_of_peak", pa.float64()),
        ("above_peak", pa.bool_()),
        ("convergence_steps", pa.int64()),
        ("initial_loss", pa.float64()),
        ("final_loss", pa.float64()),
        ("target_fraction", pa.float64()),
        ("steps_to_target", pa.int64()),
        ("converged", pa.bool_()),
        ("convergence_note", pa.string()),
        ("initial_accuracy", pa.float64()),
        ("final_accuracy", pa.float64()),
        ("chance_accuracy", pa.float64()),
        ("loss_curve", pa.list_(pa.float64())),
        ("trained_weights", pa.string()),  # where the run kept its trained weights (bench/trained.py), or null
    ]
    + MACHINE_LOAD_COLUMNS
    + [
        ("samples_ms", pa.list_(pa.float64())),
        ("worker_pid", pa.int64()),
        ("started_at", TS),
        ("finished_at", TS),
    ]
    + ENVIRONMENT_COLUMNS
)

#: one row per raw latency sample, in call order; the statistics of inference_results come from these
LATENCY_SAMPLES = pa.schema(
    [("run_id", pa.string()), ("scenario", pa.string()), *CONFIG_COLUMNS]
    + [("sample_index", pa.int64()), ("latency_ms", pa.float64())]
)

#: what the first worker of each node sampled while a distributed run trained (see trackers/resource_sampler.py)
RESOURCE_SAMPLE = pa.struct([
    ("node_id", pa.string()),
    ("host", pa.string()),
    ("phase", pa.string()),
    ("t_s", pa.float64()),
    ("node_cpu_percent", pa.float64()),
    ("node_memory_used_mb", pa.float64()),
    ("workers_cpu_percent", pa.float64()),
    ("workers_rss_mb", pa.float64()),
    ("gpu_util_percent", pa.float64()),
    ("gpu_memory_used_mb", pa.float64()),
])

#: one distributed training configuration (strategy x workers) per row; batch_size is the global batch and
#: threads the torch threads of each worker; per-rank lists are in rank order
DISTRIBUTED_KEY = [*CONFIG_KEY, "strategy", "workers"]
DISTRIBUTED_RESULTS = pa.schema(
    [("run_id", pa.string()), *CONFIG_COLUMNS, ("strategy", pa.string()), ("workers", pa.int64())]
    + MEASURED_COLUMNS
    + [
        ("task", pa.string()),
        ("learning_rate", pa.float64()),
        ("params", pa.int64()),
        ("frozen_params", pa.int64()),
        ("rank_batch", pa.int64()),
        ("microbatches", pa.int64()),
        ("nodes", pa.int64()),
        ("rank_nodes", pa.list_(pa.string())),
        ("rank_hosts", pa.list_(pa.string())),
        ("rank_pids", pa.list_(pa.int64())),
        ("n_samples", pa.int64()),
        ("warmup_steps", pa.int64()),
    ]
    + LATENCY_STATISTICS
    + [
        ("per_rank_throughput", pa.list_(pa.float64())),
        ("per_rank_p50_ms", pa.list_(pa.float64())),
        ("samples_ms", pa.list_(pa.float64())),  # global step time (the slowest rank's) of each measured step
        ("per_rank_samples_ms", pa.list_(pa.list_(pa.float64()))),
        ("ranks_reported", pa.int64()),
        ("min_rank_throughput", pa.float64()),
        ("throughput_samples_s", pa.float64()),
        ("throughput_tokens_s", pa.float64()),
        ("scaling_efficiency", pa.float64()),
        ("baseline_throughput_samples_s", pa.float64()),
        ("peak_rss_mb", pa.float64()),
        ("peak_rss_mb_per_rank", pa.list_(pa.float64())),
        ("device_peak_mb", pa.float64()),
        ("loss_start", pa.float64()),
        ("loss_end", pa.float64()),
        ("loss_curve", pa.list_(pa.float64())),
        ("resource_sample_count", pa.int64()),
        ("resource_nodes", pa.int64()),
        ("node_cpu_percent_mean", pa.float64()),
        ("node_cpu_percent_max", pa.float64()),
        ("workers_cpu_percent_mean", pa.float64()),
        ("workers_rss_mb_max", pa.float64()),
        ("gpu_util_percent_mean", pa.float64()),
        ("gpu_memory_used_mb_max", pa.float64()),
        ("resource_samples", pa.list_(RESOURCE_SAMPLE)),
    ]
    + MACHINE_LOAD_COLUMNS
    + [
        ("max_failures", pa.int64()),
        ("setup_s", pa.float64()),
        ("fit_s", pa.float64()),
        ("machine_s", pa.float64()),  # the job's time on the machine, launch to row
        ("started_at", TS),
        ("finished_at", TS),
    ]
    + ENVIRONMENT_COLUMNS
)

#: one generation configuration per row: seq_len is the prompt, batch_size the sequences decoded together;
#: its statistics (p50_ms …) are of a whole sequence (prefill and every new token), TTFT and ITL its parts
GENERATION_KEY = [*CONFIG_KEY, "new_tokens", "cache_implementation"]
GENERATION_RESULTS = pa.schema(
    [("run_id", pa.string()), *CONFIG_COLUMNS, ("new_tokens", pa.int64()), ("cache_implementation", pa.string())]
    + MEASURED_COLUMNS
    + [
        ("cache_ran", pa.string()),
        ("cache_precision_ran", pa.string()),
        ("residual_length", pa.int64()),
        ("params", pa.int64()),
    ]
    + STOPPING_COLUMNS
    + LATENCY_STATISTICS
    + [
        ("ttft_p50_ms", pa.float64()),
        ("ttft_p90_ms", pa.float64()),
        ("ttft_p99_ms", pa.float64()),
        ("ttft_mean_ms", pa.float64()),
        ("itl_p50_ms", pa.float64()),
        ("itl_p90_ms", pa.float64()),
        ("itl_p99_ms", pa.float64()),
        ("itl_mean_ms", pa.float64()),
        ("tokens_per_s", pa.float64()),  # batch x new tokens / the median sequence, prefill included
        ("decode_tokens_per_s", pa.float64()),  # batch / the median inter-token latency
        ("prefill_tokens_per_s", pa.float64()),  # batch x prompt / the median TTFT
        ("ttft_samples_ms", pa.list_(pa.float64())),
        ("itl_samples_ms", pa.list_(pa.float64())),
        ("first_sequence_ms", pa.float64()),
        ("load_s", pa.float64()),
        ("machine_s", pa.float64()),  # its processes' time on the machine, launch to row
        ("baseline_rss_mb", pa.float64()),
        ("peak_rss_mb", pa.float64()),
        ("device_peak_mb", pa.float64()),
        ("kv_cache_bytes_prompt", pa.int64()),  # after the prefill
        ("kv_cache_bytes", pa.int64()),  # after the last step
        ("kv_cache_bytes_per_token", pa.float64()),  # kv_cache_bytes / (batch x positions held)
        ("max_abs_diff", pa.float64()),  # of the first step's logits against transformers' generate()
        ("max_rel_diff", pa.float64()),
        ("mean_rel_diff", pa.float64()),
        ("decode_max_rel_diff", pa.float64()),  # the first decode step's, fed generate()'s first tokens
        ("tokens_matching_reference", pa.int64()),  # leading steps equal to generate()'s tokens
        # the same configuration streamed over hwbench serve-generate to C concurrent clients (bench/streaming.py);
        # lists aligned with stream_clients, client-side figures; overheads: 1 client streamed p50 - in process
        ("stream_clients", pa.list_(pa.int64())),
        ("stream_sequences", pa.int64()),
        ("stream_ttft_p50_ms", pa.list_(pa.float64())),
        ("stream_ttft_p99_ms", pa.list_(pa.float64())),
        ("stream_itl_p50_ms", pa.list_(pa.float64())),
        ("stream_itl_p99_ms", pa.list_(pa.float64())),
        ("stream_server_ttft_p50_ms", pa.list_(pa.float64())),
        ("stream_server_itl_p50_ms", pa.list_(pa.float64())),
        ("stream_tokens_per_s", pa.list_(pa.float64())),
        ("stream_overhead_ttft_ms", pa.float64()),
        ("stream_overhead_itl_ms", pa.float64()),
        ("stream_tokens_match", pa.bool_()),
        ("stream_foreign_cpu_fraction", pa.float64()),
        ("stream_seconds", pa.float64()),
        ("stream_note", pa.string()),  # why this configuration was not streamed although asked
        # what a quantized cache costs the learned copy decoder (bench/kv_quality), same precision and residual
        ("kv_quality_model", pa.string()),
        ("kv_quality_task", pa.string()),
        ("kv_quality_prompts", pa.int64()),
        ("kv_task_accuracy", pa.float64()),
        ("kv_task_accuracy_full", pa.float64()),  # the same prompts with the full-precision cache
        ("kv_top1_agreement", pa.float64()),
        ("kv_kl_divergence", pa.float64()),  # nats per decode step, KL(full || quantized)
        ("kv_perplexity", pa.float64()),
        ("kv_perplexity_full", pa.float64()),
        ("kv_quality_note", pa.string()),
    ]
    + MACHINE_LOAD_COLUMNS
    + [
        ("samples_ms", pa.list_(pa.float64())),
        ("worker_pid", pa.int64()),
        ("started_at", TS),
        ("finished_at", TS),
    ]
    + ENVIRONMENT_COLUMNS
)

#: a model x target x shape that nobody measured, with the figure the predictor gives it
PREDICTIONS = pa.schema(
    [("run_id", pa.string()), ("mode", pa.string()), *CONFIG_COLUMNS]
    + [
        ("metric", pa.string()),
        ("value", pa.float64()),
        ("interval_low", pa.float64()),
        ("interval_high", pa.float64()),
        ("interval_level", pa.float64()),
        ("confidence", pa.string()),
        ("source", pa.string()),
        ("model_fingerprint", pa.string()),
        ("held_out_mape", pa.float64()),  # the answering estimator's latency MAPE on architectures held out
    ]
)

#: a configuration whose newest run differs from its history
REGRESSIONS = pa.schema(
    [("run_id", pa.string()), ("scenario", pa.string()), *CONFIG_COLUMNS]
    + [
        ("metric", pa.string()),
        ("verdict", pa.string()),
        ("change", pa.float64()),
        ("p_value", pa.float64()),
        ("baseline_run_id", pa.string()),
        ("first_suspicious_run_id", pa.string()),
        ("baseline_value", pa.float64()),
        ("current_value", pa.float64()),
        ("environment_changes", pa.string()),
        ("reliable", pa.bool_()),
        ("method", pa.string()),
    ]
)

#: two configurations (two targets, two precisions) or one configuration under two builds, measured by
#: interleaved fresh processes (A B, B A, …) and compared pair by pair (bench/compare.py, trackers/paired.py):
#: a profile's comparisons, ``hwbench compare --store``, and the regression report's checks against a baseline build
COMPARISONS = pa.schema(
    [
        ("run_id", pa.string()),
        ("started_at", TS),
        ("finished_at", TS),
        ("purpose", pa.string()),  # comparison, regression check
        ("kind", pa.string()),  # targets, precisions, builds
        ("label_a", pa.string()),
        ("label_b", pa.string()),
        ("family", pa.string()),
        ("preset", pa.string()),
        ("config_hash", pa.string()),
        ("batch_size", pa.int64()),
        ("seq_len", pa.int64()),
        ("threads", pa.int64()),
        ("target_a", pa.string()),
        ("target_b", pa.string()),
        ("precision_a", pa.string()),  # the spec: fp32, bf16, int8-dynamic, int8-static
        ("precision_b", pa.string()),
        ("build_a", pa.string()),  # the interpreter of a baseline build, or "this build"
        ("build_b", pa.string()),
        ("seconds_per_process", pa.float64()),
        ("pairs_asked", pa.int64()),
        ("pairs", pa.int64()),  # undisturbed pairs compared
        ("dropped_pairs", pa.int64()),
        ("verdict", pa.string()),  # slower, faster, same, inconclusive (B against A); failed
        ("ratio", pa.float64()),  # B / A, the median of the pairs' ratios
        ("low", pa.float64()),
        ("high", pa.float64()),
        ("coverage", pa.float64()),
        ("p_value", pa.float64()),
        ("threshold", pa.float64()),
        ("median_a_ms", pa.float64()),
        ("median_b_ms", pa.float64()),
        ("medians_a_ms", pa.list_(pa.float64())),
        ("medians_b_ms", pa.list_(pa.float64())),
        ("sentence", pa.string()),  # the verdict in words, or why there is none
    ]
    + ENVIRONMENT_COLUMNS
)
COMPARISON_KEY = ["host", "purpose", "kind", "family", "preset", "config_hash", "batch_size", "seq_len", "threads",
                  "target_a", "target_b", "precision_a", "precision_b", "build_a", "build_b"]
COMPARISON_PURPOSES = ["comparison", "regression check"]
COMPARISON_VERDICTS = ["slower", "faster", "same", "inconclusive", "failed"]

#: one architecture probed on one target (the coverage sweep, docs/catalog.md): did a forward pass run, and if not,
#: the failure class and message, with its shape, counted FLOPs and a short timed series (PROBE_RULE)
ARCHITECTURE_COVERAGE = pa.schema(
    [
        ("run_id", pa.string()),
        ("model_type", pa.string()),
        ("category", pa.string()),
        ("preset", pa.string()),
        ("target", pa.string()),
        ("batch_size", pa.int64()),
        ("seq_len", pa.int64()),
        ("threads", pa.int64()),
        ("transformers_version", pa.string()),
        ("runtime_version", pa.string()),
        ("method_version", pa.int64()),
        ("config_hash", pa.string()),
        ("status", pa.string()),
        ("failure_class", pa.string()),
        ("stage", pa.string()),
        ("message", pa.string()),
        ("missing_package", pa.string()),
        ("raised_at", pa.string()),
        ("recipe", pa.string()),
        ("recipes_failed", pa.string()),
        ("config_fixes", pa.string()),
        ("inputs", pa.string()),
        ("complete", pa.bool_()),
        ("params", pa.int64()),
        ("build_s", pa.float64()),
        ("first_call_ms", pa.float64()),
        ("max_abs_diff", pa.float64()),
        ("max_rel_diff", pa.float64()),
        ("output_shape", pa.string()),
        ("leaf_modules", pa.int64()),
        *SHAPE_COLUMNS,
        ("flops_per_call", pa.float64()),
        ("p50_ms", pa.float64()),
        ("cv", pa.float64()),
        ("n_samples", pa.int64()),
        ("warmup_calls", pa.int64()),
        ("stop_reason", pa.string()),
        ("baseline_rss_mb", pa.float64()),
        ("peak_rss_mb", pa.float64()),
        ("machine_busy_fraction", pa.float64()),
        ("foreign_busy_fraction", pa.float64()),
        ("steal_fraction", pa.float64()),
        ("loadavg_1m", pa.float64()),
        ("contaminated", pa.bool_()),
        ("wall_s", pa.float64()),
        ("worker_pid", pa.int64()),
        ("finished_at", TS),
    ]
)

#: failures grouped by a normalised signature (class, masked message, frame), with the probable cause and the fix
FAILURE_PATTERNS = pa.schema(
    [
        ("run_id", pa.string()),
        ("signature", pa.string()),
        ("failure_class", pa.string()),
        ("count", pa.int64()),
        ("architectures", pa.string()),
        ("targets", pa.string()),
        ("example", pa.string()),
        ("cause", pa.string()),
        ("fix", pa.string()),
    ]
)

#: the benchmark planner's picks (predict/planner.py): what to measure next on each target, and why
BENCHMARK_PLANS = pa.schema(
    [
        ("run_id", pa.string()),
        ("planned_at", TS),
        ("target", pa.string()),
        ("rank", pa.int64()),  # 1: the first to measure
        ("family", pa.string()),
        ("preset", pa.string()),
        ("batch_size", pa.int64()),
        ("seq_len", pa.int64()),
        ("precision", pa.string()),
        ("threads", pa.int64()),
        ("mode", pa.string()),
        ("architecture", pa.string()),
        ("strategy", pa.string()),
        ("budget", pa.string()),  # per target: "10 configurations" or "30 machine-minutes"
        ("score", pa.float64()),  # the strategy's own score (not comparable between strategies)
        ("expected_lesson", pa.string()),  # what measuring it is expected to teach the predictor
        ("predicted_ms", pa.float64()),
        ("predicted_low_ms", pa.float64()),
        ("predicted_high_ms", pa.float64()),
        ("prediction_source", pa.string()),  # predicted or roofline
        ("predicted_wall_s", pa.float64()),  # how long measuring it should occupy the machine
        ("candidates", pa.int64()),  # configurations of the target's candidate space not measured yet
        ("wall_time_model", pa.string()),
        ("predictor_fingerprint", pa.string()),
        ("predictor_held_out_mape", pa.float64()),  # the predictor's leave-architecture-out MAPE when planned
    ]
)

TABLES: dict[str, pa.Schema] = {
    "inference_results": INFERENCE_RESULTS,
    "failures": FAILURES,
    "quarantine": QUARANTINE,
    "models": MODELS,
    "hardware_targets": HARDWARE_TARGETS,
    "runs": RUNS,
    "recommendations": RECOMMENDATIONS,
    "latency_samples": LATENCY_SAMPLES,
    "predictions": PREDICTIONS,
    "regressions": REGRESSIONS,
    "comparisons": COMPARISONS,
    "training_results": TRAINING_RESULTS,
    "distributed_results": DISTRIBUTED_RESULTS,
    "generation_results": GENERATION_RESULTS,
    "architecture_coverage": ARCHITECTURE_COVERAGE,
    "failure_patterns": FAILURE_PATTERNS,
    "benchmark_plans": BENCHMARK_PLANS,
}


def legacy_key_sql(table: str) -> dict[str, str]:
    """{column: SQL value} for the key columns a row of ``table`` written before them lacks."""
    names = TABLES[table].names
    fills = {column: f"'{value}'" for column, value in LEGACY_KEY_VALUES.items() if column in names}
    if "source" in names and "measurement_method" in names:
        for column, sql in LEGACY_IMPORTED_KEY_SQL.items():
            fills[column] = f"CASE WHEN source = 'optimum-benchmark' THEN {sql} ELSE {fills[column]} END"
    return fills


#: columns that identify one row of a table within one run (the 'latest' views use them)
TABLE_KEYS: dict[str, list[str]] = {
    "inference_results": CONFIG_KEY,
    "failures": ["scenario", *CONFIG_KEY, "strategy", "workers", "new_tokens", "cache_implementation"],
    "models": ["family", "preset"],
    "hardware_targets": ["target"],
    "runs": ["run_id", "target", "scenario"],
    "recommendations": ["family", "preset", "objective"],
    "latency_samples": ["scenario", *CONFIG_KEY, "sample_index"],
    "predictions": ["mode", *CONFIG_KEY, "metric"],
    "regressions": ["scenario", *CONFIG_KEY, "metric"],
    "comparisons": COMPARISON_KEY,
    "training_results": CONFIG_KEY,
    "distributed_results": DISTRIBUTED_KEY,
    "generation_results": GENERATION_KEY,
    "architecture_coverage": ["model_type", "preset", "target"],
    "failure_patterns": ["signature"],
    "benchmark_plans": ["run_id", "target", "rank"],
}
