// Errors raised while building or running a VJP graph. They name the tensor or node at fault and the fix.
export class VjpError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'VjpError';
  }
}

/** An op on the path from a `wrt` tensor to a seed has no backward rule. */
export class UnsupportedOpError extends VjpError {
  constructor(readonly opType: string, readonly nodeName: string, detail?: string) {
    super(`no backward rule for ${opType} node '${nodeName}'${detail ? ` (${detail})` : ''}: ` +
      `add a rule in engine/onnx/autodiff/rules/ and register it in engine/onnx/autodiff/rules/index.ts`);
    this.name = 'UnsupportedOpError';
  }
}
