/**
 * The representation decision (docs: DESIGN.md, "64-bit entries without BigInt on hot
 * paths"): the same entry-decoding kernel over the same page-table entries held as
 *
 *  - u32-halves: two 32-bit halves in a Uint32Array (what vmmu does);
 *  - biguint64:  a BigUint64Array, decoded with BigInt operators;
 *  - float64:    a Float64Array of Numbers (exact only below 2^53, so it cannot hold entries
 *                with NX, PK or any bit above 52 set: disqualified for correctness whatever
 *                its speed; the data set here avoids those bits so it can be measured);
 *  - mixed i32/u32: the u32-halves kernel called at one site with both Int32Array and
 *                Uint32Array views of the data (DESIGN.md warns this deoptimizes).
 *
 * The kernel does per entry what the walker does: present bit, reserved bits (low and high
 * half), bit 63 (NX), PS (bit 7), the frame number as a Number; and sums them into a checksum
 * that must agree across representations. 4096 entries (one 32 KiB table set, L1-resident)
 * swept repeatedly, so the figure is decoding cost, not memory latency.
 */

import type { BenchContext, Benchmark, Metric } from "./lib/harness.js";
import { Prng } from "./lib/prng.js";
import { fmtRate, type Summary, summarize } from "./lib/stats.js";

const ENTRIES = 4096;
/** Reserved bits for MAXPHYADDR 46: high half bits 14..19 (address bits 46..51), and bit 8 of the low half. */
const RSVD_LO = 1 << 8;
const RSVD_HI = 0x000fc000;
const RSVD_BIG = (BigInt(RSVD_HI) << 32n) | BigInt(RSVD_LO);

function makeEntries(seed: number): Uint32Array {
  const rng = new Prng(seed);
  const e = new Uint32Array(ENTRIES * 2);
  for (let i = 0; i < ENTRIES; i++) {
    // Present most of the time, frames below 2^34 (address bits < 46), flags in 11:0; a few
    // entries with a reserved bit. No bits above 51, so every representation is exact.
    const frame = rng.below(2 ** 22) * 4096 + rng.below(4096);
    let lo = ((frame % 0x100000) << 12) | (rng.next() & 0xef) | (rng.below(8) !== 0 ? 1 : 0);
    if (rng.below(64) === 0) lo |= RSVD_LO;
    e[2 * i] = lo >>> 0;
    e[2 * i + 1] = Math.floor(frame / 0x100000);
  }
  return e;
}

// Each kernel returns a checksum: sum of frame numbers of valid entries (mod 2^32) + counts.

function kernelU32(e: Uint32Array | Int32Array, n: number): number {
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const lo = e[2 * i];
    const hi = e[2 * i + 1];
    if ((lo & 1) === 0) continue;
    if ((lo & RSVD_LO) !== 0 || (hi & RSVD_HI) !== 0) {
      sum = (sum + 7) | 0;
      continue;
    }
    const frame = (hi & 0xfffff) * 0x100000 + (lo >>> 12);
    sum = (sum + (frame % 0x100000000) + (hi >>> 31) + ((lo >>> 7) & 1)) | 0;
  }
  return sum >>> 0;
}

// A second copy for the mixed-type measurement, so the monomorphic copy keeps its feedback.
function kernelU32Mixed(e: Uint32Array | Int32Array, n: number): number {
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const lo = e[2 * i];
    const hi = e[2 * i + 1];
    if ((lo & 1) === 0) continue;
    if ((lo & RSVD_LO) !== 0 || (hi & RSVD_HI) !== 0) {
      sum = (sum + 7) | 0;
      continue;
    }
    const frame = (hi & 0xfffff) * 0x100000 + (lo >>> 12);
    sum = (sum + (frame % 0x100000000) + (hi >>> 31) + ((lo >>> 7) & 1)) | 0;
  }
  return sum >>> 0;
}

