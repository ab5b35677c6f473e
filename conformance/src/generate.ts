/**
 * The case generator. Deterministic from a seed. Per paging mode it produces:
 *  - "matrix": every combination of CR0.WP, SMEP, SMAP, EFLAGS.AC, EFER.NXE, CPL and
 *    read/write/fetch × every combination of the leaf's R/W, U/S, XD, A, D, with the
 *    R/W, U/S, XD of one upper level rotating through all combinations, page sizes rotating;
 *  - "pkey": protection keys (PKRU for user pages, PKRS for supervisor pages) × AD/WD × WP ×
 *    CPL × access;
 *  - "reserved": every reserved bit of every level set alone (address bits at and above
 *    MAXPHYADDR, XD without NXE, large-page low bits, PS where it is not allowed, PAE's
 *    bits 62:52, PSE-36), plus reserved-versus-permission priority;
 *  - "canonical": non-canonical addresses (4/5-level);
 *  - "structure": not-present at each level, self-referencing roots, tables beyond RAM;
 *  - "random": random entries and CPU state.
 * The number of random cases is an option; everything else is fixed by the mode and seed.
 */

import {
  type Case,
  CaseBuilder,
  F_AC,
  F_ACCESS_SHIFT,
  F_CPL3,
  F_NXE,
  F_PKE,
  F_PKS,
  F_PSE,
  F_SMAP,
  F_SMEP,
  F_WP,
  levelCount,
} from "./case.js";
import { LAYOUT, type ModeNumber } from "./layout.js";
import { Rng } from "./rng.js";

const P = 1n;
const RW = 2n;
const US = 4n;
const A = 0x20n;
const D = 0x40n;
const PS = 0x80n;
const XD = 1n << 63n;
const pk = (k: number) => BigInt(k) << 59n;

/** MAXPHYADDR of QEMU's -cpu max (the kernel reports it; the runner checks). */
export const QEMU_MAXPHYADDR = 40;

const SHIFTS: Record<ModeNumber, number[]> = {
  0: [22, 12],
  1: [30, 21, 12],
  2: [39, 30, 21, 12],
  3: [48, 39, 30, 21, 12],
};

/** Leaf depth (0 = root) for each page size a mode has. */
function sizes(mode: ModeNumber): { depth: number; base: number; name: string }[] {
  const n = levelCount(mode);
  const small = { depth: n - 1, base: -1, name: "4K" };
  if (mode === 0) return [small, { depth: 0, base: 0x400000, name: "4M" }];
  if (mode === 1) return [small, { depth: 1, base: 0x400000, name: "2M" }];
  return [small, { depth: n - 2, base: 0x400000, name: "2M" }, { depth: n - 3, base: 0, name: "1G" }];
}

export interface GenerateOptions {
  seed: number;
  /** Cases of the "random" category for this mode. */
  randomCases: number;
}

