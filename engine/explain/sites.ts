// Reading one batch item out of an exposed attention output, whatever layout its site has.
import type * as ortTypes from 'onnxruntime-node';
import type { AttentionSite } from '../attention/discover.js';
import { sliceBatch, type LayerTensor } from './tensor.js';

/** Batch item `b` of an exposed attention output. */
export function siteItem(t: ortTypes.Tensor, site: AttentionSite, b: number): LayerTensor {
  const dims = t.dims.map(Number);
  const q = dims[dims.length - 2];
  const k = dims[dims.length - 1];
  const batch = site.layout === 'b,h,q,k' ? dims[0] : dims[0] / site.heads;
  return sliceBatch(t.data as Float32Array, batch, site.heads, q, k, b);
}
