// What to collect during a generation and what to write afterwards, from the protocol's `maps` option (the CLI
// builds it from its --maps* flags; the server passes the request's). One plan for both faces, so they cannot
// disagree about which resolutions a step slider or a layer filter gets.
import type { MapsOptions as PipelineMaps } from '../diffusion/pipeline.js';
import type { MapsOptions } from '../protocol/index.js';

export interface MapsRequest {
  /** Per-word DAAM maps (the CLI's --maps); implied by perStep/perLayer. */
  maps?: boolean;
  /** Each word's map at every UNet call (a step slider's data). */
  perStep?: boolean;
  /** Each word's map per cross-attention layer (a layer/resolution filter's data). */
  perLayer?: boolean;
  /** Grid heights for perStep/perLayer (e.g. [16, 32]). Default: perStep the Attend-and-Excite resolution (16 at
   *  512²), perLayer every cross-attention layer. */
  resolutions?: readonly number[];
  /** DAAM's fixed output grid for the word maps (see AttentionStoreOptions.daamGrid); default the latent grid. */
  daamGrid?: number;
  /** A trace needs the attention even without maps. */
  trace?: boolean;
}

export interface MapsPlan {
  /** For StableDiffusionPipeline.generate's `maps`. */
  pipeline: PipelineMaps | false;
  /** For writeGenerateOutputs. */
  write: { maps: boolean; perStep: boolean; perLayer: boolean };
}

/**
 * `aeResolution` is set for Attend-and-Excite runs: their per-step maps at that resolution are always kept because
 * the subject scores in report.json come from them.
 */
export function planMaps(req: MapsRequest, aeResolution: number | null = null): MapsPlan {
  const perStep = req.perStep === true;
  const perLayer = req.perLayer === true;
  const maps = req.maps === true || perStep || perLayer;
  const write = { maps, perStep, perLayer };
  if (!maps && !req.trace && aeResolution === null) return { pipeline: false, write };
  const res = req.resolutions && req.resolutions.length > 0 ? [...new Set(req.resolutions)] : undefined;
  const stepRes = new Set<number>([
    ...(perStep && res ? res : []),
    ...(aeResolution !== null ? [aeResolution] : []),
  ]);
  const pipeline: PipelineMaps = {
    daam: maps || req.trace === true,
    // Unset keeps the pipeline's default (the A&E resolution), which a trace's attn<r>_step0.npy reads.
    ...(stepRes.size > 0 ? { perStepResolutions: [...stepRes] } : {}),
    ...(perLayer ? { perLayerResolutions: res ?? 'all' } : {}),
    ...(req.daamGrid !== undefined ? { daamGrid: req.daamGrid } : {}),
  };
  return { pipeline, write };
}

/** The protocol's `maps` option (what a generate job's spec carries; the CLI builds it from --maps*) in planMaps'
 *  terms: `true` is per-word maps, an object adds its per-step / per-layer stacks. */
export function mapsRequest(m: MapsOptions | undefined): Omit<MapsRequest, 'trace'> {
  if (!m) return {};
  if (m === true) return { maps: true };
  return {
    maps: true,
    ...(m.perStep !== undefined ? { perStep: m.perStep } : {}),
    ...(m.perLayer !== undefined ? { perLayer: m.perLayer } : {}),
    ...(m.resolutions ? { resolutions: m.resolutions } : {}),
    ...(m.daamGrid !== undefined ? { daamGrid: m.daamGrid } : {}),
  };
}
