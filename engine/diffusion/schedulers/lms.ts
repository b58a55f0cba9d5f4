// Linear multistep (k-diffusion's sample_lms) as diffusers v0.21.4 LMSDiscreteScheduler, order 4.
// The coefficient of each past derivative is the integral over [σ_i, σ_{i+1}] of its Lagrange basis polynomial
// through the last few sigmas. diffusers integrates it with scipy's quad; the integrand is a polynomial of degree
// < 4, so 4-point Gauss–Legendre quadrature gives the same integral exactly (up to rounding).
import { fr } from '../float32.js';
import type { SchedulerConfig } from './config.js';
import { SigmaScheduler } from './euler.js';

const LMS_ORDER = 4;
// Gauss–Legendre nodes and weights on [-1, 1], exact for polynomials of degree <= 7.
const GL_NODES = [-0.8611363115940526, -0.3399810435848563, 0.3399810435848563, 0.8611363115940526];
const GL_WEIGHTS = [0.3478548451374538, 0.6521451548625461, 0.6521451548625461, 0.3478548451374538];

export class LmsScheduler extends SigmaScheduler {
  private derivatives: Float32Array[] = [];

  constructor(config: SchedulerConfig) {
    super('lms', config);
  }

  protected override onSetTimesteps(): void {
    this.derivatives = [];
  }

  /** ∫_{σ_t}^{σ_{t+1}} Π_{k≠j} (τ − σ_{t−k}) / (σ_{t−j} − σ_{t−k}) dτ for k < order. */
  lmsCoefficient(order: number, t: number, j: number): number {
    const s = this.sigmas;
    const basis = (tau: number) => {
      let prod = 1;
      for (let k = 0; k < order; k++) {
        if (k === j) continue;
        prod *= (tau - s[t - k]) / (s[t - j] - s[t - k]);
      }
      return prod;
    };
    const a = s[t];
    const b = s[t + 1];
    const half = (b - a) / 2;
    const mid = (a + b) / 2;
    let sum = 0;
    for (let q = 0; q < GL_NODES.length; q++) sum += GL_WEIGHTS[q] * basis(mid + half * GL_NODES[q]);
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
