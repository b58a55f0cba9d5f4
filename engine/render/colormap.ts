// Perceptual colormaps as 256-entry lookup tables.
//
// d3-scale-chromatic gives each map as a function t ∈ [0,1] → CSS colour string. Evaluating it per pixel would parse a
// string per pixel; a 512×512 overlay would do that 262k times. We sample it once into a 256×RGB table (8-bit output
// cannot resolve more levels anyway) and index the table afterwards.
import { interpolateInferno, interpolateMagma, interpolatePlasma, interpolateTurbo, interpolateViridis, interpolateGreys } from 'd3-scale-chromatic';

export const COLORMAP_NAMES = ['viridis', 'turbo', 'inferno', 'magma', 'plasma', 'greys'] as const;
export type ColormapName = (typeof COLORMAP_NAMES)[number];

const INTERPOLATORS: Record<ColormapName, (t: number) => string> = {
  viridis: interpolateViridis,
  turbo: interpolateTurbo,
  inferno: interpolateInferno,
  magma: interpolateMagma,
  plasma: interpolatePlasma,
  // d3's Greys runs white → black; reverse it so that high attention is bright, like the other maps.
  greys: (t: number) => interpolateGreys(1 - t),
};

/** Error for an unknown colormap name; the message lists the valid names. */
export class ColormapError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ColormapError';
  }
}

export function isColormapName(name: string): name is ColormapName {
  return (COLORMAP_NAMES as readonly string[]).includes(name);
}

/** Parses the two colour syntaxes d3-scale-chromatic emits: `#rrggbb` and `rgb(r, g, b)`. */
export function parseCssColor(s: string): [number, number, number] {
  const hex = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(s.trim());
  if (hex) return [parseInt(hex[1]!, 16), parseInt(hex[2]!, 16), parseInt(hex[3]!, 16)];
  const rgb = /^rgb\(\s*(\d+(?:\.\d+)?)\s*,\s*(\d+(?:\.\d+)?)\s*,\s*(\d+(?:\.\d+)?)\s*\)$/i.exec(s.trim());
  if (rgb) return [Math.round(Number(rgb[1])), Math.round(Number(rgb[2])), Math.round(Number(rgb[3]))];
  throw new ColormapError(`cannot parse colour "${s}" (expected #rrggbb or rgb(r, g, b))`);
}

const lutCache = new Map<ColormapName, Uint8Array>();

/** The 256×3 uint8 table of a colormap: entry i is the colour at t = i / 255. Cached per name. */
export function colormapLut(name: ColormapName): Uint8Array {
  const cached = lutCache.get(name);
  if (cached) return cached;
  const f = INTERPOLATORS[name];
  if (!f) throw new ColormapError(`unknown colormap "${String(name)}"; use one of ${COLORMAP_NAMES.join(', ')}`);
  const lut = new Uint8Array(256 * 3);
  for (let i = 0; i < 256; i++) lut.set(parseCssColor(f(i / 255)), i * 3);
  lutCache.set(name, lut);
  return lut;
}

/** Looks up a value already normalised to [0,1] (clamped; non-finite → 0). */
export function colorAt(lut: Uint8Array, t: number): [number, number, number] {
  const i = lutIndex(t);
  return [lut[i * 3]!, lut[i * 3 + 1]!, lut[i * 3 + 2]!];
}

/** Index into a 256-entry table for t ∈ [0,1]; NaN goes to 0 so that a bad value never becomes a bright pixel. */
export function lutIndex(t: number): number {
  if (!(t > 0)) return 0; // also catches NaN
  if (t >= 1) return 255;
  return Math.round(t * 255);
}

/** Maps normalised values to packed RGB bytes (length 3·n). */
export function applyColormap(values: ArrayLike<number>, name: ColormapName): Uint8Array {
  const lut = colormapLut(name);
  const out = new Uint8Array(values.length * 3);
  for (let p = 0; p < values.length; p++) {
    const i = lutIndex(values[p]!) * 3;
    out[p * 3] = lut[i]!;
    out[p * 3 + 1] = lut[i + 1]!;
    out[p * 3 + 2] = lut[i + 2]!;
  }
  return out;
}
