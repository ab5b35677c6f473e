/**
 * Hands a `Tlb`'s state to bench/c/tlb.c: the geometry, the current context and every
 * slot's arrays in the TLB's own layout (src/hw/tlb.ts, "Slots"), as they are after the JS
 * warm-up, so the C looks up exactly the entries the JS does. Little-endian u64 fields;
 * arrays as u64 too (32-bit words as their unsigned value).
 *
 * ```
 *  "VMMBTLB2"
 *  capacity, zBase[3], zWays[3], zSetMask[3], lru, curSpace, curTag, clock
 *  capacity × 8   ent: vpn, space, tag, deny word, frame number (-1: none), 0, 0, 0 per slot
 *  capacity × 2   fs:  frame, stamp per slot, interleaved
 * ```
 */

import { writeFileSync } from "node:fs";
import type { Tlb } from "../../src/index.js";

/** The private arrays of a Tlb (read for the dump only). */
interface TlbInternals {
  capacity: number;
  zBase: Uint32Array;
  zWays: Uint32Array;
  zSetMask: Uint32Array;
  lru: boolean;
  curSpace: number;
  curTag: number;
  clock: number;
  ent: Int32Array;
  fs: Float64Array;
}

export function writeTlbImage(path: string, tlb: Tlb): void {
  const t = tlb as unknown as TlbInternals;
  if (t.ent.length !== t.capacity * 8 || t.fs.length !== t.capacity * 2)
    throw new Error("tlb image: the Tlb's slot layout is not the one tlb.c reads");
  const words: number[] = [
    t.capacity,
    ...t.zBase,
    ...t.zWays,
    ...t.zSetMask,
    +t.lru,
    t.curSpace >>> 0,
    t.curTag,
    t.clock,
  ];
  for (const w of t.ent) words.push(w >>> 0);
  words.push(...t.fs);
  const tag = new TextEncoder().encode("VMMBTLB2");
  const buf = new Uint8Array(tag.length + words.length * 8);
  buf.set(tag);
  const view = new DataView(buf.buffer);
  words.forEach((v, i) => {
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`tlb image: cannot store ${v}`);
    view.setUint32(tag.length + i * 8, v % 0x100000000, true);
    view.setUint32(tag.length + i * 8 + 4, Math.floor(v / 0x100000000), true);
  });
  writeFileSync(path, buf);
}
