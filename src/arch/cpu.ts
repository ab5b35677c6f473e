/**
 * The CPU model: what a processor supports (`CpuFeatures`) and what its control
 * registers say now (`CpuRole`). A role is derived once per register change and then
 * drives every walk: the paging format, the permission table, protection keys and
 * the #PF I/D rule. Register combinations a real CPU refuses are refused here with
 * an error that names the rule.
 */

import {
  ACCESS_AC,
  ACCESS_FETCH,
  ACCESS_IMPLICIT,
  ACCESS_USER,
  ACCESS_WRITE,
  type AccessKind,
  accessKindBits,
  X86_EFF_U,
  X86_EFF_W,
  X86_EFF_X,
} from "./access.js";
import { type PagingFormat, type X86PagingMode, x86Format } from "./format.js";
import { toU64, type U64Input } from "./u64.js";
import {
  CR0_CD,
  CR0_NW,
  CR0_PE,
  CR0_PG,
  CR0_WP,
  CR4_LA57,
  CR4_PAE,
  CR4_PCIDE,
  CR4_PGE,
  CR4_PKE,
  CR4_PKS,
  CR4_PSE,
  CR4_SMAP,
  CR4_SMEP,
  EFER_LMA,
  EFER_LME,
  EFER_NXE,
  PFEC_I,
  RFLAGS_AC,
} from "./x86.js";

/** What a processor model supports (CPUID facts). */
export interface CpuFeatures {
  /** Decides vendor-specific reserved bits (AMD: bit 8 of upper-level non-leaf entries). */
  vendor: "intel" | "amd";
  /** MAXPHYADDR (CPUID 0x80000008 EAX[7:0]), 32..52. */
  maxPhyAddr: number;
  nx: boolean;
  pse36: boolean;
  /** 1 GiB pages (CPUID 0x80000001 EDX[26]). */
  gbPages: boolean;
  la57: boolean;
  pcid: boolean;
  smep: boolean;
  smap: boolean;
  /** Protection keys for user pages (CR4.PKE, PKRU). */
  pku: boolean;
  /** Protection keys for supervisor pages (CR4.PKS, IA32_PKRS). */
  pks: boolean;
  /** EPT capabilities (IA32_VMX_EPT_VPID_CAP); absent on CPUs without VMX/EPT. */
  ept?: EptFeatures;
}

export interface EptFeatures {
  executeOnly: boolean;
  fiveLevel: boolean;
  gbPages: boolean;
  accessedDirty: boolean;
  /** Mode-based execute control. */
  mbec: boolean;
}

/** What every model here has (a modern x86-64 core); the models below say how they differ. */
const MODERN_X86 = {
  nx: true,
  pse36: true,
  gbPages: true,
  pcid: true,
  smep: true,
  smap: true,
  pku: true,
} as const;

/**
 * Named processor models. `qemu-max` and `bochs-tigerlake` are the conformance oracles
 * (../shared/EMULATORS.md; QEMU 7.2's TCG `-cpu max` reports PKS in CPUID.(7,0):ECX[31] and is
 * an AMD-vendor CPU); `intel-sapphirerapids` and `amd-zen4` are typical hosts.
 */
export const CPU_MODELS: Readonly<Record<string, Readonly<CpuFeatures>>> = Object.freeze({
  "qemu-max": { ...MODERN_X86, vendor: "amd", maxPhyAddr: 40, la57: true, pks: true },
  "bochs-tigerlake": {
    ...MODERN_X86,
    vendor: "intel",
    maxPhyAddr: 40,
    la57: false,
    pks: false,
    ept: { executeOnly: true, fiveLevel: false, gbPages: true, accessedDirty: true, mbec: false },
  },
  "intel-sapphirerapids": {
    ...MODERN_X86,
    vendor: "intel",
    maxPhyAddr: 52,
    la57: true,
    pks: true,
    ept: { executeOnly: true, fiveLevel: true, gbPages: true, accessedDirty: true, mbec: true },
  },
  "amd-zen4": { ...MODERN_X86, vendor: "amd", maxPhyAddr: 52, la57: true, pks: false },
});

/** The model used when none is named. */
export const DEFAULT_CPU_MODEL = "intel-sapphirerapids";

/** Looks a model up by name; throws a RangeError listing the known names. */
export function cpuModel(name: string): CpuFeatures {
  const m = CPU_MODELS[name];
  if (!m) throw new RangeError(`unknown CPU model "${name}" (known: ${Object.keys(CPU_MODELS).join(", ")})`);
  return m;
}

