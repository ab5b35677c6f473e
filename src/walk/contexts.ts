/**
 * Walker factories: a guest CPU's walker from its role and CR3, an EPT walker from an
 * EPTP, an NPT walker from nCR3. They validate the root the way hardware does when it
 * is loaded (MOV CR3, VM entry) and build the permission tables.
 */

import {
  ACCESS_FETCH,
  ACCESS_USER,
  ACCESS_WRITE,
  EPT_EFF_R,
  EPT_EFF_W,
  EPT_EFF_X,
  EPT_EFF_XU,
} from "../arch/access.js";
import { type CpuFeatures, CpuRole, CpuStateError, type EptFeatures } from "../arch/cpu.js";
import { EPT_MT_UC, EPT_MT_WB, EPTP_AD, EPTP_MT_MASK, EPTP_WALK_MASK, EPTP_WALK_SHIFT } from "../arch/ept.js";
import { eptFormat, highAddressReserved, x86Format } from "../arch/format.js";
import { hi32, lo32, toU64, type U64Input } from "../arch/u64.js";
import { PFEC_I } from "../arch/x86.js";
import type { FrameSource } from "../mem/frame-source.js";
import { GuestWalker } from "./walker.js";

/** Outcome of loading a root: ok, or the #GP (or VM-entry failure) hardware would raise, with the rule. */
export type RootLoad = { ok: true } | { ok: false; reason: string };

/**
 * A walker for a guest CPU in `role`'s paging mode, rooted at `cr3` (as software writes it).
 * Throws CpuStateError when the CPU would refuse the CR3 load (reserved bits, bad PAE PDPTEs)
 * or when paging is off.
 *
 * @example
 * ```ts
 * const walker = cpuWalker(physical, role, 0x1000n);
 * const w = new Walk();
 * walker.walk(0, 0x401000, role.accessFor("read"), w);
 * ```
 */
export function cpuWalker(memory: FrameSource, role: CpuRole, cr3: U64Input): GuestWalker {
  if (role.format === null)
    throw new CpuStateError("paging is off (CR0.PG=0): there are no page tables to walk");
  const walker = new GuestWalker(memory, {
    format: role.format,
    permFault: role.permFault,
    fetchErrorBit: role.fetchErrorBit,
    pke: role.pke,
    pks: role.pks,
    pkru: role.pkru,
    pkrs: role.pkrs,
    wp: role.wp,
  });
  const r = loadCr3(walker, role, cr3);
  if (!r.ok) throw new CpuStateError(r.reason);
  return walker;
}

/**
 * MOV to CR3 (SDM 4.3, 4.4.1, 4.5): sets the walker's root. In PAE mode this loads the four
 * PDPTE registers from memory and fails (#GP) if a present PDPTE has reserved bits set or
 * the PDPT is not in memory. Under CR4.PCIDE bits 11:0 are the PCID and bit 63 the no-flush
 * hint; neither is part of the root.
 */
export function loadCr3(walker: GuestWalker, role: CpuRole, cr3Input: U64Input): RootLoad {
  const cr3 = toU64(cr3Input, "CR3");
  const f = walker.format;
  const hi = hi32(cr3);
  const lo = lo32(cr3);
  switch (role.mode) {
    case "32bit":
      if (hi !== 0) return { ok: false, reason: "CR3 bits 63:32 must be zero outside IA-32e mode" };
      walker.rootGfn = lo >>> 12;
      return { ok: true };
    case "pae": {
      if (hi !== 0) return { ok: false, reason: "CR3 bits 63:32 must be zero outside IA-32e mode" };
      const pdpt = (lo & 0xffffffe0) >>> 0;
      walker.pdptAddr = pdpt;
      walker.rootGfn = pdpt >>> 12;
      const words = walker.memory.frameWords(pdpt >>> 12);
      if (words === null) return { ok: false, reason: `the PDPT at 0x${pdpt.toString(16)} is not in memory` };
      const base = walker.memory.frameBase + ((pdpt & 0xfff) >>> 2);
      const rsvdLo = f.rsvdLo[3 * 2];
      const rsvdHi = f.rsvdHi[3 * 2];
      for (let i = 0; i < 4; i++) {
        const elo = words[base + i * 2];
        const ehi = words[base + i * 2 + 1];
        // SDM 4.4.1: a present PDPTE with a reserved bit set makes MOV CR3 raise #GP.
        if (elo & 1 && ((elo & rsvdLo) !== 0 || (ehi & rsvdHi) !== 0))
          return {
            ok: false,
            reason: `PDPTE ${i} (0x${hex64(ehi, elo)}) has reserved bits set: #GP on CR3 load`,
          };
      }
      for (let i = 0; i < 4; i++) {
        walker.pdpte[i * 2] = words[base + i * 2];
        walker.pdpte[i * 2 + 1] = words[base + i * 2 + 1];
      }
      return { ok: true };
    }
    case "4level":
    case "5level": {
      let h = hi;
      if (role.pcide) h &= 0x7fffffff; // bit 63: no-flush hint, not part of CR3
      if ((h & (highAddressReserved(f.maxPhyAddr) | 0xfff00000)) !== 0)
        return {
          ok: false,
          reason: `CR3 0x${hex64(hi, lo)} has bits at or above MAXPHYADDR (${f.maxPhyAddr}) set: #GP`,
        };
      walker.rootGfn = (h & 0xfffff) * 0x100000 + (lo >>> 12);
      return { ok: true };
    }
    default:
      return { ok: false, reason: "paging is off" };
  }
}

