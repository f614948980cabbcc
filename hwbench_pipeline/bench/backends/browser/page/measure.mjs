// The measuring page: loads onnxruntime-web and the model from the local server, then runs the commands the
// Python side sends over /rpc (session.py). Every duration is taken here with performance.now(), so the
// round trips to Python are never inside a sample.

const params = new URLSearchParams(location.search);
const job = JSON.parse(params.get("job"));

async function reply(id, body, binary = null, meta = null) {
  const url = `/rpc/reply?id=${id}&token=${job.token}`;
  if (binary === null) {
    await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  } else {
    await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/octet-stream", "x-meta": JSON.stringify(meta) },
      body: binary,
    });
  }
}

function describeError(error) {
  if (error === null || error === undefined) return { name: "Error", message: String(error) };
  return { name: error.name || typeof error, message: String(error.message || error), stack: String(error.stack || "") };
}

// errors outside a command (a worker that failed, a rejected promise) reach Python as events
window.addEventListener("error", (e) => reply("event", { ok: false, error: describeError(e.error || e.message) }));
window.addEventListener("unhandledrejection", (e) => reply("event", { ok: false, error: describeError(e.reason) }));

const ARRAYS = {
  float32: Float32Array, float16: Uint16Array, int64: BigInt64Array, int32: Int32Array, int8: Int8Array,
  uint8: Uint8Array, bool: Uint8Array, float64: Float64Array,
};

async function fetchBytes(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`GET ${url}: HTTP ${response.status}`);
  return await response.arrayBuffer();
}

async function requestAdapter() {
  if (!("gpu" in navigator)) return [null, "navigator.gpu is undefined"];
  const adapter = await navigator.gpu.requestAdapter();
  return adapter === null ? [null, "navigator.gpu.requestAdapter() returned null"] : [adapter, ""];
}

async function adapterInfo(given = null) {
  const [adapter, reason] = given === null ? await requestAdapter() : [given, ""];
  if (adapter === null) return { available: false, reason };
  const info = adapter.info || (adapter.requestAdapterInfo ? await adapter.requestAdapterInfo() : {});
  return {
    available: true, vendor: info.vendor || "", architecture: info.architecture || "", device: info.device || "",
    description: info.description || "", fallback: Boolean(adapter.isFallbackAdapter || info.isFallbackAdapter),
  };
}

async function webnnInfo() {
  if (!("ml" in navigator)) return { available: false, reason: "navigator.ml is undefined" };
  try {
    await navigator.ml.createContext({ deviceType: "cpu" });
    return { available: true };
  } catch (error) {
    return { available: false, reason: `navigator.ml.createContext() failed: ${error.name}: ${error.message}` };
  }
}

async function probe() {
  return {
    userAgent: navigator.userAgent,
    crossOriginIsolated: self.crossOriginIsolated === true,
    sharedArrayBuffer: typeof SharedArrayBuffer !== "undefined",
    hardwareConcurrency: navigator.hardwareConcurrency,
    webgpu: await adapterInfo(),
    webnn: await webnnInfo(),
  };
}

let ort = null;
let session = null;
let feeds = null;
let audio = null;
let adapter = null; // the WebGPU adapter onnxruntime-web was given: the one the row describes
const providerWarnings = [];

