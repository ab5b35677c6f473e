/**
 * A second walker for a C counterpart that walks with two (bench/c/two_d.c: the guest walker
 * of a 2-D walk beside the EPT walker of the image): "VMMBWLK1" followed by the walker
 * section of bench/lib/image.ts (format, then walker), read back with walk.c's load_walker.
 */

import { writeFileSync } from "node:fs";
import type { GuestWalker } from "../../src/index.js";

export function writeWalkerConfig(path: string, w: GuestWalker): void {
  const f = w.format;
  const bad = new Uint8Array(64);
  bad.set(f.eptBadBits);
  const words: number[] = [
    f.kind,
    f.levels,
    f.entryBytes,
    +f.rootIsPdpteRegisters,
    f.addressBits,
    f.largeLevels,
    f.presentMask >>> 0,
    f.permMask >>> 0,
    f.xdMaskHi >>> 0,
    f.accessedMask >>> 0,
    f.dirtyMask >>> 0,
    +f.pse36,
    +f.mbec,
    ...f.shifts,
    ...f.indexMasks,
    ...f.rsvdLo,
    ...f.rsvdHi,
    ...bad,
    ...w.permFault,
    w.fetchErrorBit,
    +w.pke,
    +w.pks,
    w.pkru,
    w.pkrs,
    +w.wp,
    w.rootGfn,
    w.pdptAddr,
    ...w.pdpte,
  ];
  const tag = new TextEncoder().encode("VMMBWLK1");
  const buf = new Uint8Array(tag.length + words.length * 8);
  buf.set(tag);
  const view = new DataView(buf.buffer);
  words.forEach((v, i) => {
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`walker image: cannot store ${v}`);
    view.setUint32(tag.length + i * 8, v % 0x100000000, true);
    view.setUint32(tag.length + i * 8 + 4, Math.floor(v / 0x100000000), true);
  });
  writeFileSync(path, buf);
}
