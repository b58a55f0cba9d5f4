// Whole-graph float16 conversion of an fp32 ONNX export, as onnxconverter-common's
// convert_float_to_float16(model, keep_io_types=False) does it (that package is not installable here): every float32
// initializer, Constant / ConstantOfShape value, Cast-to-float, graph input, output and value_info becomes float16;
// the ops whose ONNX schema allows only float32 for an input (Resize's roi/scales, on its block list) get a Cast back
// to float32 in front. What is left without a float16 CPU kernel, onnxruntime's InsertCastTransformer runs in
// float32. The result has Optimum's `--fp16` interface: float16 inputs/outputs, integer ids and timesteps unchanged.
import { mkdirSync, symlinkSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { AttributeProto_AttributeType, type TensorProto } from 'onnx-buf';
import { inlineExternalData, loadModel, saveModel, type OnnxModel } from '../../engine/onnx/model.js';
import { Graph } from '../../engine/onnx/graph.js';
import { DataType, tensorFromProto, tensorToProto } from '../../engine/onnx/tensor.js';
import { floatsToHalf } from '../../engine/diffusion/boundary.js';

function halfTensor(t: TensorProto, baseDir: string | undefined): TensorProto {
  const h = tensorFromProto(t, baseDir);
  return tensorToProto(t.name, { dataType: DataType.FLOAT16, dims: h.dims, data: floatsToHalf(h.data as Float32Array) });
}

/** A float16 copy of `model` (see the file comment). */
export function toFloat16(model: OnnxModel): OnnxModel {
  const m = inlineExternalData(model);
  const g = new Graph(m);
  const proto = g.proto;
  proto.initializer = proto.initializer.map((t) => (t.dataType === DataType.FLOAT ? halfTensor(t, m.baseDir) : t));
  const keep = new Set<object>();
  for (const n of [...g.nodes]) {
    if (n.opType !== 'Resize') continue;
    for (const i of [1, 2]) {
      if (!n.input[i]) continue;
      const cast = g.addNode('Cast', [n.input[i]], [g.uniqueName(`${n.input[i]}_f32`)], { to: DataType.FLOAT });
      keep.add(cast);
      n.input[i] = cast.output[0];
    }
  }
  for (const n of g.nodes) {
    if (keep.has(n)) continue;
    for (const a of n.attribute) {
      if (n.opType === 'Cast' && a.name === 'to' && Number(a.i) === DataType.FLOAT) a.i = BigInt(DataType.FLOAT16);
      if ((n.opType === 'Constant' || n.opType === 'ConstantOfShape') && a.name === 'value' &&
        a.type === AttributeProto_AttributeType.TENSOR && a.t && a.t.dataType === DataType.FLOAT) a.t = halfTensor(a.t, m.baseDir);
      if (n.opType === 'Constant' && (a.name === 'value_float' || a.name === 'value_floats')) {
        throw new Error(`toFloat16: Constant ${n.name} uses ${a.name}, not handled`);
      }
    }
  }
  for (const v of [...proto.input, ...proto.output, ...proto.valueInfo]) {
    if (v.type?.value.case === 'tensorType' && v.type.value.value.elemType === DataType.FLOAT) v.type.value.value.elemType = DataType.FLOAT16;
  }
  g.reindex();
  g.sortNodes();
  return m;
}

/** A float16 copy of a diffusers/Optimum ONNX folder: model folders converted, everything else linked. */
export function float16Folder(src: string, dest: string, components: readonly string[]): string {
  mkdirSync(dest, { recursive: true });
  for (const f of readdirSync(src)) {
    if (!components.includes(f)) {
      symlinkSync(join(src, f), join(dest, f));
      continue;
    }
    mkdirSync(join(dest, f));
    for (const x of readdirSync(join(src, f))) {
      if (x === 'model.onnx') saveModel(toFloat16(loadModel(join(src, f, x))), join(dest, f, x));
      else if (!x.endsWith('.onnx_data') && x !== 'weights.pb') symlinkSync(join(src, f, x), join(dest, f, x));
    }
  }
  return dest;
}