/**
 * The EPT access-rights table (SDM 29.3.3.2): reads need R, writes need W, fetches need X;
 * with MBEC a fetch needs X (supervisor-mode linear address) or XU (user-mode, ACCESS_USER).
 */
export function eptPermissionTable(mbec: boolean): Uint16Array {
  const t = new Uint16Array(32);
  for (let a = 0; a < 32; a++) {
    let faults = 0;
    for (let e = 0; e < 16; e++) {
      let ok: boolean;
      if (a & ACCESS_FETCH) ok = (e & (mbec && a & ACCESS_USER ? EPT_EFF_XU : EPT_EFF_X)) !== 0;
      else if (a & ACCESS_WRITE) ok = (e & EPT_EFF_W) !== 0;
      else ok = (e & EPT_EFF_R) !== 0;
      if (!ok) faults |= 1 << e;
    }
    t[a] = faults;
  }
  return t;
}

/** An EPT walker for an EPTP (SDM 25.6.11); refuses EPTPs that would fail VM entry. */
export function eptWalker(
  memory: FrameSource,
  eptpInput: U64Input,
  cpu: Pick<CpuFeatures, "maxPhyAddr" | "ept">,
): GuestWalker {
  const caps: EptFeatures | undefined = cpu.ept;
  if (!caps) throw new CpuStateError("the CPU model has no EPT");
  const eptp = toU64(eptpInput, "EPTP");
  const lo = lo32(eptp);
  const hi = hi32(eptp);
  const mt = lo & EPTP_MT_MASK;
  if (mt !== EPT_MT_UC && mt !== EPT_MT_WB)
    throw new CpuStateError(`EPTP memory type ${mt} is not UC (0) or WB (6)`);
  const walk = ((lo & EPTP_WALK_MASK) >>> EPTP_WALK_SHIFT) + 1;
  if (walk !== 4 && !(walk === 5 && caps.fiveLevel))
    throw new CpuStateError(
      `EPTP page-walk length ${walk} is not supported (4${caps.fiveLevel ? " or 5" : ""})`,
    );
  const ad = (lo & EPTP_AD) !== 0;
  if (ad && !caps.accessedDirty)
    throw new CpuStateError("EPTP enables accessed/dirty flags, which the CPU model lacks");
  if (lo & 0xf80) throw new CpuStateError("EPTP bits 11:7 must be zero");
  if (hi & (highAddressReserved(cpu.maxPhyAddr) | 0xfff00000))
    throw new CpuStateError(`EPTP has address bits at or above MAXPHYADDR (${cpu.maxPhyAddr})`);
  const format = eptFormat({
    levels: walk as 4 | 5,
    maxPhyAddr: cpu.maxPhyAddr,
    executeOnly: caps.executeOnly,
    mbec: caps.mbec,
    gbPages: caps.gbPages,
    accessedDirty: ad,
  });
  const w = new GuestWalker(memory, {
    format,
    permFault: eptPermissionTable(caps.mbec),
    fetchErrorBit: 0,
    pke: false,
    pks: false,
    pkru: 0,
    pkrs: 0,
    wp: true,
  });
  w.rootGfn = (hi & 0xfffff) * 0x100000 + (lo >>> 12);
  return w;
}

export interface NptOptions {
  /** 4 or 5 levels, as the host's paging mode (CR4.LA57 at VMRUN). */
  levels: 4 | 5;
  /** The host's EFER.NXE (default true). */
  nxe?: boolean;
}

/**
 * An AMD nested-paging walker rooted at nCR3 (APM 15.25.5). Nested tables use the host's
 * long-mode format, and every nested access is a user-mode access: U/S must allow it at
 * every level, and SMEP/SMAP/protection keys do not apply.
 */
export function nptWalker(
  memory: FrameSource,
  ncr3Input: U64Input,
  cpu: CpuFeatures,
  o: NptOptions,
): GuestWalker {
  const ncr3 = toU64(ncr3Input, "nCR3");
  const nxe = o.nxe ?? true;
  const role = CpuRole.from(
    {
      cr0: 0x80010001n,
      cr4: o.levels === 5 ? 0x1020n : 0x20n,
      efer: nxe ? 0xd00n : 0x500n,
      cpl: 3,
    },
    { ...cpu, la57: cpu.la57 || o.levels === 5 },
  );
  const format = x86Format({
    mode: o.levels === 5 ? "5level" : "4level",
    maxPhyAddr: cpu.maxPhyAddr,
    nxe,
    pse: true,
    pse36: false,
    gbPages: cpu.gbPages,
    amd: cpu.vendor === "amd",
  });
  const w = new GuestWalker(memory, {
    format,
    permFault: role.permFault,
    fetchErrorBit: nxe ? PFEC_I : 0,
    pke: false,
    pks: false,
    pkru: 0,
    pkrs: 0,
    wp: true,
  });
  const r = loadCr3(w, role, ncr3);
  if (!r.ok) throw new CpuStateError(r.reason.replace("CR3", "nCR3"));
  return w;
}

function hex64(hi: number, lo: number): string {
  return (hi >>> 0).toString(16) + (lo >>> 0).toString(16).padStart(8, "0");
}
