// The explain panel's Options → request fields, and the server's schema accepting exactly what the panel sends.
import assert from 'node:assert/strict';
import { explainOptionFields } from '../extension/src/core/explainOptions.js';
import { ExplainRequest } from '../engine/protocol/index.js';

describe('extension: explain panel options', () => {
  it('blank fields keep the defaults (ViT top 5; nothing else sent)', () => {
    assert.deepEqual(explainOptionFields('vit', {}), { top: 5 });
    assert.deepEqual(explainOptionFields('clip', { top: '7', headFusion: '', discard: '', headsLayer: ' ', cheferStart: '' }), {});
  });

  it('number fields arrive as strings and become integers where the protocol wants them', () => {
    assert.deepEqual(explainOptionFields('vit', { top: '3', headFusion: 'min', discard: '0.5', headsLayer: '-2', cheferStart: '1' }),
      { top: 3, headFusion: 'min', discard: 0.5, headsLayer: -2, cheferStart: 1 });
    assert.deepEqual(explainOptionFields('clip', { cheferStart: 'all', headsLayer: 1.7 }), { cheferStart: 'all', headsLayer: 1 });
    assert.deepEqual(explainOptionFields('vit', { top: '0', headFusion: 'median', discard: 'abc' }), { top: 1 });
  });

  it("attn-lrp's attention rule: sent for ViT when chosen, never for CLIP or a blank/unknown value", () => {
    assert.deepEqual(explainOptionFields('vit', { attnLrpAttention: 'attnlrp' }), { top: 5, attnLrpAttention: 'attnlrp' });
    assert.deepEqual(explainOptionFields('vit', { attnLrpAttention: 'cp' }), { top: 5, attnLrpAttention: 'cp' });
    assert.deepEqual(explainOptionFields('vit', { attnLrpAttention: '' }), { top: 5 });
    assert.deepEqual(explainOptionFields('vit', { attnLrpAttention: 'softmax' }), { top: 5 });
    assert.deepEqual(explainOptionFields('clip', { attnLrpAttention: 'attnlrp' }), {});
  });

  it('every combination the panel can send passes the server schema', () => {
    for (const kind of ['vit', 'clip'] as const) {
      for (const cheferStart of ['', 'all', 'last', '0', '11']) {
        for (const [headFusion, attnLrpAttention] of [['', ''], ['mean', 'cp'], ['max', 'attnlrp'], ['min', '']]) {
          const fields = explainOptionFields(kind, { top: '4', headFusion, discard: '0.9', headsLayer: '-1', cheferStart, attnLrpAttention });
          const req = { type: 'explain', id: 'x', model: '/m', image: { path: '/i.png' }, ...(kind === 'clip' ? { texts: ['a cat'] } : {}), ...fields };
          const parsed = ExplainRequest.safeParse(req);
          assert.ok(parsed.success, `${kind} ${cheferStart} ${headFusion}: ${parsed.success ? '' : parsed.error.message}`);
        }
      }
    }
  });
});
