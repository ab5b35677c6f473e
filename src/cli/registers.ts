/**
 * Command-line numbers and the register state a command works with: options first,
 * then the dump's QEMU CPU note, then defaults. EFER is not in QEMU's note, so unless
 * --efer is given it is inferred (see `resolveRegisters` and docs/CLI.md).
 */

import { InvalidArgumentError } from "commander";
import { type CpuFeatures, CpuRole, cpuModel } from "../arch/cpu.js";
import { toU64 } from "../arch/u64.js";
import { CR0_PG, CR4_PAE, EFER_LMA, EFER_LME, EFER_NXE } from "../arch/x86.js";
import type { GuestDump } from "../dump/dump.js";
import { SEG_FLAGS_L } from "../dump/qemu-note.js";
import { UsageError } from "./io.js";

/** commander argument parser: a register value in hex (0x...) or decimal. */
export function parseRegister(value: string): bigint {
  try {
    return toU64(value, "value");
  } catch (e) {
    const why = (e as Error).message.replace(/^value: /, "");
    throw new InvalidArgumentError(`${why} (use 0x... for hex, or decimal)`);
  }
}

/** commander argument parser: a 32-bit value (PKRU, PKRS). */
export function parseU32(value: string): number {
  const v = parseRegister(value);
  if (v > 0xffffffffn) throw new InvalidArgumentError(`${value} does not fit in 32 bits`);
  return Number(v);
}

/** commander argument parser: a small non-negative integer. */
export function parseIndex(value: string): number {
  if (!/^[0-9]+$/.test(value)) throw new InvalidArgumentError(`"${value}" is not a non-negative integer`);
  return Number(value);
}

/** A linear address: hex, with or without 0x. */
export function parseAddress(value: string): bigint {
  const s = value.trim().replaceAll("_", "").replace(/^0x/i, "");
  if (!/^[0-9a-f]+$/i.test(s)) throw new UsageError(`"${value}" is not a hex address`);
  const v = BigInt(`0x${s}`);
  if (v >> 64n !== 0n) throw new UsageError(`address ${value} does not fit in 64 bits`);
  return v;
}

export const DEFAULT_CR0 = 0x80010033n;
export const DEFAULT_CR4 = 0x20n;
export const DEFAULT_EFER_LONG = BigInt(EFER_LME | EFER_LMA | EFER_NXE);

export type RegisterSource = "option" | "dump" | "default" | "inferred";

export interface RegisterOptions {
  cr0?: bigint;
  cr3?: bigint;
  cr4?: bigint;
  efer?: bigint;
  vcpu?: number;
  cpu: string;
}

export interface Registers {
  cr0: bigint;
  cr3: bigint;
  cr4: bigint;
  efer: bigint;
  sources: { cr0: RegisterSource; cr3: RegisterSource; cr4: RegisterSource; efer: RegisterSource };
  /** Explanations for stderr (what was assumed). */
  notes: string[];
}

/**
 * The registers for a command. Options win. Without an option, CR0/CR3/CR4 come from the
 * QEMU note of CPU `vcpu` (default 0) when the dump has notes; otherwise CR0 = 0x80010033,
 * CR4 = 0x20, and --cr3 is required. EFER (never in the note):
 *  - from a dump's note: LME (and LMA, if CR0.PG=1) when the ELF machine is x86-64 (QEMU writes EM_X86_64
 *    exactly when CPU 0 was in long mode) or the CPU's CS has L=1; NXE when CR4.PAE=1
 *    (NX is assumed enabled: every 64-bit and PAE OS kernel in common use turns it on);
 *  - otherwise: 0xd00 (LME|LMA|NXE) when CR4.PAE=1, else 0.
 */
export function resolveRegisters(o: RegisterOptions, dump: GuestDump): Registers {
  const notes: string[] = [];
  const cpus = dump.cpus;
  if (o.vcpu !== undefined && o.vcpu >= cpus.length)
    throw new UsageError(
      cpus.length === 0
        ? "--vcpu: the dump has no QEMU CPU notes"
        : `--vcpu ${o.vcpu}: the dump has ${cpus.length} CPU${cpus.length === 1 ? "" : "s"} (0..${cpus.length - 1})`,
    );
  const cpu = cpus[o.vcpu ?? 0];
  const pick = (given: bigint | undefined, fromDump: bigint | undefined, def: bigint | undefined) =>
    given !== undefined
      ? ([given, "option"] as const)
      : fromDump !== undefined
        ? ([fromDump, "dump"] as const)
        : ([def, "default"] as const);
  const [cr0, s0] = pick(o.cr0, cpu?.cr0, DEFAULT_CR0);
  const [cr4, s4] = pick(o.cr4, cpu?.cr4, DEFAULT_CR4);
  const [cr3, s3] = pick(o.cr3, cpu?.cr3, undefined);
  if (cr3 === undefined)
    throw new UsageError("--cr3 is required: the dump has no QEMU CPU notes to take it from");
  const pae = (cr4! & BigInt(CR4_PAE)) !== 0n;
  let efer: bigint;
  let se: RegisterSource;
  if (o.efer !== undefined) {
    efer = o.efer;
    se = "option";
  } else if (cpu !== undefined) {
    const l = (cpu.cs.flags & SEG_FLAGS_L) !== 0;
    const long = dump.machine === "x86_64" || l;
    const pg = (cr0! & BigInt(CR0_PG >>> 0)) !== 0n;
    efer = (long ? BigInt(EFER_LME | (pg ? EFER_LMA : 0)) : 0n) | (pae ? BigInt(EFER_NXE) : 0n);
    se = "inferred";
    const why = long
      ? dump.machine === "x86_64"
        ? "long mode: the ELF machine is x86-64"
        : "long mode: CS.L=1"
      : "not long mode: the ELF machine is i386 and CS.L=0";
    notes.push(
      `EFER is not in the dump; assuming 0x${efer.toString(16)} (${why}${pae ? "; NXE assumed on" : ""}). Pass --efer to override.`,
    );
  } else {
    efer = pae ? DEFAULT_EFER_LONG : 0n;
    se = "default";
  }
  return { cr0: cr0!, cr3, cr4: cr4!, efer, sources: { cr0: s0, cr3: s3, cr4: s4, efer: se }, notes };
}

/** The CPU model by name, as a usage error when unknown. */
export function features(name: string): CpuFeatures {
  try {
    return cpuModel(name);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/** The role for the registers (CpuStateError when a CPU would refuse them). */
export function roleFor(
  regs: Registers,
  cpu: CpuFeatures,
  extra: { cpl?: number; ac?: boolean; pkru?: number; pkrs?: number } = {},
): CpuRole {
  return CpuRole.from(
    {
      cr0: regs.cr0,
      cr4: regs.cr4,
      efer: regs.efer,
      cpl: extra.cpl ?? 0,
      rflags: extra.ac ? 1n << 18n : 0n,
      pkru: extra.pkru ?? 0,
      pkrs: extra.pkrs ?? 0,
    },
    cpu,
  );
}

/** Hex with 0x. */
export function hx(v: bigint | number): string {
  return `0x${v.toString(16)}`;
}
