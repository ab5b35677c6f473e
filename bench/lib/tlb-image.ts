/**
 * Hands a `Tlb`'s state to bench/c/tlb.c: the geometry, the current context, the permission
 * table (`deny`) and every slot's arrays, as they are after the JS warm-up, so the C looks
 * up exactly the entries the JS does. Little-endian u64 header fields; arrays as u64 too.
 *
 * ```
 *  "VMMBTLB1"
 *  capacity, zBase[3], zWays[3], zSetMask[3], lru, curSpace, curTag, clock
 *  deny[256]
 *  capacity × vpn, tag, space, attr, info, frame, stamp      (one array after the other)
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
  deny: Uint32Array;
  vpn: Uint32Array;
  tag: Uint32Array;
  space: Uint32Array;
  attr: Uint32Array;
  info: Uint32Array;
  frame: Float64Array;
  stamp: Float64Array;
}

export function writeTlbImage(path: string, tlb: Tlb): void {
  const t = tlb as unknown as TlbInternals;
  const words: number[] = [
    t.capacity,
    ...t.zBase,
    ...t.zWays,
    ...t.zSetMask,
    +t.lru,
    t.curSpace,
    t.curTag,
    t.clock,
  ];
  words.push(...t.deny);
  for (const a of [t.vpn, t.tag, t.space, t.attr, t.info, t.frame, t.stamp]) words.push(...a);
  const tag = new TextEncoder().encode("VMMBTLB1");
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
