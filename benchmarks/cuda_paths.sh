#!/usr/bin/env bash
# The CUDA check for a host with an NVIDIA GPU: bert, vit and a decoder (a forward pass, and generation token by
# token) on cuda0-torch (and cuda0-onnxruntime when onnxruntime-gpu is installed), every precision of bert on
# each target, and the GPU's measured peaks (int8 included), as JSON under ${OUT:-./cuda-check}. Run from the
# repo root with the project's environment active; bert also runs through Ray. Prints each table; exits non-zero
# if a configuration fails.
set -euo pipefail
out=${OUT:-./cuda-check}
mkdir -p "$out"
python -m hwbench_pipeline.cli targets | tee "$out/targets.txt"
status=0
for target in cuda0-torch cuda0-onnxruntime; do
  if ! grep -q "available  $target" "$out/targets.txt"; then
    echo "skipping $target: not available here (see targets.txt)"
    continue
  fi
  for model in bert vit llama; do
    python -m hwbench_pipeline.cli bench --model "$model" --preset base --target "$target" --batch 1,8 \
      --seq 128 --max-seconds 5 --json "$out/${target}_${model}.json" || status=1
  done
  # every precision the target offers there, side by side (int8 is refused on GPUs with the reason)
  python -m hwbench_pipeline.cli bench --model bert --preset base --target "$target" --batch 8 --seq 128 \
    --precision fp32,bf16,fp16,int8-dynamic,int8-static --max-seconds 5 \
    --json "$out/${target}_bert_precisions.json" || status=1
  # generation (torch: the exported runtimes decode on the CPU only): llama/base decoding 64 tokens from 128-
  # and 512-token prompts with the dynamic, static and compiled caches, in fp32 and bf16
  if [ "$target" = cuda0-torch ]; then
    python -m hwbench_pipeline.cli bench --scenario generation --model llama --preset base --target "$target" \
      --batch 1,8 --prompt 128,512 --new-tokens 64 --cache dynamic,static,compiled --precision fp32,bf16 \
      --max-seconds 10 --json "$out/${target}_llama_generation.json" || status=1
  fi
  # the same engine through Ray, as the pipeline dispatches it (the runs above use forked local processes)
  python -m hwbench_pipeline.cli bench --model bert --preset base --target "$target" --batch 1 --seq 128 \
    --max-seconds 5 --dispatch ray --json "$out/${target}_bert_ray.json" || status=1
done
# WebGPU on the GPU: where chromium and onnxruntime-web are installed on the GPU host, the adapter the page gets
# there (hardware, not SwiftShader) and bert/tiny measured through it
if grep -q "available  browser-chromium-webgpu" "$out/targets.txt"; then
  python -m hwbench_pipeline.cli bench --model bert --preset tiny --target browser-chromium-webgpu \
    --batch 1 --seq 128 --max-seconds 5 --json "$out/browser_webgpu_bert.json" || status=1
else
  echo "browser-chromium-webgpu: not available on this host (see targets.txt)"
fi
# the GPU's measured peaks: the GEMM grows until one multiply takes 50 ms (n and GFLOP/s per precision)
if grep -q "available  cuda0-torch" "$out/targets.txt"; then
  python -c "import json; from hwbench_pipeline.bench.peaks import measure_peaks; \
print(json.dumps(measure_peaks('cuda:0', ('fp32', 'bf16', 'fp16', 'int8'), 1), indent=1))" \
    | tee "$out/cuda0_peaks.json" || status=1
fi
exit $status
