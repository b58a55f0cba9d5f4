// What a generation collects and writes for each combination of map options (CLI flags and the protocol's `maps`).
import assert from 'node:assert/strict';
import { mapsRequest, planMaps } from '../engine/jobs/maps.js';
import { mapsFromFlags } from '../engine/cli/generate.js';

describe('map options → what the pipeline collects and the writer writes', () => {
  it('nothing asked: no attention collected at all', () => {
    assert.deepEqual(planMaps({}), { pipeline: false, write: { maps: false, perStep: false, perLayer: false } });
    assert.deepEqual(planMaps({ perStep: false, perLayer: false }).pipeline, false);
  });

  it('--maps: DAAM maps, per-step maps left at the pipeline default (the A&E grid); --trace alone collects them too', () => {
    assert.deepEqual(planMaps({ maps: true }), { pipeline: { daam: true }, write: { maps: true, perStep: false, perLayer: false } });
    assert.deepEqual(planMaps({ trace: true }), { pipeline: { daam: true }, write: { maps: false, perStep: false, perLayer: false } });
  });

  it('per-step / per-layer imply the maps; resolutions apply to both; per layer defaults to every layer', () => {
    assert.deepEqual(planMaps({ perStep: true, perLayer: true }), {
      pipeline: { daam: true, perLayerResolutions: 'all' }, write: { maps: true, perStep: true, perLayer: true },
    });
    assert.deepEqual(planMaps({ perStep: true, perLayer: true, resolutions: [32, 16, 32] }).pipeline,
      { daam: true, perStepResolutions: [32, 16], perLayerResolutions: [32, 16] });
  });

  it('Attend-and-Excite always keeps its own grid per step (subject scores), even without maps', () => {
    assert.deepEqual(planMaps({}, 16).pipeline, { daam: false, perStepResolutions: [16] });
    assert.deepEqual(planMaps({ perStep: true, resolutions: [32] }, 16).pipeline, { daam: true, perStepResolutions: [32, 16] });
  });

  it('the CLI flags become the protocol option a request would carry, and plan the same', () => {
    const cases: [Parameters<typeof mapsFromFlags>[0], unknown][] = [
      [{}, undefined],
      [{ maps: true }, true],
      [{ maps: true, mapsRes: [16] }, true],
      [{ mapsPerStep: true, mapsRes: [16, 32] }, { perStep: true, perLayer: false, resolutions: [16, 32] }],
      [{ maps: true, mapsPerLayer: true }, { perStep: false, perLayer: true }],
    ];
    for (const [flags, protocol] of cases) assert.deepEqual(mapsFromFlags(flags).maps, protocol, JSON.stringify(flags));
    // Flags and the equivalent request plan identically (the old CLI path fed planMaps the flags directly).
    const flags = { maps: true, mapsPerStep: true, mapsRes: [32] };
    assert.deepEqual(planMaps(mapsRequest(mapsFromFlags(flags).maps), 16), planMaps({ maps: true, perStep: true, perLayer: false, resolutions: [32] }, 16));
    assert.deepEqual(planMaps(mapsRequest(undefined)), planMaps({ maps: false, perStep: false, perLayer: false }));
  });
});
