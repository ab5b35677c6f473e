/**
 * The simulator's own PRNG: mulberry32, a 32-bit state generator (Tommy Ettinger's), small,
 * fast and identical on every platform. Every random choice a workload makes goes through
 * one of these, seeded from the run's seed, so a run reproduces from (workload, seed, config).
 */

export class Prng {
  private state: number;

  constructor(seed: number) {
    if (!Number.isSafeInteger(seed) || seed < 0)
      throw new RangeError(`seed ${seed} is not a non-negative integer`);
    // Fold seeds above 2^32 into the state so that they still differ.
    this.state = (seed >>> 0) ^ Math.floor(seed / 2 ** 32);
  }

  /** A uniformly distributed 32-bit unsigned integer. */
  u32(): number {
    this.state = (this.state + 0x6d2b79f5) | 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** A float in [0, 1). */
  next(): number {
    return this.u32() / 2 ** 32;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** True with probability `p`. */
  chance(p: number): boolean {
    return this.next() < p;
  }
}