export function generate(mode: ModeNumber, o: GenerateOptions): Case[] {
  const rng = new Rng(o.seed * 4 + mode + 1);
  let next = LAYOUT.scratchBase;
  const alloc = () => {
    const p = next;
    next += 4096;
    if (next >= LAYOUT.scratchLimit) next = LAYOUT.scratchBase;
    return p;
  };
  const out: Case[] = [];
  const long = mode >= 2;
  const wide = mode >= 1;
  const levels = levelCount(mode);

  /** Default non-leaf bits at a depth: permissive (PAE PDPTEs have only P). */
  const upperBits = (depth: number): bigint => (mode === 1 && depth === 0 ? P : P | RW | US);

  /** A canonical VA whose root index is not the harness's (0), leaf at `depth`, hitting `target`. */
  const makeVa = (depth: number, base: number, target: number): bigint => {
    let va = 0n;
    for (let d = 0; d <= depth; d++) {
      const bits = d === 0 && mode === 1 ? 2 : mode === 0 ? 10 : 9;
      let index = BigInt(rng.int(1 << bits));
      if (d === 0) index = BigInt(1 + rng.int((1 << bits) - 1));
      va |= index << BigInt(SHIFTS[mode][d]);
    }
    const offset = base < 0 ? BigInt(rng.int(4096)) : BigInt(target - base + rng.int(4096));
    va |= offset;
    return canonical(mode, va);
  };

  /** One access case with a complete path; `leaf` and `upper` customise the entries. */
  const pathCase = (p: {
    flags: number;
    sizeIndex: number;
    leaf: bigint;
    upperOverride?: { depth: number; bits: bigint };
    pkru?: number;
    pkrs?: number;
    label: string;
    tweak?: (b: CaseBuilder, path: number[]) => void;
    deviation?: Case["deviation"];
  }) => {
    const s = sizes(mode)[p.sizeIndex];
    const access = (p.flags >>> F_ACCESS_SHIFT) & 3;
    const target = access === 2 ? LAYOUT.codePage : LAYOUT.dataPage;
    const b = new CaseBuilder(mode, alloc);
    const va = makeVa(s.depth, s.base, target);
    const path = b.path(va, s.depth, (d) =>
      p.upperOverride?.depth === d ? p.upperOverride.bits : upperBits(d),
    );
    const leafPa = BigInt(s.base < 0 ? target : s.base);
    b.set(path[s.depth], leafPa | p.leaf | (s.depth < levels - 1 ? PS : 0n));
    p.tweak?.(b, path);
    let flags = p.flags;
    if (mode === 0 && s.name === "4M") flags |= F_PSE;
    out.push(
      b.build({
        flags,
        pkru: p.pkru,
        pkrs: p.pkrs,
        va,
        watches: path,
        label: `${p.label} ${s.name}`,
        deviation: p.deviation,
      }),
    );
  };

  // --- matrix ---
  const leafChoices = wide ? [RW, US, XD, A, D] : [RW, US, A, D];
  const upperChoices = wide ? [RW, US, XD] : [RW, US];
  const nonLeafDepths = (sizeIndex: number) => {
    const ds: number[] = [];
    for (let d = mode === 1 ? 1 : 0; d < sizes(mode)[sizeIndex].depth; d++) ds.push(d);
    return ds;
  };
  let rot = 0;
  for (let f = 0; f < 64 * 3; f++) {
    const access = f % 3;
    const bitsF = Math.floor(f / 3);
    const flags =
      (bitsF & 1 ? F_WP : 0) |
      (bitsF & 2 ? F_SMEP : 0) |
      (bitsF & 4 ? F_SMAP : 0) |
      (bitsF & 8 ? F_AC : 0) |
      (bitsF & 16 ? F_NXE : 0) |
      (bitsF & 32 ? F_CPL3 : 0) |
      (access << F_ACCESS_SHIFT);
    for (let l = 0; l < 1 << leafChoices.length; l++) {
      let leaf = P;
      leafChoices.forEach((bit, i) => {
        if (l & (1 << i)) leaf |= bit;
      });
      // XD without NXE is a reserved bit: that is the "reserved" category's business.
      if (!(flags & F_NXE)) leaf &= ~XD;
      const sizeIndex = rot % sizes(mode).length;
      const depths = nonLeafDepths(sizeIndex);
      const u = rot % (1 << upperChoices.length);
      let ubits = P;
      upperChoices.forEach((bit, i) => {
        if (u & (1 << i)) ubits |= bit;
      });
      if (!(flags & F_NXE)) ubits &= ~XD;
      rot++;
      pathCase({
        flags,
        sizeIndex,
        leaf,
        upperOverride: depths.length ? { depth: depths[rot % depths.length], bits: ubits } : undefined,
        label: "matrix",
      });
    }
  }

  // --- protection keys (IA-32e only; in legacy modes CR4.PKE/PKS must change nothing) ---
  for (let i = 0; i < 400; i++) {
    const key = rng.int(15); // key 15 belongs to the harness
    const pattern = rng.int(4); // none, AD, WD, AD+WD for the key
    const others = rng.u32();
    let pkru = ((others & ~(3 << (2 * key))) | (pattern << (2 * key))) >>> 0;
    let pkrs = ((rng.u32() & ~(3 << (2 * key))) | (pattern << (2 * key))) >>> 0;
    pkrs &= 0x3fffffff; // PKRS must allow key 15 (the kernel's stack)
    if (!rng.bool(0.2)) pkru = (pkru & 0x3fffffff) >>> 0;
    const access = rng.int(3);
    const flags =
      (rng.bool() ? F_PKE : 0) |
      (rng.bool() ? F_PKS : 0) |
      (rng.bool() ? F_WP : 0) |
      (rng.bool(0.3) ? F_SMAP : 0) |
      (rng.bool() ? F_AC : 0) |
      (rng.bool() ? F_CPL3 : 0) |
      F_NXE |
      (access << F_ACCESS_SHIFT);
    const leaf =
      P | (rng.bool(0.8) ? RW : 0n) | (rng.bool() ? US : 0n) | (long ? pk(key) : 0n) | (rng.bool() ? A : 0n);
    pathCase({ flags, sizeIndex: rng.int(sizes(mode).length), leaf, pkru, pkrs, label: `pkey key=${key}` });
  }

  // --- reserved bits, each alone, at every level ---
  const M = QEMU_MAXPHYADDR;
  for (let sizeIndex = 0; sizeIndex < sizes(mode).length; sizeIndex++) {
    const s = sizes(mode)[sizeIndex];
    for (let depth = mode === 1 ? 1 : 0; depth <= s.depth; depth++) {
      const isLeaf = depth === s.depth;
      const candidates: { bit: bigint; why: string; nxe?: boolean; deviation?: Case["deviation"] }[] = [];
      if (wide) {
        for (let b = M; b <= 51; b++)
          candidates.push({ bit: 1n << BigInt(b), why: `bit ${b} >= MAXPHYADDR` });
        candidates.push({ bit: XD, why: "XD without NXE", nxe: false });
        if (mode === 1)
          for (let b = 52; b <= 62; b += 5) candidates.push({ bit: 1n << BigInt(b), why: `PAE bit ${b}` });
        else
          for (let b = 52; b <= 58; b += 3)
            candidates.push({ bit: 1n << BigInt(b), why: `ignored bit ${b}` });
      }
      if (isLeaf && s.name === "2M")
        for (let b = 13; b <= 20; b++) candidates.push({ bit: 1n << BigInt(b), why: `2M bit ${b}` });
      if (isLeaf && s.name === "1G")
        for (let b = 13; b <= 29; b += 2) candidates.push({ bit: 1n << BigInt(b), why: `1G bit ${b}` });
      if (isLeaf && s.name === "4M") {
        candidates.push({ bit: 1n << 21n, why: "4M bit 21" });
        for (let b = 13; b <= 20; b++) candidates.push({ bit: 1n << BigInt(b), why: `PSE-36 bit ${b}` });
      }
      if (long && !isLeaf && depth <= levels - 4) candidates.push({ bit: PS, why: "PS in PML4E/PML5E" });
      if (long && !isLeaf && depth <= levels - 3)
        candidates.push({ bit: 0x100n, why: "bit 8 (AMD: reserved)", deviation: "amd-bit8" });
      for (const c of candidates)
        for (let access = 0; access < 3; access++) {
          // A valid PSE-36 address bit moves the page above RAM: nothing to fetch there.
          if (access === 2 && c.why.startsWith("PSE-36")) continue;
          const nxe = c.nxe ?? true;
          const flags = F_WP | (nxe ? F_NXE : 0) | (rng.bool() ? F_CPL3 : 0) | (access << F_ACCESS_SHIFT);
          pathCase({
            flags,
            sizeIndex,
            leaf: P | RW | US,
            label: `reserved ${c.why} depth ${depth}`,
            deviation: c.deviation,
            // Also make the leaf read-only supervisor for CPL3 writes: the reserved bit must win.
            tweak: (b, path) => {
              const v = b.get(path[depth])!;
              b.set(path[depth], v | c.bit);
              if (access === 1 && rng.bool()) b.set(path[s.depth], b.get(path[s.depth])! & ~(RW | US));
            },
          });
        }
    }
  }
  if (mode === 1) {
    // PAE PDPTE reserved bits: the SDM's #GP at CR3 load (a documented QEMU departure).
    for (const bit of [1n, 2n, 5n, 6n, 7n, 8n, 40n, 51n, 63n])
      for (let access = 0; access < 3; access++)
        pathCase({
          flags: F_WP | F_NXE | (access << F_ACCESS_SHIFT),
          sizeIndex: rng.int(2),
          leaf: P | RW | US,
          label: `reserved PDPTE bit ${bit}`,
          deviation: "pdpte-reserved",
          tweak: (b, path) => b.set(path[0], b.get(path[0])! | (1n << bit)),
        });
  }

  // --- non-canonical addresses ---
  if (long) {
    const vaBits = mode === 2 ? 48 : 57;
    for (let i = 0; i < 120; i++) {
      const access = i % 3;
      const b = new CaseBuilder(mode, alloc);
      const low = (BigInt(rng.u32()) << 16n) & ((1n << BigInt(vaBits - 1)) - 1n) & ~0xfffn;
      const va = (low | (1n << BigInt(vaBits - 1 + rng.int(64 - vaBits + 1)))) & ((1n << 64n) - 1n);
      if (canonical(mode, va) === va) continue;
      out.push(
        b.build({
          flags: F_WP | F_NXE | (rng.bool() ? F_CPL3 : 0) | (access << F_ACCESS_SHIFT),
          va,
          watches: [],
          label: "non-canonical",
        }),
      );
    }
  }

  // --- structure: not present at each level, tables beyond RAM, self-reference ---
  for (let i = 0; i < 300; i++) {
    const sizeIndex = rng.int(sizes(mode).length);
    const s = sizes(mode)[sizeIndex];
    const depth = (mode === 1 ? 1 : 0) + rng.int(s.depth + 1 - (mode === 1 ? 1 : 0));
    const kind = rng.int(3);
    const access = rng.int(3);
    const flags = F_WP | F_NXE | (rng.bool() ? F_CPL3 : 0) | (access << F_ACCESS_SHIFT);
    if (kind === 0)
      pathCase({
        flags,
        sizeIndex,
        leaf: P | RW | US,
        label: `not-present depth ${depth}`,
        tweak: (b, path) => b.set(path[depth], b.get(path[depth])! & ~P),
      });
    else if (kind === 1 && depth < s.depth) {
      // A table pointer to memory above 256 MiB (no RAM): QEMU reads zeros there.
      const beyond = BigInt(LAYOUT.ramLimit + rng.int(0x1000) * 4096);
      pathCase({
        flags,
        sizeIndex,
        leaf: P | RW | US,
        label: `table beyond RAM depth ${depth}`,
        tweak: (b, path) => b.set(path[depth], beyond | (b.get(path[depth])! & 0xfffn)),
      });
    } else if (access !== 2) {
      // Recursive root entry: root[i] → root, walked `levels` times reads the root as a page.
      const b = new CaseBuilder(mode, alloc);
      const bits = mode === 1 ? 2 : mode === 0 ? 10 : 9;
      const i0 = 1 + rng.int((1 << bits) - 1);
      if (mode === 1) continue; // PDPTEs cannot point back to the PDPT usefully
      let va = 0n;
      for (let d = 0; d < levels; d++) va |= BigInt(i0) << BigInt(SHIFTS[mode][d]);
      // The page reached is the root itself: keep a store off root[0], the harness entry.
      va = canonical(mode, va | BigInt(8 + rng.int(4096 - 8)));
      const e = b.entryAddr(b.root, i0);
      b.set(e, BigInt(b.root) | P | RW | US);
      out.push(
        b.build({
          flags: (flags & ~(3 << F_ACCESS_SHIFT)) | (access << F_ACCESS_SHIFT),
          va,
          watches: [e],
          label: "self-referencing root",
        }),
      );
    }
  }

  // --- random ---
  for (let i = 0; i < o.randomCases; i++) {
    const access = rng.int(3);
    const flags =
      (rng.bool() ? F_WP : 0) |
      (rng.bool(0.3) ? F_SMEP : 0) |
      (rng.bool(0.3) ? F_SMAP : 0) |
      (rng.bool(0.3) ? F_PKE : 0) |
      (rng.bool(0.2) ? F_PKS : 0) |
      (rng.bool(0.8) ? F_NXE : 0) |
      (rng.bool() ? F_AC : 0) |
      (rng.bool() ? F_CPL3 : 0) |
      (access << F_ACCESS_SHIFT);
    const randomBits = () =>
      P |
      (rng.bool(0.8) ? RW : 0n) |
      (rng.bool(0.7) ? US : 0n) |
      (rng.bool(0.3) ? A : 0n) |
      (rng.bool(0.2) ? D : 0n) |
      (wide && rng.bool(0.15) ? XD : 0n) |
      (rng.bool(0.1) ? 0x18n : 0n) |
      (rng.bool(0.1) ? 0xe00n : 0n) |
      (mode >= 2 ? pk(rng.int(15)) & (rng.bool(0.4) ? ~0n : 0n) : 0n) |
      (wide && rng.bool(0.03) ? 1n << BigInt(M + rng.int(52 - M)) : 0n);
    const sizeIndex = rng.int(sizes(mode).length);
    const s = sizes(mode)[sizeIndex];
    pathCase({
      flags,
      sizeIndex,
      leaf: randomBits() & ~PS,
      pkru: rng.u32(),
      pkrs: rng.u32() & 0x3fffffff,
      label: "random",
      tweak: (b, path) => {
        for (let d = mode === 1 ? 1 : 0; d < s.depth; d++)
          if (rng.bool(0.5))
            b.set(path[d], (b.get(path[d])! & 0x000ffffffffff000n) | (randomBits() & ~PS & ~0x100n));
      },
    });
  }
  return out;
}

/** Sign-extends a 4/5-level linear address from bit 47/56; other modes: the low 32 bits. */
export function canonical(mode: ModeNumber, va: bigint): bigint {
  if (mode < 2) return va & 0xffffffffn;
  const bits = mode === 2 ? 48n : 57n;
  return BigInt.asUintN(64, BigInt.asIntN(Number(bits), va));
}
