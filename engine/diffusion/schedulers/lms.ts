// Linear multistep (k-diffusion's sample_lms) as diffusers v0.21.4 LMSDiscreteScheduler, order 4.
// The coefficient of each past derivative is the integral over [σ_i, σ_{i+1}] of its Lagrange basis polynomial
// through the last few sigmas. diffusers integrates it with scipy.integrate.quad, whose QUADPACK routine (qags) first
// applies the 21-point Gauss–Kronrod rule and stops there for a smooth integrand; and the integrand it hands quad is
// evaluated on 0-dim float32 tensors (τ − σ_k, divided by σ_j − σ_k, multiplied up in float32). The exact float64
// integral differs from that by ~1e-7 relative, which the cancellation in x + Σ c·d can amplify to ~1e-6 in the
// latents, so we replay both: the float32 integrand and the same 21 Kronrod nodes.
import { fr } from '../float32.js';
import type { SchedulerConfig } from './config.js';
import { SigmaScheduler } from './euler.js';

const LMS_ORDER = 4;
// QUADPACK dqk21: Kronrod abscissae (the 2nd, 4th, … are the 10-point Gauss nodes) and weights on [-1, 1]; the last
// entry is the centre.
const K21_NODES = [
  0.995657163025808080735527280689003, 0.973906528517171720077964012084452, 0.930157491355708226001207180059508,
  0.865063366688984510732096688423493, 0.780817726586416897063717578345042, 0.679409568299024406234327365114874,
  0.562757134668604683339000099272694, 0.433395394129247190799265943165784, 0.294392862701460198131126603103866,
  0.14887433898163121088482600112972, 0,
];
const K21_WEIGHTS = [
  0.011694638867371874278064396062192, 0.03255816230796472747881897245939, 0.05475589657435199603138130024458,
  0.07503967481091995276704314091619, 0.093125454583697605535065465083366, 0.109387158802297641899210590325805,
  0.123491976262065851077208058861095, 0.134709217311473325928054001771707, 0.142775938577060080797094273138717,
  0.147739104901338491374841515972068, 0.149445554002916905664936468389821,
];

export class LmsScheduler extends SigmaScheduler {
  private derivatives: Float32Array[] = [];

  constructor(config: SchedulerConfig) {
    super('lms', config);
  }

  protected override onSetTimesteps(): void {
    this.derivatives = [];
  }

  /** ∫_{σ_t}^{σ_{t+1}} Π_{k≠j} (τ − σ_{t−k}) / (σ_{t−j} − σ_{t−k}) dτ for k < order, as diffusers + scipy compute it. */
  lmsCoefficient(order: number, t: number, j: number): number {
    const s = this.sigmas;
    const basis = (tau: number) => {
      let prod = 1;
      for (let k = 0; k < order; k++) {
        if (k === j) continue;
        // torch: (python float − float32 tensor) / (float32 − float32), product in float32 after the first factor.
        prod = fr(prod * fr(fr(fr(tau) - s[t - k]) / fr(s[t - j] - s[t - k])));
      }
      return prod;
    };
    const a = s[t];
    const b = s[t + 1];
    const half = (b - a) / 2;
    const centre = (a + b) / 2;
    // dqk21's order of summation: the centre, the Gauss pairs (odd 0-based indices), then the Kronrod-only pairs.
    let sum = K21_WEIGHTS[10] * basis(centre);
    for (let q = 1; q < 10; q += 2) sum += K21_WEIGHTS[q] * (basis(centre - half * K21_NODES[q]) + basis(centre + half * K21_NODES[q]));
    for (let q = 0; q < 10; q += 2) sum += K21_WEIGHTS[q] * (basis(centre - half * K21_NODES[q]) + basis(centre + half * K21_NODES[q]));
    return sum * half;
  }

  step(modelOutput: Float32Array, stepIndex: number, sample: Float32Array): Float32Array {
    this.checkInOrder(stepIndex);
    this.checkInputs(modelOutput, sample);
    const sigma = this.sigmas[stepIndex];
    const x0 = this.predictX0(modelOutput, sample, sigma);
    const derivative = sample.map((v, i) => fr(fr(v - x0[i]) / sigma));
    this.derivatives.push(derivative);
    if (this.derivatives.length > LMS_ORDER) this.derivatives.shift();
    const order = Math.min(stepIndex + 1, LMS_ORDER);
    const out = Float32Array.from(sample);
    // sum(coeff_j * d_{-1-j}) accumulated in float32 in that order, then added to the sample.
    const acc = new Float32Array(sample.length);
    for (let j = 0; j < order; j++) {
      const coeff = fr(this.lmsCoefficient(order, stepIndex, j));
      const d = this.derivatives[this.derivatives.length - 1 - j];
      for (let i = 0; i < acc.length; i++) acc[i] = j === 0 ? fr(coeff * d[i]) : fr(acc[i] + fr(coeff * d[i]));
    }
    for (let i = 0; i < out.length; i++) out[i] = fr(out[i] + acc[i]);
    this.predOriginalSample = x0;
    this.stepsTaken++;
    return out;
  }
}
