// Refuses image sizes a generate job cannot run before any session does: sides the UNet cannot downsample evenly
// (onnxruntime would fail mid-job with a raw shape error) and sizes whose attention tensors would exhaust memory
// (on the tiny model one 1024² attention tensor is 16 GiB; the kernel would kill the process, or the server).
import { HeedError } from '../errors.js';
import type { StableDiffusionPipeline } from '../diffusion/pipeline.js';

/** Default job memory limit: half the machine's RAM. */
export async function defaultMaxJobMemoryMb(): Promise<number> {
  const os = await import('node:os');
  return Math.floor(os.totalmem() / 2 / 2 ** 20);
}

/** Pixel multiple the UNet needs: the VAE's 8 × 2^(UNet downsamplings), measured from the attention sites'
 *  query lengths at the default size (the deepest site sees the most downsampled grid). */
export function sizeMultiple(pipe: StableDiffusionPipeline): number {
  const latent = pipe.folder.defaultImageSize / 8;
  const sites = pipe.attentionSites(latent, latent);
  if (sites.length === 0) return 8;
  const minQuery = Math.min(...sites.map((s) => s.queryLength));
  const k = Math.max(0, Math.round(Math.log2(latent / Math.sqrt(minQuery))));
  return 8 * 2 ** k;
}

/** Bytes of the largest attention tensor (batch × heads × q × k × 4) at this size, batch 2 under CFG. */
export function largestAttentionBytes(pipe: StableDiffusionPipeline, width: number, height: number, cfg: boolean): number {
  const sites = pipe.attentionSites(height / 8, width / 8);
  const batch = cfg ? 2 : 1;
  return Math.max(0, ...sites.map((s) => batch * s.heads * s.queryLength * s.keyLength * 4));
}

export function checkImageSize(pipe: StableDiffusionPipeline, width: number, height: number, cfg: boolean, maxJobMemoryMb: number | undefined): void {
  const m = sizeMultiple(pipe);
  for (const [field, v] of [['width', width], ['height', height]] as const) {
    if (v % m !== 0) {
      const lo = Math.max(m, Math.floor(v / m) * m);
      throw new HeedError('invalid_input', `image size ${width}x${height} does not fit this UNet: sides must be multiples of ${m} (the VAE and UNet downsample by ${m}); use ${field} ${lo} or ${lo + m}`, { field });
    }
  }
  if (maxJobMemoryMb === undefined) return;
  const bytes = largestAttentionBytes(pipe, width, height, cfg);
  // Working set: the tensor, its softmax input and output live at once; ×3 is a floor, not an upper bound.
  const mb = Math.ceil((bytes * 3) / 2 ** 20);
  if (mb > maxJobMemoryMb) {
    throw new HeedError('invalid_input', `${width}x${height} needs an estimated ${mb} MiB (largest attention tensor ` +
      `${Math.ceil(bytes / 2 ** 20)} MiB), over the job memory limit of ${maxJobMemoryMb} MiB: use a smaller size or raise --max-job-memory-mb`, { field: 'width' });
  }
}
