/**
 * Hands a JS-built guest to a C counterpart: the memory model (memslots, host address
 * space, host frames) and a walker's configuration go to one binary file, access lists to
 * others. bench/c/vmmu.h reads them back into the same structures. All header fields are
 * little-endian u64; frames are 4096 raw bytes; only non-zero frames are stored.
 *
 * ```
 *  "VMMBIMG1"
 *  memslots:      n, n × (id, baseGfn, pages, hvaPage, readOnly, dirtyLog)
 *  host memory:   capacity (frames), n allocated, n × hfn
 *  host space:    n, n × (hvaPage, hfn)
 *  frame data:    n, n × (hfn, 4096 bytes)
 *  format:        kind, levels, entryBytes, rootIsPdpteRegisters, addressBits, largeLevels,
 *                 presentMask, permMask, xdMaskHi, accessedMask, dirtyMask, pse36, mbec,
 *                 shifts[6], indexMasks[6], rsvdLo[12], rsvdHi[12], eptBadBits[64]
 *  walker:        permFault[32], fetchErrorBit, pke, pks, pkru, pkrs, wp, rootGfn, pdptAddr, pdpte[8]
 *
 *  walker config: "VMMBWLK1", format, walker (as above)
 *  access list:   "VMMBACC1", count, count × (lo u32, hi u32), count × access u8
 * ```
 */

import { writeFileSync } from "node:fs";
import type { GuestWalker, HostAddressSpace, HostMemory, Memslots } from "../../src/index.js";
import type { AccessList } from "./guest.js";

class Out {
  private buf = new Uint8Array(1 << 20);
  private view = new DataView(this.buf.buffer);
  private n = 0;

  private room(k: number): void {
    if (this.n + k <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.n + k) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.n));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }

  u64(v: number | boolean): void {
    const x = typeof v === "boolean" ? (v ? 1 : 0) : v;
    if (!Number.isSafeInteger(x) || x < 0) throw new RangeError(`cannot store ${v} as u64`);
    this.room(8);
    this.view.setUint32(this.n, x % 0x100000000, true);
    this.view.setUint32(this.n + 4, Math.floor(x / 0x100000000), true);
    this.n += 8;
  }

  words(a: ArrayLike<number>): void {
    for (let i = 0; i < a.length; i++) this.u64(a[i]);
  }

  bytes(b: Uint8Array): void {
    this.room(b.length);
    this.buf.set(b, this.n);
    this.n += b.length;
  }

  tag(s: string): void {
    this.bytes(new TextEncoder().encode(s));
  }

  save(path: string): void {
    writeFileSync(path, this.buf.subarray(0, this.n));
  }
}

export interface ImageSource {
  memslots: Memslots;
  hostSpace: HostAddressSpace;
  host: HostMemory;
  walker: GuestWalker;
}

export function writeImage(path: string, g: ImageSource): void {
  const o = new Out();
  o.tag("VMMBIMG1");
  const slots = g.memslots.list();
  o.u64(slots.length);
  for (const s of slots) {
    o.u64(s.id);
    o.u64(s.baseGfn);
    o.u64(s.pages);
    o.u64(s.hvaPage);
    o.u64(s.flags.readOnly);
    o.u64(s.flags.dirtyLog);
  }

  const host = g.host;
  const allocated: number[] = [];
  for (let f = 0; f < host.capacity; f++) if (host.refCount(f) > 0) allocated.push(f);
  o.u64(host.capacity);
  o.u64(allocated.length);
  o.words(allocated);

  const mapped: number[] = [];
  for (const s of slots)
    for (let p = s.hvaPage; p < s.hvaPage + s.pages; p++) {
      const f = g.hostSpace.peek(p);
      if (f >= 0) mapped.push(p, f);
    }
  o.u64(mapped.length / 2);
  o.words(mapped);

  const nonZero: number[] = [];
  for (const f of allocated) {
    const words = host.frameWords(f)!;
    const base = host.frameBase;
    for (let i = 0; i < 1024; i++)
      if (words[base + i] !== 0) {
        nonZero.push(f);
        break;
      }
  }
  o.u64(nonZero.length);
  for (const f of nonZero) {
    o.u64(f);
    const words = host.frameWords(f)!;
    o.bytes(new Uint8Array(words.buffer, words.byteOffset + host.frameBase * 4, 4096));
  }

  o.words(walkerSection(g.walker));
  o.save(path);
}

/** The format and walker sections (above) of a walker, in order. */
function walkerSection(w: GuestWalker): number[] {
  const f = w.format;
  const bad = new Uint8Array(64);
  bad.set(f.eptBadBits);
  return [
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
}

/**
 * A second walker for a C counterpart that walks with two (bench/c/two_d.c: the guest walker
 * of a 2-D walk beside the EPT walker of the image): "VMMBWLK1" followed by the walker
 * sections, read back with walk.c's load_walker.
 */
export function writeWalkerConfig(path: string, w: GuestWalker): void {
  const o = new Out();
  o.tag("VMMBWLK1");
  o.words(walkerSection(w));
  o.save(path);
}

export function writeAccessList(path: string, list: AccessList): void {
  const o = new Out();
  o.tag("VMMBACC1");
  o.u64(list.count);
  o.bytes(new Uint8Array(list.va.buffer, list.va.byteOffset, list.count * 8));
  o.bytes(list.access.subarray(0, list.count));
  o.save(path);
}

/** FNV-1a-style hash over every allocated host frame, in frame order (compared with the C side). */
export function hashHostMemory(host: HostMemory): number {
  let h = 0x811c9dc5;
  for (let f = 0; f < host.capacity; f++) {
    if (host.refCount(f) === 0) continue;
    const words = host.frameWords(f)!;
    const base = host.frameBase;
    for (let i = 0; i < 1024; i++) h = Math.imul(h ^ words[base + i], 0x01000193);
  }
  return h >>> 0;
}