async function load() {
  const started = performance.now();
  // onnxruntime-web warns when graph nodes run on another provider than the one asked for (WebGPU nodes falling
  // back to WASM kernels): kept for the row, which would otherwise time a mix under one provider's name
  // (its C++ logs reach the page through console.error; the hook goes in before the bundle keeps a reference)
  for (const level of ["warn", "log", "error"]) {
    const original = console[level].bind(console);
    console[level] = (...args) => {
      const text = args.map(String).join(" ");
      if (/not assigned to the preferred execution provider/i.test(text)) providerWarnings.push(text.slice(0, 500));
      original(...args);
    };
  }
  ort = await import(job.ortModule);
  ort.env.wasm.wasmPaths = job.ortBase;
  ort.env.wasm.numThreads = job.threads;
  if (job.executionProvider === "webgpu") {
    [adapter] = await requestAdapter();
    if (adapter !== null) ort.env.webgpu.adapter = adapter;
  }
  const scriptMs = performance.now() - started;
  // warnings and worse: the one about nodes on another provider is a warning
  const options = { executionProviders: [job.executionProvider], graphOptimizationLevel: "all", logSeverityLevel: 2 };
  if (job.executionProvider === "webnn") options.executionProviders = [{ name: "webnn", deviceType: "cpu" }];
  if (job.externalData.length) {
    options.externalData = job.externalData.map((name) => ({ path: name, data: `${job.modelBase}${name}` }));
  }
  const modelBytes = await fetchBytes(`${job.modelBase}${job.modelFile}`);
  session = await ort.InferenceSession.create(modelBytes, options);
  const sessionMs = performance.now() - started - scriptMs;
  feeds = {};
  // the exporters drop inputs the graph does not use: feed exactly the ones the session declares
  for (const input of job.inputs.filter((i) => session.inputNames.includes(i.name))) {
    const bytes = await fetchBytes(input.url);
    feeds[input.name] = new ort.Tensor(input.dtype, new ARRAYS[input.dtype](bytes), input.shape);
  }
  const t0 = performance.now();
  const outputs = await session.run(feeds);
  const firstRunMs = performance.now() - t0;
  disposeOutputs(outputs);
  // performance.now() counts from the page's navigation start: page load to first result
  const coldStartMs = performance.now();
  if (job.audio !== null) {
    // the model runs on the features Python made (torch's reference saw those); the page's own are timed apart
    const { logMel, transposeToFramesMels } = await import("/page/logmel.mjs");
    const waveform = new Float32Array(await fetchBytes(job.audio.waveformUrl));
    const filters = new Float32Array(await fetchBytes(job.audio.filtersUrl));
    audio = { logMel, transposeToFramesMels, waveform, filters };
  }
  return {
    coldStartMs, scriptMs, sessionMs, firstRunMs,
    threads: ort.env.wasm.numThreads, crossOriginIsolated: self.crossOriginIsolated === true,
    ortVersion: ort.env.versions ? (ort.env.versions.web || ort.env.versions.common) : "",
    userAgent: navigator.userAgent, outputNames: session.outputNames, providerWarnings,
    webgpu: adapter !== null ? await adapterInfo(adapter) : null,
  };
}

function computeFeatures() {
  const a = job.audio;
  const features = audio.logMel(audio.waveform, a.batch, a.samples, audio.filters, a.nMels, a.frames, a.nFft, a.hop);
  return a.layout === "mels-frames" ? features : audio.transposeToFramesMels(features, a.batch, a.nMels, a.frames);
}

function disposeOutputs(outputs) {
  for (const tensor of Object.values(outputs)) if (tensor.dispose) tensor.dispose();
}

async function timedRuns(n) {
  const samples = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const outputs = await session.run(feeds);
    // a WebGPU output must be read back to count as finished; on WASM the data is already on the CPU
    await Promise.all(Object.values(outputs).map((t) => (t.location === "cpu" ? null : t.getData())));
    samples.push(performance.now() - t0);
    disposeOutputs(outputs);
  }
  return samples;
}

function timedFeatures(n) {
  const samples = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    computeFeatures();
    samples.push(performance.now() - t0);
  }
  return samples;
}

async function mainOutput() {
  const outputs = await session.run(feeds);
  const tensor = outputs[session.outputNames[0]];
  const data = await tensor.getData();
  const meta = { dtype: tensor.type, shape: tensor.dims.map(Number) };
  const copy = data.slice().buffer;
  disposeOutputs(outputs);
  return [copy, meta];
}

async function serve() {
  for (;;) {
    const response = await fetch(`/rpc/next?token=${job.token}`);
    if (response.status === 204) continue; // nothing asked yet: ask again
    const command = await response.json();
    try {
      if (command.op === "probe") await reply(command.id, { ok: true, value: await probe() });
      else if (command.op === "load") await reply(command.id, { ok: true, value: await load() });
      else if (command.op === "run") await reply(command.id, { ok: true, value: await timedRuns(command.n) });
      else if (command.op === "features") await reply(command.id, { ok: true, value: timedFeatures(command.n) });
      else if (command.op === "features_output") {
        const features = computeFeatures();
        await reply(command.id, null, features.slice().buffer, { dtype: "float32", shape: [features.length] });
      } else if (command.op === "output") {
        const [bytes, meta] = await mainOutput();
        await reply(command.id, null, bytes, meta);
      } else if (command.op === "close") { await reply(command.id, { ok: true, value: null }); return; }
      else await reply(command.id, { ok: false, error: { name: "Error", message: `unknown op ${command.op}` } });
    } catch (error) {
      await reply(command.id, { ok: false, error: describeError(error) });
    }
  }
}

serve();
