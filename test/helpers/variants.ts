// Export variants of the reference SD folder made by graph surgery (Casts at the boundary, fixed batch dims), whose
// maths is known: they must give the fp32 numbers (fixed batch, int64) or those up to float16 rounding (fp16 boundary).
import { mkdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { loadModel, saveModel } from '../../engine/onnx/model.js';
import { Graph } from '../../engine/onnx/graph.js';

function tensorType(graph: Graph, name: string, which: 'input' | 'output') {
  const v = (which === 'input' ? graph.inputs : graph.outputs).find((x) => x.name === name);
  if (!v || v.type?.value.case !== 'tensorType') throw new Error(`no ${which} ${name}`);
  return v.type.value.value;
}

/** Makes graph input `name` arrive as `type` and casts it to what the graph computed with. */
export function retypeInput(graph: Graph, name: string, type: number): void {
  const t = tensorType(graph, name, 'input');
  const inner = `${name}__inner`;
  for (const n of graph.nodes) n.input = n.input.map((i) => (i === name ? inner : i));
  graph.reindex();
  graph.addNode('Cast', [name], [inner], { to: t.elemType });
  t.elemType = type;
  graph.sortNodes();
}

/** Makes graph output `name` leave as `type`. */
export function retypeOutput(graph: Graph, name: string, type: number): void {
  const t = tensorType(graph, name, 'output');
  const inner = `${name}__inner`;
  for (const n of graph.nodes) {
    n.output = n.output.map((o) => (o === name ? inner : o));
    n.input = n.input.map((i) => (i === name ? inner : i));
  }
  graph.reindex();
  graph.addNode('Cast', [inner], [name], { to: type });
  t.elemType = type;
}

/** Fixes dim 0 of the named inputs/outputs to 1. */
export function fixBatch(graph: Graph, names: string[]): void {
  for (const v of [...graph.inputs, ...graph.outputs]) {
    if (!names.includes(v.name) || v.type?.value.case !== 'tensorType') continue;
    const dim = v.type.value.value.shape?.dim[0];
    if (dim) dim.value = { case: 'dimValue', value: 1n };
  }
}

export type Edit = (graph: Graph) => void;

export function variantFolder(ref: string, root: string, edits: { text_encoder?: Edit; unet?: Edit; vae_decoder?: Edit }): string {
  const src = join(ref, 'sd-tiny-v1', 'onnx');
  mkdirSync(root, { recursive: true });
  for (const f of ['model_index.json', 'tokenizer', 'scheduler']) symlinkSync(join(src, f), join(root, f));
  for (const c of ['text_encoder', 'unet', 'vae_decoder'] as const) {
    const edit = edits[c];
    if (!edit) {
      symlinkSync(join(src, c), join(root, c));
      continue;
    }
    const model = loadModel(join(src, c, 'model.onnx'));
    edit(new Graph(model));
    saveModel(model, join(root, c, 'model.onnx'), { externalData: 'copy' });
  }
  return root;
}