function kernelBig(e: BigUint64Array, n: number): number {
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const v = e[i];
    if ((v & 1n) === 0n) continue;
    if ((v & RSVD_BIG) !== 0n) {
      sum = (sum + 7) | 0;
      continue;
    }
    const frame = Number((v >> 12n) & 0xffffffffffn);
    sum = (sum + (frame % 0x100000000) + Number(v >> 63n) + Number((v >> 7n) & 1n)) | 0;
  }
  return sum >>> 0;
}

function kernelF64(e: Float64Array, n: number): number {
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const v = e[i];
    const lo = v % 0x100000000; // exact: v < 2^53
    const hi = Math.floor(v / 0x100000000);
    if ((lo & 1) === 0) continue;
    if ((lo & RSVD_LO) !== 0 || (hi & RSVD_HI) !== 0) {
      sum = (sum + 7) | 0;
      continue;
    }
    const frame = Math.floor(v / 4096) % 2 ** 40;
    sum = (sum + (frame % 0x100000000) + (hi >>> 31) + ((lo >>> 7) & 1)) | 0;
  }
  return sum >>> 0;
}

function cpuNow(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/** Entries decoded per second: `sweeps` passes over the table per sample. */
function measure(f: () => number, sweeps: number, samples: number, expect: number): Summary {
  for (let i = 0; i < 3; i++) f(); // warm-up (JIT)
  const rates: number[] = [];
  for (let s = 0; s < samples; s++) {
    const t0 = cpuNow();
    for (let k = 0; k < sweeps; k++)
      if (f() !== expect) throw new Error("representation benchmark: checksums disagree");
    rates.push(((ENTRIES * sweeps) / (cpuNow() - t0)) * 1000);
  }
  return summarize(rates);
}

const bench: Benchmark = {
  name: "repr",
  description: "64-bit entry representation: Uint32 halves vs BigUint64Array vs Float64Array",
  run(ctx: BenchContext) {
    const sweeps = ctx.quick ? 50 : 2000;
    const samples = ctx.quick ? 3 : 15;
    const u32 = makeEntries(7);
    const i32 = new Int32Array(u32.buffer);
    const big = new BigUint64Array(u32.buffer);
    const f64 = new Float64Array(ENTRIES);
    for (let i = 0; i < ENTRIES; i++) f64[i] = u32[2 * i + 1] * 0x100000000 + u32[2 * i];
    const expect = kernelU32(u32, ENTRIES);

    // Mixed: the same call site sees both element kinds (alternating sweeps).
    let flip = 0;
    const mixed = () => kernelU32Mixed((flip++ & 1) === 0 ? u32 : i32, ENTRIES);
    // Int32 views read the high halves as negative numbers when bit 31 is set; none is here
    // (no NX), and the low halves' bit 31 only feeds `>>> 12`, so the checksum is the same.

    const variants: [string, () => number][] = [
      ["u32-halves", () => kernelU32(u32, ENTRIES)],
      ["biguint64", () => kernelBig(big, ENTRIES)],
      ["float64", () => kernelF64(f64, ENTRIES)],
      ["mixed i32/u32", mixed],
    ];
    const out: Record<string, Summary> = {};
    for (const [name, f] of variants) {
      out[name] = measure(f, name === "biguint64" ? Math.max(1, sweeps / 20) : sweeps, samples, expect);
      ctx.log(
        `  ${name.padEnd(14)} ${fmtRate(out[name].median).padStart(12)} entries ±${out[name].iqrPct.toFixed(1)}%`,
      );
    }
    const base = out["u32-halves"].median;
    const metrics: Metric[] = Object.entries(out).flatMap(([name, s]) => [
      { name: `${name}`, value: s.median, unit: "entries/s", iqrPct: s.iqrPct },
      { name: `${name} vs u32-halves`, value: s.median / base, unit: "ratio" },
    ]);
    return { metrics, details: { entries: ENTRIES, sweeps, samples, summaries: out } };
  },
};

export default bench;
