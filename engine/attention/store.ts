// Collects cross-attention probabilities over a generation with bounded memory. Each UNet call's probabilities are
// folded into running aggregates as they arrive and then dropped:
// - DAAM: per (layer, head) the conditional maps summed over calls, only for the prompt's token rows;
// - per call, the head/layer mean at chosen resolutions (Attend-and-Excite's map is the 16×16 one);
// - per layer, the head mean summed over calls, at chosen resolutions.
// Nothing else is kept, so memory does not grow with the number of steps beyond the per-step maps asked for.
import type { AttentionSite } from './discover.js';
import {
  aeAggregate, bicubicResize, isDaamGridSite, isDaamSite, itemSlice, meanOfRows, queryMapsToTokenMaps, siteGrid, transposeToTokenRows,
  AttentionAggregateError, type QueryMaps, type SiteProbs, type TokenMaps,
} from './aggregate.js';

export interface AttentionStoreOptions {
  latentHeight: number;
  latentWidth: number;
  /** Token rows kept for DAAM maps: SOT, the prompt's tokens, the first EOT (TokenizedPrompt.length). */
  tokenRows: number;
  /** Key length of cross-attention = the text context (77 for CLIP); DAAM only hooks maps with this many keys. */
  contextLength?: number;
  /** Accumulate DAAM's global heat map (default true). */
  daam?: boolean;
  /**
   * DAAM's fixed output grid (sqrt of DAAM's latent_hw: 64 when unet sample_size × VAE scale factor is 512 or 1024 —
   * SD 1.x at 512 px, SDXL at 1024 px — otherwise 96). Set, the DAAM maps are DAAM's own: sites chosen by their
   * factor relative to grid² (in DAAM's factor set, not 8) and every (layer, head) map resized to grid×grid. Unset
   * (default), sites are chosen relative to the latent size and maps come at the latent size. Square grids only.
   */
  daamGrid?: number | null;
  /** Grid heights (e.g. 16) at which to keep the per-call head/layer mean (Attend-and-Excite's map). */
  perStepResolutions?: number[];
  /** Grid heights at which to keep per-layer maps (head mean, summed over calls). */
  perLayerResolutions?: number[];
}

/** One word's maps over the UNet calls at one resolution: [calls, height, width]. */
export interface StepWordMaps {
  calls: number;
  height: number;
  width: number;
  data: Float32Array;
}

/** One word's per-layer maps of the layers sharing one grid: [layers, height, width], names in `layers`. */
export interface LayerWordMaps {
  height: number;
  width: number;
  /** Module paths in UNet order (down blocks, mid, up blocks), one per plane of `data`. */
  layers: string[];
  data: Float32Array;
}

export interface StepRecord {
  /** UNet call index (PNDM's repeated timestep gets its own call). */
  call: number;
  timestep: number;
}

interface DaamAccumulator {
  site: AttentionSite;
  height: number;
  width: number;
  /** [heads, tokenRows, height*width] sums over calls, float32 like DAAM's tensors. */
  sum: Float32Array;
}

interface LayerAccumulator {
  site: AttentionSite;
  height: number;
  width: number;
  /** [q, k] sum over calls of the head mean. */
  sum: Float32Array;
}

export class AttentionStore {
  readonly options: Required<AttentionStoreOptions>;
  private readonly daam = new Map<string, DaamAccumulator>();
  private readonly layers = new Map<string, LayerAccumulator>();
  private readonly steps: StepRecord[] = [];
  private readonly stepMaps: Map<number, QueryMaps>[] = [];

  constructor(options: AttentionStoreOptions) {
    if (!Number.isInteger(options.tokenRows) || options.tokenRows < 1) throw new RangeError(`tokenRows must be a positive integer (got ${options.tokenRows})`);
    this.options = {
      daam: true, contextLength: 77, perStepResolutions: [], perLayerResolutions: [], daamGrid: null, ...options,
    };
    const g = this.options.daamGrid;
    if (g !== null && (!Number.isInteger(g) || g < 1)) throw new RangeError(`daamGrid must be a positive integer (got ${g})`);
  }

  /** Whether a site feeds the DAAM maps (see daamGrid). */
  private isDaam(s: AttentionSite): boolean {
    const { latentHeight: lh, latentWidth: lw, contextLength, daamGrid } = this.options;
    if (!this.options.daam) return false;
    return daamGrid === null ? isDaamSite(s, lh, lw, contextLength) : isDaamGridSite(s, daamGrid, lh, lw, contextLength);
  }

