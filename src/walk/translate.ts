/**
 * One-call translation for code that is not on a hot path (tools, tests, the CLI):
 * registers in, a `Translation` out.
 */

import type { AccessKind } from "../arch/access.js";
import { type CpuFeatures, type CpuRegisters, CpuRole, cpuModel, DEFAULT_CPU_MODEL } from "../arch/cpu.js";
import { hi32, lo32, toU64, type U64Input } from "../arch/u64.js";
import type { FrameSource } from "../mem/frame-source.js";
import { cpuWalker } from "./contexts.js";
import { describeWalk, type Translation } from "./translation.js";
import { Walk } from "./walk.js";

/** Register state including CR3. */
export interface CpuState extends CpuRegisters {
  /** CR3 as software writes it (PCID in bits 11:0 under CR4.PCIDE; bit 63 no-flush). */
  cr3: U64Input;
}

export interface TranslateOptions {
  /** CPU model name or features (default "intel-sapphirerapids"). */
  cpu?: string | CpuFeatures;
  /** Access kind (default "read"). */
  access?: AccessKind;
  /** An implicit supervisor-mode access (descriptor-table reference). */
  implicit?: boolean;
  /** Set accessed/dirty flags as the processor would (default true); false leaves memory untouched. */
  setAccessedDirty?: boolean;
}

/**
 * Translates one linear address.
 *
 * @example
 * ```ts
 * const t = translate(physical, { cr0: 0x80010001n, cr4: 0x20n, efer: 0x500n, cr3: 0x1000n }, 0x401000n);
 * if (t.ok) console.log(t.physical?.toString(16), t.pageSize);
 * else console.log(t.fault?.kind, t.fault?.errorCode);
 * ```
 */
export function translate(
  memory: FrameSource,
  state: CpuState,
  vaIn: U64Input,
  o: TranslateOptions = {},
): Translation {
  const features = typeof o.cpu === "object" ? o.cpu : cpuModel(o.cpu ?? DEFAULT_CPU_MODEL);
  const role = CpuRole.from(state, features);
  const va = toU64(vaIn, "linear address");
  const access = role.accessFor(o.access ?? "read", o.implicit ?? false);
  if (role.mode === "none") {
    if (va >> 32n !== 0n)
      throw new RangeError(`linear address 0x${va.toString(16)} exceeds 32 bits with paging off`);
    return { ok: true, address: va, physical: va, pageSize: 4096, path: [] };
  }
  if ((role.mode === "32bit" || role.mode === "pae") && va >> 32n !== 0n)
    throw new RangeError(`linear address 0x${va.toString(16)} exceeds 32 bits in ${role.mode} paging`);
  const walker = cpuWalker(memory, role, state.cr3);
  const w = new Walk();
  if (o.setAccessedDirty ?? true) walker.walk(hi32(va), lo32(va), access, w);
  else walker.translate(hi32(va), lo32(va), access, w);
  return describeWalk(w);
}
