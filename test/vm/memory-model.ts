/**
 * The reference side of the model-based VM tests (test/vm/tdp-model.test.ts,
 * test/mmu/shadow-ops-model.test.ts): host memory byte by byte and the one MMIO device, as the
 * hardware plus VMM should leave them. Each test decides which guest-physical access lands
 * where; these hold the data memslots' layout and the bytes, and compare them with the VM's.
 */

import { expect } from "vitest";
import type { HostAddressSpace } from "../../src/mem/host-address-space.js";
import type { HostMemory } from "../../src/mem/host-memory.js";
import type { MmioDevice } from "../../src/vm/mmio.js";
import { hex } from "./guest.js";

export const DEVICE_GPA = 0xc00000;
export const DEVICE_SIZE = 0x4000;

/** A data memslot of the model tests: its size, host pages, and the GFN bases it moves between. */
export interface SlotDef {
  id: number;
  pages: number;
  hva: number;
  bases: number[];
  huge?: 9;
}

export const SLOTS: SlotDef[] = [
  { id: 1, pages: 16, hva: 0x20000, bases: [0x400, 0x800, 0xc00, 0x2000, 0x2008, 0x2010] },
  { id: 2, pages: 16, hva: 0x21000, bases: [0x800, 0x400, 0xc00, 0x2000, 0x2010] },
  { id: 3, pages: 512, hva: 0x40000, bases: [0x1000, 0x1200, 0x1208, 0x1400], huge: 9 },
];

/** The first home of slot 3, where the guest's large pages point. */
export const HUGE_GFN = 0x1000;

/** GFNs the guest PTEs point at: slot homes, move targets, the device, nothing at all. */
export const TARGETS = [
  0x400, 0x401, 0x403, 0x40f, 0x800, 0x801, 0x80f, 0xc00, 0xc01, 0xc03, 0x2000, 0x2001, 0x200f, 0x2010,
  0x2011, 0x1000, 0x1001, 0x1100, 0x11ff, 0x1200, 0x1201, 0x1208, 0x1400, 0x1401, 0x3000,
];

/** What the device returns for a read of `size` bytes at `off`: distinct per offset and size. */
const deviceValue = (off: number, size: number) =>
  BigInt.asUintN(size * 8, BigInt(off) * 0x0101010101n + 0x5an);

/** `v` as `n` little-endian bytes. */
export function leBytes(v: bigint, n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++, v >>= 8n) b[i] = Number(v & 0xffn);
  return b;
}

/** Little-endian bytes as a value. */
export function leValue(b: Uint8Array): bigint {
  let v = 0n;
  for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
  return v;
}

/** Host virtual pages as they should be (absent: zeros), and the ones changed since the last check. */
export class HostPagesModel {
  readonly pages = new Map<number, Uint8Array>();
  readonly touched = new Set<number>();

  read(hva: number, off: number, bytes: Uint8Array, at: number, n: number): void {
    const p = this.pages.get(hva);
    for (let i = 0; i < n; i++) bytes[at + i] = p ? p[off + i] : 0;
  }

  write(hva: number, off: number, bytes: Uint8Array, at: number, n: number): void {
    let p = this.pages.get(hva);
    if (!p) {
      p = new Uint8Array(4096);
      this.pages.set(hva, p);
    }
    p.set(bytes.subarray(at, at + n), off);
    this.touched.add(hva);
  }

  /** The page was discarded: it reads as zeros from now on. */
  discard(hva: number): void {
    this.pages.delete(hva);
    this.touched.add(hva);
  }

  /** Fails the test where the VM's host page `hva` differs from the model. */
  compare(vm: { hostSpace: HostAddressSpace; host: HostMemory }, hva: number): void {
    const want = this.pages.get(hva);
    const hfn = vm.hostSpace.peek(hva);
    if (hfn < 0) {
      if (want?.some((b) => b !== 0)) expect.fail(`host page ${hex(hva)} lost its contents (not populated)`);
      return;
    }
    const words = vm.host.frameWords(hfn)!;
    const got = new Uint8Array(words.buffer, words.byteOffset + vm.host.frameBase * 4, 4096);
    for (let i = 0; i < 4096; i++)
      if (got[i] !== (want ? want[i] : 0))
        expect.fail(`host page ${hex(hva)} byte ${hex(i)}: ${hex(got[i])}, model ${hex(want ? want[i] : 0)}`);
  }
}

/**
 * The device at DEVICE_GPA and what reaches it: `device` is given to `Vm.addMmio` and logs
 * what the VM delivers (`log`); `access` is the model's account of a guest-physical access no
 * memslot takes (`expected`, and `unclaimed` for those outside every device).
 */
export class DeviceModel {
  readonly log: string[] = [];
  readonly expected: string[] = [];
  unclaimed = 0;
  readonly device: MmioDevice = {
    read: (off, n) => {
      this.log.push(`R ${hex(off)}/${n}`);
      return deviceValue(off, n);
    },
    write: (off, n, v) => void this.log.push(`W ${hex(off)}/${n}=${hex(v)}`),
  };

  /** Reads (fills `bytes`) or writes guest-physical [gpa, +n) as MMIO. */
  access(gpa: number, bytes: Uint8Array, at: number, n: number, write: boolean): void {
    let v = write ? leValue(bytes.subarray(at, at + n)) : 0n;
    if (gpa >= DEVICE_GPA && gpa < DEVICE_GPA + DEVICE_SIZE) {
      const off = gpa - DEVICE_GPA;
      if (write) this.expected.push(`W ${hex(off)}/${n}=${hex(v)}`);
      else {
        this.expected.push(`R ${hex(off)}/${n}`);
        v = deviceValue(off, n);
      }
    } else {
      this.unclaimed++;
      v = write ? 0n : (1n << BigInt(n * 8)) - 1n;
    }
    if (!write) bytes.set(leBytes(v, n), at);
  }
}
