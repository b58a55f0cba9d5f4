// `--excite` and the `--ae-*` flags become the protocol's excite options in one place (engine/cli/excite.ts): the
// command line is the only face that writes subjects as one comma-separated string.
import assert from 'node:assert/strict';
import { InvalidArgumentError } from 'commander';
import { exciteOptionsFromFlags, parseGuidanceLoss, parseModifiers } from '../engine/cli/excite.js';
import { ExciteOptions } from '../engine/protocol/index.js';

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

  it('--ae-loss and --ae-modifiers: SynGen\'s method and bindings, checked as the protocol checks them', function () {
    assert.equal(parseGuidanceLoss('syngen'), 'syngen');
    assert.equal(parseGuidanceLoss(' Excite '), 'attend-excite');
    assert.throws(() => parseGuidanceLoss('bind'), (e: unknown) => e instanceof InvalidArgumentError && /'excite'.*'syngen'/.test(e.message));
    assert.deepEqual(parseModifiers('car=big+red, bird=blue'), { car: ['big', 'red'], bird: ['blue'] });
    for (const bad of ['car', 'car=', '=red', 'car=red=blue', 'car=dark red', ',']) {
      assert.throws(() => parseModifiers(bad), InvalidArgumentError, bad);
    }
    const o = exciteOptionsFromFlags({ excite: 'car,bird', aeLoss: 'syngen', aeModifiers: { car: ['red'] } });
    assert.deepEqual(o, { subjects: ['car', 'bird'], method: 'syngen', modifiers: { car: ['red'] } });
    assert.ok(ExciteOptions.safeParse(o).success);
    assert.equal(ExciteOptions.safeParse({ subjects: ['car'], method: 'bind' }).success, false);
    assert.equal(ExciteOptions.safeParse({ subjects: ['car'], modifiers: { car: [] } }).success, false);
  });
});