/** Register state as software sees it. 64-bit registers accept bigint, safe integers or hex strings. */
export interface CpuRegisters {
  cr0: U64Input;
  cr4: U64Input;
  efer?: U64Input;
  /** Only EFLAGS.AC (bit 18) matters here. */
  rflags?: U64Input;
  /** Current privilege level, 0..3; 3 is user mode. Default 0. */
  cpl?: number;
  /** PKRU (protection keys for user pages). Default 0. */
  pkru?: number;
  /** IA32_PKRS (protection keys for supervisor pages). Default 0. */
  pkrs?: number;
}

export type PagingMode = "none" | X86PagingMode;

/** Thrown for register states a real CPU refuses (#GP on the MOV that would create them). */
export class CpuStateError extends Error {
  override name = "CpuStateError";
}

/**
 * The CPU state that decides translations, derived from the control registers.
 *
 * @example
 * ```ts
 * const role = CpuRole.from({ cr0: 0x80010033n, cr4: 0x3006f0n, efer: 0xd01n }, cpuModel("qemu-max"));
 * role.mode; // "4level"
 * ```
 */
export class CpuRole {
  readonly mode: PagingMode;
  readonly features: Readonly<CpuFeatures>;
  readonly wp: boolean;
  readonly pse: boolean;
  readonly pge: boolean;
  readonly pcide: boolean;
  readonly smep: boolean;
  readonly smap: boolean;
  /** Protection keys for user pages are in force (CR4.PKE in IA-32e mode). */
  readonly pke: boolean;
  /** Protection keys for supervisor pages are in force (CR4.PKS in IA-32e mode). */
  readonly pks: boolean;
  readonly nxe: boolean;
  readonly cpl: number;
  readonly ac: boolean;
  readonly pkru: number;
  readonly pkrs: number;
  /** The guest page-table format, or null when paging is off. */
  readonly format: PagingFormat | null;
  /** [access & 0x1f] → bit e set when effective rights e (X86_EFF_*) fault. */
  readonly permFault: Uint16Array;
  /** PFEC_I when instruction fetches report I/D in the #PF error code (SDM 4.7), else 0. */
  readonly fetchErrorBit: number;

  private constructor(
    mode: PagingMode,
    features: Readonly<CpuFeatures>,
    cr0: number,
    cr4: number,
    efer: number,
    cpl: number,
    ac: boolean,
    pkru: number,
    pkrs: number,
  ) {
    const long = mode === "4level" || mode === "5level";
    this.mode = mode;
    this.features = features;
    this.wp = (cr0 & CR0_WP) !== 0;
    this.pse = (cr4 & CR4_PSE) !== 0;
    this.pge = (cr4 & CR4_PGE) !== 0;
    this.pcide = (cr4 & CR4_PCIDE) !== 0;
    this.smep = (cr4 & CR4_SMEP) !== 0;
    this.smap = (cr4 & CR4_SMAP) !== 0;
    // Protection keys exist only in IA-32e paging (SDM 4.6.2).
    this.pke = long && (cr4 & CR4_PKE) !== 0;
    this.pks = long && (cr4 & CR4_PKS) !== 0;
    // EFER.NXE has no effect on 32-bit paging, whose entries have no XD bit.
    this.nxe = mode !== "32bit" && (efer & EFER_NXE) !== 0;
    this.cpl = cpl;
    this.ac = ac;
    this.pkru = pkru >>> 0;
    this.pkrs = pkrs >>> 0;
    this.format =
      mode === "none"
        ? null
        : x86Format({
            mode,
            maxPhyAddr: features.maxPhyAddr,
            nxe: this.nxe,
            pse: this.pse,
            pse36: features.pse36,
            gbPages: features.gbPages,
            amd: features.vendor === "amd",
          });
    this.permFault = x86PermissionTable(this.wp, this.smep, this.smap);
    // I/D is reported when SMEP=1, or with PAE/IA-32e paging and EFER.NXE=1 (SDM 4.7).
    this.fetchErrorBit = this.smep || this.nxe ? PFEC_I : 0;
    Object.freeze(this);
  }

