// Log-mel features in the browser, exactly as hwbench_pipeline.bench.tasks.log_mel computes them in Python:
// torch.stft (centred, reflect padding, periodic Hann window), power, mel projection, clamp 1e-10, log10,
// max(x, utterance max - 8), (x + 4) / 4, cut to `frames`. The page times this apart from the model.
//
// n_fft is 400 (not a power of two), so the real FFT runs as a half-length complex mixed-radix FFT
// (Stockham, any prime factors, twiddles precomputed per size); arithmetic is in float64.

const plans = new Map();

function factorize(n) {
  const factors = [];
  for (const p of [4, 2, 3, 5]) {
    while (n % p === 0) {
      factors.push(p);
      n /= p;
    }
  }
  for (let p = 7; n > 1; p += 2) {
    while (n % p === 0) {
      factors.push(p);
      n /= p;
    }
  }
  return factors;
}

// A complex FFT of size n: for each stage, its radix and the twiddles exp(-2 pi i p j / span).
function complexPlan(n) {
  const stages = [];
  let span = n;
  let stride = 1;
  for (const radix of factorize(n)) {
    const m = span / radix;
    const twRe = new Float64Array(m * radix);
    const twIm = new Float64Array(m * radix);
    for (let p = 0; p < m; p++) {
      for (let j = 0; j < radix; j++) {
        const angle = (-2 * Math.PI * p * j) / span;
        twRe[p * radix + j] = Math.cos(angle);
        twIm[p * radix + j] = Math.sin(angle);
      }
    }
    const rootRe = new Float64Array(radix * radix);
    const rootIm = new Float64Array(radix * radix);
    for (let j = 0; j < radix; j++) {
      for (let k = 0; k < radix; k++) {
        const angle = (-2 * Math.PI * ((j * k) % radix)) / radix;
        rootRe[j * radix + k] = Math.cos(angle);
        rootIm[j * radix + k] = Math.sin(angle);
      }
    }
    stages.push({ radix, m, stride, twRe, twIm, rootRe, rootIm });
    span = m;
    stride *= radix;
  }
  return { n, stages };
}

// One Stockham stage of radix 2 or 4, its small DFT written out (the generic one costs radix^2 products).
function butterflies(radix, m, stride, twRe, twIm, srcRe, srcIm, dstRe, dstIm) {
  const step = stride * m;
  for (let p = 0; p < m; p++) {
    const t = p * radix;
    for (let q = 0; q < stride; q++) {
      const at = q + stride * p;
      const to = q + stride * radix * p;
      if (radix === 2) {
        const aRe = srcRe[at], aIm = srcIm[at], bRe = srcRe[at + step], bIm = srcIm[at + step];
        dstRe[to] = aRe + bRe;
        dstIm[to] = aIm + bIm;
        const dRe = aRe - bRe, dIm = aIm - bIm;
        dstRe[to + stride] = dRe * twRe[t + 1] - dIm * twIm[t + 1];
        dstIm[to + stride] = dRe * twIm[t + 1] + dIm * twRe[t + 1];
        continue;
      }
      const x0Re = srcRe[at], x0Im = srcIm[at];
      const x1Re = srcRe[at + step], x1Im = srcIm[at + step];
      const x2Re = srcRe[at + 2 * step], x2Im = srcIm[at + 2 * step];
      const x3Re = srcRe[at + 3 * step], x3Im = srcIm[at + 3 * step];
      const s02Re = x0Re + x2Re, s02Im = x0Im + x2Im, d02Re = x0Re - x2Re, d02Im = x0Im - x2Im;
      const s13Re = x1Re + x3Re, s13Im = x1Im + x3Im, d13Re = x1Re - x3Re, d13Im = x1Im - x3Im;
      // X0 = s02 + s13, X2 = s02 - s13, X1 = d02 - i d13, X3 = d02 + i d13 (forward DFT, exp(-2 pi i jk / 4))
      const y1Re = d02Re + d13Im, y1Im = d02Im - d13Re;
      const y2Re = s02Re - s13Re, y2Im = s02Im - s13Im;
      const y3Re = d02Re - d13Im, y3Im = d02Im + d13Re;
      dstRe[to] = s02Re + s13Re;
      dstIm[to] = s02Im + s13Im;
      dstRe[to + stride] = y1Re * twRe[t + 1] - y1Im * twIm[t + 1];
      dstIm[to + stride] = y1Re * twIm[t + 1] + y1Im * twRe[t + 1];
      dstRe[to + 2 * stride] = y2Re * twRe[t + 2] - y2Im * twIm[t + 2];
      dstIm[to + 2 * stride] = y2Re * twIm[t + 2] + y2Im * twRe[t + 2];
      dstRe[to + 3 * stride] = y3Re * twRe[t + 3] - y3Im * twIm[t + 3];
      dstIm[to + 3 * stride] = y3Re * twIm[t + 3] + y3Im * twRe[t + 3];
    }
  }
}

