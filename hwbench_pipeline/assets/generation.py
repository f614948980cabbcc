"""generation_runs[target]: decode the profile's generative models token by token on one target (time to first
token, inter-token latency, tokens/s, KV-cache bytes), validate, store."""

import dagster as dg

from hwbench_pipeline.assets.measurement import MeasurementAsset, measurement_asset
from hwbench_pipeline.bench.scenarios.generation import GenerationScenario
from hwbench_pipeline.warehouse.storing import StoredRun
from hwbench_pipeline.warehouse.validation import generation_suite


def _generation_figures(stored: StoredRun) -> dict:
    lines = [f"- {r['family']}/{r['preset']} bs={r['batch_size']} prompt={r['seq_len']} {r['cache_implementation']}"
             f" {r['precision']}: TTFT {r['ttft_p50_ms']:.1f} ms, ITL p50 {r['itl_p50_ms'] or 0:.2f} ms, "
             f"{r['tokens_per_s']:.1f} tokens/s" for r in stored.valid]
    diverged = [r for r in stored.valid if r["tokens_matching_reference"] < r["new_tokens"]]
    return {
        "generation": dg.MetadataValue.md("\n".join(lines) or "none"),
        "tokens_differ_from_generate": ", ".join(
            f"{r['family']}/{r['preset']} {r['precision']} after {r['tokens_matching_reference']}"
            for r in diverged) or "none",
    }


generation_runs = measurement_asset(MeasurementAsset(
    GenerationScenario(),
    description="The profile's generation configurations on this partition's target: each generative model "
                "decodes greedily, token by token with a KV cache, a fixed number of new tokens from each prompt "
                "length, in a fresh process; time to first token, inter-token latency percentiles, tokens/s and "
                "KV-cache bytes are measured, and the first step is checked against transformers' generate(). "
                "Failures become classified rows; rows that fail validation go to quarantine.",
    results_check="Great Expectations suite on the generation rows this run stored: keys with new tokens and "
                  "cache, positive ordered sequence, TTFT and inter-token latencies, TTFT within its sequence, "
                  "cache bytes not shrinking as the context grows; at least one configuration measured when the "
                  "target can generate.",
    suite=generation_suite,
    timeout_s=lambda profile: profile.generation.timeout_s if profile.generation else profile.timeout_s,
    extra_metadata=_generation_figures,
))