  /** The sites whose probabilities this store needs, out of all discovered ones (expose only these). */
  requiredSites(sites: readonly AttentionSite[]): AttentionSite[] {
    const { latentHeight: lh, latentWidth: lw } = this.options;
    const res = new Set([...this.options.perStepResolutions, ...this.options.perLayerResolutions]);
    return sites.filter((s) => s.kind === 'cross' &&
      (this.isDaam(s) || res.has(siteGrid(s, lh, lw)[0])));
  }

  /** Calls recorded so far. */
  get records(): readonly StepRecord[] {
    return this.steps;
  }

  /**
   * Folds one UNet call in. `batch` is the call's batch and `condItem` the index of the conditional item
   * (1 for CFG's [uncond, cond], 0 without CFG).
   */
  add(call: number, timestep: number, outputs: Iterable<SiteProbs>, batch: number, condItem: number): void {
    const { latentHeight: lh, latentWidth: lw, tokenRows } = this.options;
    const all = [...outputs];
    this.steps.push({ call, timestep });
    for (const p of all) {
      if (p.site.kind !== 'cross') continue;
      const [h, w] = siteGrid(p.site, lh, lw);
      const q = h * w;
      const k = p.site.keyLength;
      const cond = itemSlice(p, batch, condItem);
      if (this.isDaam(p.site)) {
        const rows = Math.min(tokenRows, k);
        let acc = this.daam.get(p.site.probs);
        if (!acc) this.daam.set(p.site.probs, (acc = { site: p.site, height: h, width: w, sum: new Float32Array(p.site.heads * rows * q) }));
        for (let head = 0; head < p.site.heads; head++) {
          const t = transposeToTokenRows(cond.subarray(head * q * k, (head + 1) * q * k), q, k, rows);
          const off = head * rows * q;
          for (let i = 0; i < t.length; i++) acc.sum[off + i] += t[i];
        }
      }
      if (this.options.perLayerResolutions.includes(h)) {
        let acc = this.layers.get(p.site.modulePath);
        if (!acc) this.layers.set(p.site.modulePath, (acc = { site: p.site, height: h, width: w, sum: new Float32Array(q * k) }));
        const inv = 1 / p.site.heads;
        for (let head = 0; head < p.site.heads; head++) {
          const off = head * q * k;
          for (let i = 0; i < q * k; i++) acc.sum[i] += cond[off + i] * inv;
        }
      }
    }
    const perStep = new Map<number, QueryMaps>();
    for (const r of this.options.perStepResolutions) {
      const at = all.filter((p) => p.site.kind === 'cross' && siteGrid(p.site, lh, lw)[0] === r);
      if (at.length === 0) continue;
      const [h, w] = siteGrid(at[0].site, lh, lw);
      perStep.set(r, aeAggregate(at, h, w, batch, condItem));
    }
    this.stepMaps.push(perStep);
  }

  /**
   * The head/layer mean of the conditional pass at one call, [h, w, keys] (Attend-and-Excite's aggregate when the
   * resolution is 16 at 512×512). Needs `perStepResolutions` to include `resolution`.
   */
  stepMap(index: number, resolution: number): QueryMaps {
    if (!this.options.perStepResolutions.includes(resolution)) {
      throw new AttentionAggregateError(`per-step maps at ${resolution} were not requested (perStepResolutions: [${this.options.perStepResolutions.join(', ')}])`);
    }
    const m = this.stepMaps[index]?.get(resolution);
    if (!m) throw new AttentionAggregateError(`no ${resolution}x map for call ${index} (${this.stepMaps.length} calls recorded)`);
    return m;
  }

  /** Per-layer maps (head mean, summed over calls) as [keys, h, w], for the module paths kept. */
  layerMaps(): Map<string, TokenMaps> {
    const out = new Map<string, TokenMaps>();
    for (const [path, acc] of this.layers) {
      const q = acc.height * acc.width;
      const k = acc.site.keyLength;
      out.set(path, { tokens: k, height: acc.height, width: acc.width, data: transposeToTokenRows(acc.sum, q, k, k) });
    }
    return out;
  }

  /** Resolutions (grid heights) with per-call maps recorded, in the order requested. */
  stepResolutions(): number[] {
    return this.options.perStepResolutions.filter((r) => this.stepMaps.some((m) => m.has(r)));
  }