// Stockham autosort, decimation in frequency: the result lands in natural order, in (re, im) or (re2, im2).
function fftInPlace(plan, re, im, re2, im2) {
  let srcRe = re;
  let srcIm = im;
  let dstRe = re2;
  let dstIm = im2;
  const aRe = new Float64Array(8);
  const aIm = new Float64Array(8);
  for (const { radix, m, stride, twRe, twIm, rootRe, rootIm } of plan.stages) {
    if (radix === 2 || radix === 4) {
      butterflies(radix, m, stride, twRe, twIm, srcRe, srcIm, dstRe, dstIm);
      [srcRe, srcIm, dstRe, dstIm] = [dstRe, dstIm, srcRe, srcIm];
      continue;
    }
    const gatherRe = radix <= 8 ? aRe : new Float64Array(radix);
    const gatherIm = radix <= 8 ? aIm : new Float64Array(radix);
    for (let p = 0; p < m; p++) {
      for (let q = 0; q < stride; q++) {
        for (let k = 0; k < radix; k++) {
          const at = q + stride * (p + k * m);
          gatherRe[k] = srcRe[at];
          gatherIm[k] = srcIm[at];
        }
        for (let j = 0; j < radix; j++) {
          let sRe = 0;
          let sIm = 0;
          for (let k = 0; k < radix; k++) {
            const wRe = rootRe[j * radix + k];
            const wIm = rootIm[j * radix + k];
            sRe += gatherRe[k] * wRe - gatherIm[k] * wIm;
            sIm += gatherRe[k] * wIm + gatherIm[k] * wRe;
          }
          const tRe = twRe[p * radix + j];
          const tIm = twIm[p * radix + j];
          const at = q + stride * (radix * p + j);
          dstRe[at] = sRe * tRe - sIm * tIm;
          dstIm[at] = sRe * tIm + sIm * tRe;
        }
      }
    }
    [srcRe, srcIm, dstRe, dstIm] = [dstRe, dstIm, srcRe, srcIm];
  }
  return [srcRe, srcIm];
}

// Real FFT of even size n through a complex FFT of n / 2: bins 0..n/2 of a windowed frame.
function realPlan(nFft) {
  if (plans.has(nFft)) return plans.get(nFft);
  if (nFft % 2 !== 0) throw new Error(`logMel: nFft must be even, got ${nFft}`);
  const half = nFft / 2;
  const window = new Float64Array(nFft);
  for (let i = 0; i < nFft; i++) window[i] = 0.5 - 0.5 * Math.cos((2 * Math.PI * i) / nFft); // periodic Hann
  const splitRe = new Float64Array(half + 1);
  const splitIm = new Float64Array(half + 1);
  for (let k = 0; k <= half; k++) {
    splitRe[k] = Math.cos((-2 * Math.PI * k) / nFft);
    splitIm[k] = Math.sin((-2 * Math.PI * k) / nFft);
  }
  const plan = {
    half, window, splitRe, splitIm, complex: complexPlan(half),
    re: new Float64Array(half), im: new Float64Array(half),
    re2: new Float64Array(half), im2: new Float64Array(half),
  };
  plans.set(nFft, plan);
  return plan;
}

// Power spectrum (bins 0..nFft/2) of `frame` (nFft samples, windowed here) into `power`.
function powerSpectrum(plan, frame, power) {
  const { half, window, splitRe, splitIm, re, im, re2, im2 } = plan;
  for (let k = 0; k < half; k++) {
    re[k] = frame[2 * k] * window[2 * k];
    im[k] = frame[2 * k + 1] * window[2 * k + 1];
  }
  const [zRe, zIm] = fftInPlace(plan.complex, re, im, re2, im2);
  for (let k = 0; k <= half; k++) {
    const a = k % half;
    const b = (half - k) % half;
    // even samples' spectrum E = (Z[k] + conj Z[N/2-k]) / 2, odd samples' O = (Z[k] - conj Z[N/2-k]) / 2i
    const eRe = 0.5 * (zRe[a] + zRe[b]);
    const eIm = 0.5 * (zIm[a] - zIm[b]);
    const oRe = 0.5 * (zIm[a] + zIm[b]);
    const oIm = -0.5 * (zRe[a] - zRe[b]);
    const xRe = eRe + splitRe[k] * oRe - splitIm[k] * oIm;
    const xIm = eIm + splitRe[k] * oIm + splitIm[k] * oRe;
    power[k] = xRe * xRe + xIm * xIm;
  }
}

