// The float32 <-> model-dtype boundary. The pipeline computes in float32 on the host; fp16 exports take and return
// float16 tensors, and timesteps are float32 in some exports and int64 in others. Each model input's element type
// and rank are read from the ORT session metadata (the model's own declaration), never guessed from its name.
import { ort } from '../onnx/session.js';
import { valueInfoType, type Graph } from '../onnx/graph.js';
import { dataTypeName, floatToHalf, halfToFloat } from '../onnx/tensor.js';

/** Element types the pipeline can feed (float inputs from float32 data, integer inputs from rounded values). */
export type FeedType = 'float32' | 'float16' | 'float64' | 'int64' | 'int32';

const FEEDABLE: readonly string[] = ['float32', 'float16', 'float64', 'int64', 'int32'];

export function isFeedType(t: string): t is FeedType {
  return FEEDABLE.includes(t);
}

// The bit-level float32 <-> float16 codecs live with the ONNX tensors (constant folding needs them too).
export { floatToHalf, halfToFloat };

export function floatsToHalf(src: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = floatToHalf(src[i]);
  return out;
}

export function halfsToFloat(src: Uint16Array): Float32Array {
  const out = new Float32Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = halfToFloat(src[i]);
  return out;
}

/** An ORT tensor of the model's element type holding `values` (float data rounded for integer inputs). */
export function toModelTensor(type: FeedType, values: ArrayLike<number>, dims: readonly number[]): ort.Tensor {
  switch (type) {
    case 'float32':
      return new ort.Tensor('float32', values instanceof Float32Array ? values : Float32Array.from(values), dims);
    case 'float16':
      return new ort.Tensor('float16', floatsToHalf(values), dims);
    case 'float64':
      return new ort.Tensor('float64', Float64Array.from(values), dims);
    case 'int64':
      return new ort.Tensor('int64', BigInt64Array.from(Array.from(values, (v) => BigInt(Math.round(v)))), dims);
    case 'int32':
      return new ort.Tensor('int32', Int32Array.from(values, (v) => Math.round(v)), dims);
  }
}

/** float32 copy (or view, when already float32) of a float output tensor of any float element type. */
export function fromModelTensor(t: ort.Tensor, what: string): Float32Array {
  const data: unknown = t.data;
  if (t.type === 'float32' && data instanceof Float32Array) return data;
  if (t.type === 'float16') {
    // onnxruntime-common hands float16 out as raw bits (Uint16Array) unless a Float16Array is available.
    if (data instanceof Uint16Array) return halfsToFloat(data);
    if (isNumberArray(data)) return Float32Array.from(data);
  }
  if (t.type === 'float64' && data instanceof Float64Array) return Float32Array.from(data);
  throw new TypeError(`${what}: expected a float tensor, got element type ${t.type}`);
}

function isNumberArray(x: unknown): x is ArrayLike<number> {
  return ArrayBuffer.isView(x) && !(x instanceof DataView) && typeof (x as unknown as ArrayLike<unknown>)[0] !== 'bigint';
}

/** A model input or output as the model declares it: element type and dims (numbers fixed, strings symbolic). */
export interface ValueSpec {
  name: string;
  type: string;
  shape: ReadonlyArray<number | string>;
}

/** Declared inputs or outputs of a session (non-tensor values are reported with type 'non-tensor'). */
export function sessionValues(session: ort.InferenceSession, which: 'input' | 'output'): ValueSpec[] {
  const meta = which === 'input' ? session.inputMetadata : session.outputMetadata;
  return meta.map((m) => (m.isTensor ? { name: m.name, type: m.type, shape: m.shape } : { name: m.name, type: 'non-tensor', shape: [] }));
}

/** Fixed size of dim `i`, or null when symbolic/unknown. */
export function fixedDim(spec: ValueSpec, i: number): number | null {
  const d = spec.shape[i];
  return typeof d === 'number' && d >= 0 ? d : null;
}

export function describeSpecs(specs: readonly ValueSpec[]): string {
  return specs.map((s) => `${s.name} ${s.type} [${s.shape.join(', ')}]`).join(', ');
}

/** Declared (non-initializer) inputs or outputs of a graph, read from its value infos. */
export function graphValues(graph: Graph, which: 'input' | 'output'): ValueSpec[] {
  const list = which === 'input' ? graph.realInputs() : graph.outputs;
  return list.map((v) => {
    const t = valueInfoType(v);
    if (!t) return { name: v.name, type: 'non-tensor', shape: [] };
    return { name: v.name, type: dataTypeName(t.elemType), shape: (t.dims ?? []).map((d) => d ?? '?') };
  });
}