  /**
   * A word's map at every UNet call at one resolution: per call, the mean of its token rows of the head/layer mean
   * (the same aggregate Attend-and-Excite reads, before its softmax over tokens). A step slider shows these.
   */
  stepWordMaps(resolution: number, tokenRows: readonly number[]): StepWordMaps {
    const calls = this.stepMaps.length;
    if (calls === 0) throw new AttentionAggregateError('no UNet call was recorded');
    const first = this.stepMap(0, resolution);
    const plane = first.height * first.width;
    const data = new Float32Array(calls * plane);
    for (let c = 0; c < calls; c++) data.set(meanOfRows(queryMapsToTokenMaps(this.stepMap(c, resolution)), tokenRows), c * plane);
    return { calls, height: first.height, width: first.width, data };
  }

  /** A word's per-layer maps (head mean, summed over calls), grouped by grid size, finest grid first. */
  layerWordMaps(tokenRows: readonly number[]): LayerWordMaps[] {
    const blockOrder = { down: 0, mid: 1, up: 2, encoder: 3, other: 4 } as const;
    const accs = [...this.layers.values()].sort((a, b) => blockOrder[a.site.block] - blockOrder[b.site.block] || a.site.index - b.site.index);
    const groups = new Map<string, { height: number; width: number; layers: string[]; planes: Float32Array[] }>();
    for (const acc of accs) {
      const key = `${acc.height}x${acc.width}`;
      let g = groups.get(key);
      if (!g) groups.set(key, (g = { height: acc.height, width: acc.width, layers: [], planes: [] }));
      const q = acc.height * acc.width;
      const k = acc.site.keyLength;
      g.layers.push(acc.site.modulePath);
      g.planes.push(meanOfRows({ tokens: k, height: acc.height, width: acc.width, data: transposeToTokenRows(acc.sum, q, k, k) }, tokenRows));
    }
    return [...groups.values()].sort((a, b) => b.height * b.width - a.height * a.width).map((g) => {
      const plane = g.height * g.width;
      const data = new Float32Array(g.layers.length * plane);
      g.planes.forEach((p, i) => data.set(p, i * plane));
      return { height: g.height, width: g.width, layers: g.layers, data };
    });
  }

  /** Module paths (in DAAM's order: up blocks, then down blocks) whose maps feed the DAAM heat map. */
  daamLayers(): string[] {
    const order = (s: AttentionSite): number => (s.block === 'up' ? 0 : 1);
    return [...this.daam.values()].sort((a, b) => order(a.site) - order(b.site) || a.site.index - b.site.index).map((a) => a.site.modulePath);
  }

  /**
   * DAAM's global heat map (compute_global_heat_map with its defaults): every (layer, head) sum over calls,
   * bicubic-resized to the latent size (or daamGrid²), clamped at 0, averaged with equal weight; rows = SOT..first EOT.
   */
  daamGlobal(): TokenMaps {
    if (!this.options.daam) throw new AttentionAggregateError('DAAM maps were not requested (daam: false)');
    if (this.daam.size === 0) throw new AttentionAggregateError('no DAAM maps were captured (no UNet call recorded cross-attention)');
    const { daamGrid, tokenRows } = this.options;
    const [H, W] = daamGrid === null ? [this.options.latentHeight, this.options.latentWidth] : [daamGrid, daamGrid];
    const rows = Math.min(tokenRows, ...[...this.daam.values()].map((a) => a.site.keyLength));
    const plane = H * W;
    const acc = new Float64Array(rows * plane);
    let keys = 0;
    for (const a of this.daam.values()) {
      const q = a.height * a.width;
      const accRows = a.sum.length / (a.site.heads * q);
      for (let head = 0; head < a.site.heads; head++) {
        const src = a.sum.subarray(head * accRows * q, head * accRows * q + rows * q);
        const up = bicubicResize(src, rows, a.height, a.width, H, W);
        for (let i = 0; i < up.length; i++) if (up[i] > 0) acc[i] += up[i];
        keys++;
      }
    }
    const data = new Float32Array(rows * plane);
    for (let i = 0; i < data.length; i++) data[i] = acc[i] / keys;
    return { tokens: rows, height: H, width: W, data };
  }

  /** A word's DAAM map: the mean of its token rows of the global map. */
  wordMap(tokenIndices: readonly number[], global: TokenMaps = this.daamGlobal()): Float32Array {
    return meanOfRows(global, tokenIndices);
  }
}