/**
 * Log-mel features of `batch` waveforms of `samples` samples each, as tasks.log_mel computes them.
 * @param {Float32Array} waveform batch * samples, row-major (batch, sample)
 * @param {Float32Array} melFilters (nFft / 2 + 1) * nMels, row-major (frequency bin, mel): tasks.mel_filters
 * @returns {Float32Array} batch * nMels * frames, row-major (batch, mel, frame)
 */
export function logMel(waveform, batch, samples, melFilters, nMels, frames, nFft = 400, hop = 160) {
  const bins = nFft / 2 + 1;
  if (waveform.length !== batch * samples) throw new Error(`logMel: waveform has ${waveform.length} values, not ${batch} x ${samples}`);
  if (melFilters.length !== bins * nMels) throw new Error(`logMel: melFilters has ${melFilters.length} values, not ${bins} x ${nMels}`);
  const pad = nFft / 2;
  if (samples <= pad) throw new Error(`logMel: reflect padding needs more than ${pad} samples, got ${samples}`);
  const total = 1 + Math.floor(samples / hop); // frames torch.stft makes; the utterance max spans all of them
  if (frames > total) throw new Error(`logMel: ${samples} samples make ${total} frames, fewer than ${frames}`);
  const plan = realPlan(nFft);
  // filters transposed to (mel, bin) over each mel's nonzero bins only: the projection is most of the work
  const filters = [];
  for (let m = 0; m < nMels; m++) {
    let lo = bins;
    let hi = -1;
    for (let f = 0; f < bins; f++) {
      if (melFilters[f * nMels + m] !== 0) {
        lo = Math.min(lo, f);
        hi = f;
      }
    }
    const weights = new Float64Array(Math.max(0, hi - lo + 1));
    for (let f = lo; f <= hi; f++) weights[f - lo] = melFilters[f * nMels + m];
    filters.push({ lo, weights });
  }
  const out = new Float32Array(batch * nMels * frames);
  const frame = new Float64Array(nFft);
  const power = new Float64Array(bins);
  const logs = new Float64Array(nMels * total);
  for (let b = 0; b < batch; b++) {
    const base = b * samples;
    let max = -Infinity;
    for (let t = 0; t < total; t++) {
      const start = t * hop - pad;
      for (let i = 0; i < nFft; i++) {
        let j = start + i;
        if (j < 0) j = -j; // reflect, edge sample not repeated (torch's "reflect")
        else if (j >= samples) j = 2 * (samples - 1) - j;
        frame[i] = waveform[base + j];
      }
      powerSpectrum(plan, frame, power);
      for (let m = 0; m < nMels; m++) {
        const { lo, weights } = filters[m];
        let sum = 0;
        for (let f = 0; f < weights.length; f++) sum += power[lo + f] * weights[f];
        const value = Math.log10(Math.max(sum, 1e-10));
        logs[m * total + t] = value;
        if (value > max) max = value;
      }
    }
    const floor = max - 8;
    const row = b * nMels * frames;
    for (let m = 0; m < nMels; m++) {
      for (let t = 0; t < frames; t++) {
        out[row + m * frames + t] = (Math.max(logs[m * total + t], floor) + 4) / 4;
      }
    }
  }
  return out;
}

/**
 * (batch, mel, frame) features in the (batch, 1, frame, mel) layout CLAP's audio tower reads.
 * @returns {Float32Array} batch * frames * nMels
 */
export function transposeToFramesMels(features, batch, nMels, frames) {
  const out = new Float32Array(batch * frames * nMels);
  for (let b = 0; b < batch; b++) {
    const row = b * nMels * frames;
    for (let m = 0; m < nMels; m++) {
      for (let t = 0; t < frames; t++) out[row + t * nMels + m] = features[row + m * frames + t];
    }
  }
  return out;
}
