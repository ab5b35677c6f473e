/**
 * What vmmu says a case does, in the terms the kernel reports: exception vector, error
 * code, CR2, and the watched entries afterwards. `qemuView` applies the documented QEMU
 * departures (conformance/DEVIATIONS.md) so the two can be compared; everything else must
 * match exactly.
 */

import {
  ACCESS_AC,
  ACCESS_FETCH,
  ACCESS_USER,
  ACCESS_WRITE,
  type CpuFeatures,
  CpuRole,
  cpuModel,
  FAULT_GP,
  FAULT_NONE,
  GuestPhysical,
  GuestWalker,
  HostMemory,
  highAddressReserved,
  loadCr3,
  Memslots,
  PFEC_P,
  PFEC_RSVD,
  PFEC_U,
  PFEC_W,
  Walk,
} from "../../src/index.js";
import {
  accessOf,
  type Case,
  F_AC,
  F_CPL3,
  F_NXE,
  F_PKE,
  F_PKS,
  F_PSE,
  F_SMAP,
  F_SMEP,
  F_WP,
} from "./case.js";
import { LAYOUT } from "./layout.js";

/** A result as the kernel prints it. */
export interface Outcome {
  /** Exception vector, or null when the access completed. */
  vector: number | null;
  errorCode: number | null;
  cr2: bigint | null;
  watches: bigint[];
}

/** The CPU model the suite compares against: QEMU 7.2 `-cpu max` as the kernel reports it. */
export function qemuFeatures(maxPhyAddr: number, vendor: "amd" | "intel"): CpuFeatures {
  return { ...cpuModel("qemu-max"), maxPhyAddr, vendor };
}

export class VmmuOracle {
  private readonly physical: GuestPhysical;
  private readonly w = new Walk();

  constructor(private readonly maxPhyAddr: number) {
    // RAM as QEMU's -m 256M; above it nothing (a walk there reads "no memory").
    this.physical = new GuestPhysical(new Memslots(2 ** (maxPhyAddr - 12)), new HostMemory(LAYOUT.ramLimit));
    this.physical.memslots.add({ id: 0, baseGfn: 0, pages: LAYOUT.ramLimit / 4096, hvaPage: 0x100000 });
  }

  /**
   * Runs the case through vmmu. `vendor` decides AMD-only reserved bits; `qemu` applies the
   * documented QEMU departures to the result.
   */
  evaluate(c: Case, o: { vendor: "amd" | "intel"; qemu: boolean }): Outcome {
    const mem = this.physical;
    for (const p of c.pages) mem.writeBytes(p, ZERO_PAGE);
    const es = LAYOUT.entrySize(c.mode);
    for (const wr of c.writes) mem.write(wr.addr, es, es === 4 ? wr.value & 0xffffffffn : wr.value);

    const f = c.flags;
    const cr4 =
      (c.mode === 0 && f & F_PSE ? 0x10 : 0) |
      (c.mode >= 1 ? 0x20 : 0) |
      (c.mode === 3 ? 0x1000 : 0) |
      (f & F_SMEP ? 1 << 20 : 0) |
      (f & F_SMAP ? 1 << 21 : 0) |
      (f & F_PKE ? 1 << 22 : 0) |
      (f & F_PKS ? 1 << 24 : 0);
    const efer = (c.mode >= 2 ? 0x500 : 0) | (f & F_NXE ? 0x800 : 0);
    const cr0 = 0x80000011 | (f & F_WP ? 0x10000 : 0);
    const role = CpuRole.from(
      {
        cr0: BigInt(cr0 >>> 0),
        cr4: BigInt(cr4),
        efer: BigInt(efer),
        cpl: f & F_CPL3 ? 3 : 0,
        pkru: c.pkru,
        pkrs: c.pkrs,
      },
      qemuFeatures(this.maxPhyAddr, o.vendor),
    );
    const walker = new GuestWalker(mem, {
      format: role.format!,
      permFault: role.permFault,
      fetchErrorBit: role.fetchErrorBit,
      pke: role.pke,
      pks: role.pks,
      pkru: role.pkru,
      pkrs: role.pkrs,
      wp: role.wp,
    });
    const kind = accessOf(c);
    const access =
      (kind === 1 ? ACCESS_WRITE : kind === 2 ? ACCESS_FETCH : 0) |
      (f & F_CPL3 ? ACCESS_USER : 0) |
      (f & F_AC ? ACCESS_AC : 0);
    const cr2 = c.mode < 2 ? c.va & 0xffffffffn : c.va;
    const vaHi = Number(c.va >> 32n);
    const vaLo = Number(c.va & 0xffffffffn);

    let outcome: Outcome;
    const load = loadCr3(walker, role, BigInt(c.cr3));
    if (!load.ok && o.qemu && c.mode === 1) outcome = this.qemuPae(c, walker, access, cr2);
    else if (!load.ok) outcome = { vector: 13, errorCode: 0, cr2: null, watches: [] };
    else {
      const w = this.w;
      walker.walk(vaHi, vaLo, access, w);
      if (w.fault === FAULT_NONE) {
        // The kernel's access itself: a store writes 0xCC at the translated address.
        if (kind === 1) mem.write(w.address, 1, 0xcc);
        outcome = { vector: null, errorCode: null, cr2: null, watches: [] };
      } else if (w.fault === FAULT_GP) outcome = { vector: 13, errorCode: 0, cr2: null, watches: [] };
      else {
        let ec = w.errorCode;
        // QEMU departure 1: a reserved-bit #PF reports RSVD without P.
        if (o.qemu && ec & PFEC_RSVD) ec &= ~PFEC_P;
        outcome = { vector: 14, errorCode: ec, cr2, watches: [] };
        // QEMU departure 4: QEMU sets A on a present 1 GiB leaf before it checks the leaf's
        // low reserved bits (29:13) and the access rights, so A is set even when those fault.
        // Address bits at or above MAXPHYADDR and XD without NXE are checked before A is set.
        const last = w.depth - 1;
        if (
          o.qemu &&
          w.faultLevel === 3 &&
          c.mode >= 2 &&
          w.level[last] === 3 &&
          (w.lo[last] & 0x81) === 0x81
        ) {
          const early = highAddressReserved(this.maxPhyAddr) | (f & F_NXE ? 0 : 0x80000000);
          if ((w.hi[last] & early) === 0) mem.write(w.entryAddr[last], 4, (w.lo[last] | 0x20) >>> 0);
        }
      }
      // QEMU departure 3: QEMU sets A (bit 5) in the PAE PDPTE it walked through.
      if (o.qemu && c.mode === 1 && walker.pdpte[(vaLo >>> 30) * 2] & 1) {
        const addr = walker.pdptAddr + (vaLo >>> 30) * 8;
        const v = mem.read(addr, 8).value;
        if (this.w.depth > 1) mem.write(addr, 8, v | 0x20n);
      }
    }
    outcome.watches = c.watches.map((a) => mem.read(a, es).value);
    return outcome;
  }

