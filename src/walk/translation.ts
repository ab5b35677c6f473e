/**
 * The friendly face of a walk: a plain object with bigint addresses, for API users, the
 * CLI and the explorer. Built from a `Walk` record after the fact, off the hot path.
 */

import { fromHalves } from "../arch/u64.js";
import {
  FAULT_EPT_VIOLATION,
  FAULT_GP,
  FAULT_NAMES,
  FAULT_NONE,
  FAULT_PAGE,
  REASON_NAMES,
  type Walk,
} from "./walk.js";

/** One level of a walk's path. */
export interface PathEntry {
  /** Paging level: 5 (PML5) .. 1 (PT). */
  level: number;
  /** Physical address of the entry (for a PAE PDPTE: where it was loaded from). */
  entryAddress: bigint;
  /** Value read. */
  before: bigint;
  /** Value after the accessed/dirty update. */
  after: bigint;
  /** A PAE PDPTE register rather than memory. */
  fromRegister: boolean;
  /** The table holding this entry is not in memory (`before` is meaningless). */
  missing: boolean;
}

export type FaultName = "page-fault" | "general-protection" | "ept-violation" | "ept-misconfig";

export interface WalkFault {
  kind: FaultName;
  /** Exception vector for x86 faults (14 #PF, 13 #GP). */
  vector?: number;
  /** #PF error code, or EPT exit qualification; 0 for #GP and misconfigurations. */
  errorCode: number;
  /** Why, in words: not-present, reserved-bit, protection, protection-key, non-canonical, ... */
  reason: string;
  /** Level of the entry at fault (0 for a non-canonical address). */
  level: number;
  /** The address that faulted (CR2 for #PF; the guest-physical address for EPT). */
  address: bigint;
}

export interface Translation {
  ok: boolean;
  /** The input address. */
  address: bigint;
  /** The physical address, when ok. */
  physical?: bigint;
  /** Page size in bytes, when ok. */
  pageSize?: number;
  /** Effective rights bits (X86_EFF_* / EPT_EFF_*), when ok. */
  effective?: number;
  /** Protection key of the leaf (IA-32e), when ok. */
  pkey?: number;
  fault?: WalkFault;
  path: PathEntry[];
}

/** Converts a filled `Walk` into a `Translation`. */
export function describeWalk(w: Walk): Translation {
  const path: PathEntry[] = [];
  for (let i = 0; i < w.depth; i++) {
    path.push({
      level: w.level[i],
      entryAddress: BigInt(w.entryAddr[i]),
      before: fromHalves(w.hi[i], w.lo[i]),
      after: fromHalves(w.newHi[i], w.newLo[i]),
      fromRegister: ((w.registerMask >>> i) & 1) === 1,
      missing: ((w.missingMask >>> i) & 1) === 1,
    });
  }
  const address = fromHalves(w.vaHi, w.vaLo);
  if (w.fault === FAULT_NONE)
    return {
      ok: true,
      address,
      physical: BigInt(w.address),
      pageSize: 2 ** w.pageShift,
      effective: w.effective,
      pkey: w.pkey,
      path,
    };
  const fault: WalkFault = {
    kind: FAULT_NAMES[w.fault] as FaultName,
    errorCode: w.errorCode >>> 0,
    reason: REASON_NAMES[w.reason],
    level: w.faultLevel,
    address,
  };
  if (w.fault === FAULT_PAGE) fault.vector = 14;
  else if (w.fault === FAULT_GP) fault.vector = 13;
  else if (w.fault !== FAULT_EPT_VIOLATION) fault.errorCode = 0;
  return { ok: false, address, fault, path };
}
