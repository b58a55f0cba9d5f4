// Mean attention distance over a set of images (probing-vits' plot over 1000 ImageNet images): the per-image
// [block][head] distances (distance.ts) accumulated into a mean and a standard deviation per block and head.
// The standard deviation is the population one (divides by the number of images), the spread of the set itself.

export interface DistanceSetSummary {
  images: number;
  /** [block][head], pixels. */
  mean: number[][];
  /** [block][head], population standard deviation over the images, pixels. */
  std: number[][];
}

export class DistanceSetAccumulator {
  private count = 0;
  private sum: Float64Array | undefined;
  private sumSq: Float64Array | undefined;
  private shape: [number, number] | undefined;

  /** Adds one image's [block][head] distances; every image must give the same shape. */
  add(values: readonly (readonly number[])[]): void {
    const blocks = values.length;
    const heads = values[0]?.length ?? 0;
    if (blocks === 0 || heads === 0 || values.some((r) => r.length !== heads)) throw new RangeError(`distances must be a non-empty [block][head] table, got ${blocks} rows`);
    if (!this.shape) {
      this.shape = [blocks, heads];
      this.sum = new Float64Array(blocks * heads);
      this.sumSq = new Float64Array(blocks * heads);
    } else if (this.shape[0] !== blocks || this.shape[1] !== heads) {
      throw new RangeError(`distances of ${blocks}×${heads} do not match the earlier images' ${this.shape[0]}×${this.shape[1]}`);
    }
    for (let b = 0; b < blocks; b++) {
      for (let h = 0; h < heads; h++) {
        const v = values[b]![h]!;
        this.sum![b * heads + h] += v;
        this.sumSq![b * heads + h] += v * v;
      }
    }
    this.count++;
  }

  summary(): DistanceSetSummary {
    if (!this.shape || this.count === 0) throw new RangeError('no image added');
    const [blocks, heads] = this.shape;
    const n = this.count;
    const mean: number[][] = [];
    const std: number[][] = [];
    for (let b = 0; b < blocks; b++) {
      mean.push([]);
      std.push([]);
      for (let h = 0; h < heads; h++) {
        const m = this.sum![b * heads + h]! / n;
        mean[b]!.push(m);
        // E[x²] − m² can dip below 0 by rounding when every image gives the same value.
        std[b]!.push(Math.sqrt(Math.max(0, this.sumSq![b * heads + h]! / n - m * m)));
      }
    }
    return { images: n, mean, std };
  }
}