  /**
   * QEMU departure 2: QEMU does not load PDPTEs at CR3 load. It reads the PDPTE during the
   * walk, ignores bits 2:1 and 8:5, and treats bits 63:MAXPHYADDR as a reserved-bit #PF.
   */
  private qemuPae(c: Case, walker: GuestWalker, access: number, cr2: bigint): Outcome {
    const mem = this.physical;
    const vaLo = Number(c.va & 0xffffffffn);
    const addr = (c.cr3 & ~0x1f) + (vaLo >>> 30) * 8;
    const pdpte = mem.read(addr, 8).value;
    const high = pdpte >> BigInt(this.maxPhyAddr);
    const errorBits =
      (access & ACCESS_WRITE ? PFEC_W : 0) |
      (access & ACCESS_USER ? PFEC_U : 0) |
      (access & ACCESS_FETCH ? walker.fetchErrorBit : 0);
    if (pdpte & 1n && high !== 0n) return { vector: 14, errorCode: errorBits | PFEC_RSVD, cr2, watches: [] };
    // Otherwise: the PDPTEs as QEMU sees them, with the ignored bits cleared, in the registers.
    for (let i = 0; i < 4; i++) {
      const v = mem.read((c.cr3 & ~0x1f) + i * 8, 8).value & ~0x1e6n;
      walker.pdpte[i * 2] = Number(v & 0xffffffffn);
      walker.pdpte[i * 2 + 1] = Number(v >> 32n);
    }
    walker.pdptAddr = c.cr3 & ~0x1f;
    const w = this.w;
    walker.walk(0, vaLo, access, w);
    if (w.fault === FAULT_NONE) {
      if (access & ACCESS_WRITE) mem.write(w.address, 1, 0xcc);
    }
    if (pdpte & 1n && w.depth > 1) mem.write(addr, 8, mem.read(addr, 8).value | 0x20n);
    if (w.fault === FAULT_NONE) return { vector: null, errorCode: null, cr2: null, watches: [] };
    let ec = w.errorCode;
    if (ec & PFEC_RSVD) ec &= ~PFEC_P;
    return { vector: 14, errorCode: ec, cr2, watches: [] };
  }
}

const ZERO_PAGE = new Uint8Array(4096);

export function describeOutcome(o: Outcome): string {
  const v = o.vector === null ? "completed" : `vector ${o.vector}`;
  const ec = o.errorCode === null ? "" : ` ec=0x${o.errorCode.toString(16)}`;
  const cr2 = o.cr2 === null ? "" : ` cr2=0x${o.cr2.toString(16)}`;
  return `${v}${ec}${cr2} entries [${o.watches.map((w) => w.toString(16)).join(" ")}]`;
}
