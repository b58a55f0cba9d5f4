// Errors of the relevance-propagation builder. They name the node at fault and what to do about it.
export class LrpError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LrpError';
  }
}

/** A node that receives relevance has no LRP rule (or its operands fall outside what its rule covers). */
export class LrpUnsupportedOpError extends LrpError {
  constructor(readonly opType: string, readonly nodeName: string, detail?: string) {
    super(`no LRP rule for ${opType} node '${nodeName}'${detail ? ` (${detail})` : ''}: ` +
      'add a rule in engine/explain/lrp/rules.ts and register it in its registry');
    this.name = 'LrpUnsupportedOpError';
  }
}
