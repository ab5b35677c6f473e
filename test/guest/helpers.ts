/**
 * Guest OS test helpers: a TDP VM with guest RAM in one memslot, and a booted `GuestOs`.
 */

import { expect } from "vitest";
import type { GuestPagingMode } from "../../src/guest/layout.js";
import { GuestOs, type GuestOsOptions, type MapResult, type PidResult } from "../../src/guest/os.js";
import { Vm } from "../../src/vm/vm.js";

export const MODES: GuestPagingMode[] = ["32bit", "pae", "4level", "5level"];

export interface HostKind {
  name: string;
  cpu: string;
  tdp: { format?: "ept" | "npt"; levels?: 4 | 5 };
}

export const EPT: HostKind = { name: "EPT", cpu: "intel-sapphirerapids", tdp: {} };
export const NPT: HostKind = { name: "NPT", cpu: "amd-zen4", tdp: { format: "npt" } };

export interface Booted {
  vm: Vm;
  os: GuestOs;
}

/** A VM with `ramMiB` of guest RAM at GPA 0 (2 MiB host pages) and a booted guest. */
export function bootGuest(
  mode: GuestPagingMode,
  o: Partial<GuestOsOptions> & { host?: HostKind; ramMiB?: number } = {},
): Booted {
  const host = o.host ?? EPT;
  const ramMiB = o.ramMiB ?? 32;
  const vm = new Vm({ cpu: host.cpu, hostMemory: (ramMiB + 32) << 20, tdp: host.tdp });
  vm.addMemslot({ id: 0, baseGfn: 0, pages: ramMiB * 256, hvaPage: 0x100000, hostHugePages: 9 });
  const os = new GuestOs(vm, { ...o, mode });
  return { vm, os };
}

export function pid(r: PidResult): number {
  if (!r.ok) throw new Error(`expected a pid, got ${r.error}`);
  return r.pid;
}

export function addr(r: MapResult): bigint {
  if (!r.ok) throw new Error(`expected an address, got ${r.error}`);
  return r.va;
}

/** The VM's MMU and TLB audit, the guest's self-audit. */
export function expectSound({ vm, os }: Booted): void {
  expect(vm.check()).toEqual([]);
  expect(os.audit()).toEqual([]);
}

/** After every process exited: the allocator is back at its post-boot counts. */
export function expectBalanced({ vm, os }: Booted): void {
  expect(os.pids).toEqual([]);
  expect(os.memory()).toEqual(os.bootMemory);
  expectSound({ vm, os });
}