  /** Derives the role from register values, refusing states a CPU would refuse with #GP. */
  static from(regs: CpuRegisters, features: Readonly<CpuFeatures>): CpuRole {
    const cr0 = low32(regs.cr0, "CR0");
    const cr4 = low32(regs.cr4, "CR4");
    const efer = regs.efer === undefined ? 0 : low32(regs.efer, "EFER");
    const rflags = regs.rflags === undefined ? 0 : low32(regs.rflags, "RFLAGS");
    const cpl = regs.cpl ?? 0;
    if (!Number.isInteger(cpl) || cpl < 0 || cpl > 3) throw new RangeError(`CPL ${cpl} is not 0..3`);
    const pkru = checkU32(regs.pkru ?? 0, "PKRU");
    const pkrs = checkU32(regs.pkrs ?? 0, "PKRS");

    const fail = (msg: string): never => {
      throw new CpuStateError(msg);
    };
    const pg = (cr0 & CR0_PG) !== 0;
    if (pg && !(cr0 & CR0_PE)) fail("CR0.PG=1 requires CR0.PE=1 (SDM 2.5)");
    if (cr0 & CR0_NW && !(cr0 & CR0_CD)) fail("CR0.NW=1 with CR0.CD=0 is invalid (SDM 2.5)");
    const needs = (bit: number, has: boolean, what: string) => {
      if (cr4 & bit && !has) fail(`CR4.${what}=1 but the CPU model does not support it`);
    };
    needs(CR4_SMEP, features.smep, "SMEP");
    needs(CR4_SMAP, features.smap, "SMAP");
    needs(CR4_PKE, features.pku, "PKE");
    needs(CR4_PKS, features.pks, "PKS");
    needs(CR4_LA57, features.la57, "LA57");
    needs(CR4_PCIDE, features.pcid, "PCIDE");
    if (efer & EFER_NXE && !features.nx) fail("EFER.NXE=1 but the CPU model has no NX");

    const lme = (efer & EFER_LME) !== 0;
    if (efer & EFER_LMA && !(lme && pg)) fail("EFER.LMA=1 requires EFER.LME=1 and CR0.PG=1");
    const lma = lme && pg; // the processor sets LMA when paging is enabled with LME=1
    const pae = (cr4 & CR4_PAE) !== 0;
    if (lma && !pae) fail("IA-32e mode (EFER.LME=1, CR0.PG=1) requires CR4.PAE=1 (SDM 9.8.5)");
    if (cr4 & CR4_PCIDE && !lma) fail("CR4.PCIDE=1 is allowed only in IA-32e mode (SDM 4.10.1)");

    let mode: PagingMode;
    if (!pg) mode = "none";
    else if (lma) mode = cr4 & CR4_LA57 ? "5level" : "4level";
    else mode = pae ? "pae" : "32bit";
    return new CpuRole(mode, features, cr0, cr4, efer, cpl, (rflags & RFLAGS_AC) !== 0, pkru, pkrs);
  }

  /**
   * The access descriptor (ACCESS_* bits) for an explicit access of `kind` at this role's
   * CPL and EFLAGS.AC; `implicit` marks an implicit supervisor-mode access (descriptor tables).
   */
  accessFor(kind: AccessKind, implicit = false): number {
    let a = accessKindBits(kind);
    if (implicit) a |= ACCESS_IMPLICIT;
    else if (this.cpl === 3) a |= ACCESS_USER;
    if (this.ac) a |= ACCESS_AC;
    return a;
  }
}

function low32(v: U64Input, what: string): number {
  const b = toU64(v, what);
  if (b >> 32n !== 0n) throw new CpuStateError(`${what} bits 63:32 must be zero (got ${b.toString(16)})`);
  return Number(b) | 0;
}

function checkU32(v: number, what: string): number {
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff)
    throw new RangeError(`${what} ${v} is not a 32-bit value`);
  return v;
}

/**
 * x86 access rights (SDM 4.6.1): for each access descriptor, which combinations of
 * effective W/U/X fault. Protection keys are checked separately (they depend on the leaf).
 */
function x86PermissionTable(wp: boolean, smep: boolean, smap: boolean): Uint16Array {
  const t = new Uint16Array(32);
  for (let a = 0; a < 32; a++) {
    const write = (a & ACCESS_WRITE) !== 0;
    const fetch = (a & ACCESS_FETCH) !== 0;
    const implicit = (a & ACCESS_IMPLICIT) !== 0;
    const user = (a & ACCESS_USER) !== 0 && !implicit;
    const ac = (a & ACCESS_AC) !== 0;
    let faults = 0;
    for (let e = 0; e < 8; e++) {
      const w = (e & X86_EFF_W) !== 0;
      const u = (e & X86_EFF_U) !== 0;
      const x = (e & X86_EFF_X) !== 0;
      let fault: boolean;
      if (user) fault = !u || (write && !w) || (fetch && !x);
      else if (fetch) fault = !x || (u && smep);
      // SMAP blocks supervisor data accesses to user pages unless explicit with AC=1.
      else fault = (u && smap && (implicit || !ac)) || (write && !w && wp);
      if (fault) faults |= 1 << e;
    }
    t[a] = faults;
  }
  return t;
}
