// `--excite` and the `--ae-*` flags become the protocol's excite options in one place (engine/cli/excite.ts): the
// command line is the only face that writes subjects as one comma-separated string.
import assert from 'node:assert/strict';
import { exciteOptionsFromFlags } from '../engine/cli/excite.js';

describe('cli: --excite flags → excite options', function () {
  it('splits --excite on commas; digit-only items are token positions; auto stays auto', function () {
    assert.equal(exciteOptionsFromFlags({}), undefined);
    assert.deepEqual(exciteOptionsFromFlags({ excite: ' cat , 3,frog ' }), { subjects: ['cat', 3, 'frog'] });
    assert.deepEqual(exciteOptionsFromFlags({ excite: ' auto ' }), { subjects: 'auto' });
    // Only commas: an empty list, which planning refuses with "the subject list is empty" as before.
    assert.deepEqual(exciteOptionsFromFlags({ excite: ',' }), { subjects: [] });
  });

  it('maps every --ae-* flag to its protocol field', function () {
    assert.deepEqual(exciteOptionsFromFlags({
      excite: 'cat', aeMaxIterToAlter: 5, aeThresholds: { 0: 0.1, 10: 0.5 }, aeScaleFactor: 3, aeMaxRefinement: 4, aeRes: 8,
      aeNoSmoothing: true, aeSigma: 0.7, aeKernel: 5, aeSd2: true, compare: true,
    }), {
      subjects: ['cat'], maxIterToAlter: 5, thresholds: { 0: 0.1, 10: 0.5 }, scaleFactor: 3, maxRefinement: 4, res: 8,
      smoothing: false, sigma: 0.7, kernel: 5, sd2: true, compare: true,
    });
  });
});
