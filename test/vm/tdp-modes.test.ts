/**
 * Every guest paging mode on every host TDP format: data comes back as written, guest
 * faults come back as values with the architectural error code, and an uncached 2-D walk
 * makes exactly (guest reads) + (guest reads × host levels) + host levels references.
 */

import { describe, expect, it } from "vitest";
import { PTE_PS } from "../../src/arch/x86.js";
import { x86Leaf } from "../../src/walk/builder.js";
import { GUEST_TABLE_READS, type GuestMode, HOSTS, hex, MODE_REGS, makeGuest } from "./guest.js";

interface PageCase {
  size: number;
  va: bigint;
  gpa: number;
  /** Guest table levels the walk skips below the leaf (0 for 4 KiB, 1 for 2/4 MiB, 2 for 1 GiB). */
  skipped: number;
}

const K4: PageCase = { size: 4096, va: 0x400000n, gpa: 0x200000, skipped: 0 };
const M2: PageCase = { size: 2 << 20, va: 0x800000n, gpa: 0x600000, skipped: 1 };
const M4: PageCase = { size: 4 << 20, va: 0xc00000n, gpa: 0x800000, skipped: 1 };
const G1: PageCase = { size: 1 << 30, va: 0x80000000n, gpa: 0x40000000, skipped: 2 };

const PAGES: Record<GuestMode, PageCase[]> = {
  "32bit": [K4, M4],
  pae: [K4, M2],
  "4level": [K4, M2, G1],
  "5level": [K4, M2, G1],
};

const MODES: GuestMode[] = ["32bit", "pae", "4level", "5level"];

/** A guest of `mode` on `host`, its pages mapped, every backing memslot in place. */
function setup(mode: GuestMode, hostIndex: number) {
  const host = HOSTS[hostIndex];
  const g = makeGuest(mode, { cpu: host.cpu, tdp: host.tdp }, (t, vm) => {
    // Data for the 2 MiB / 4 MiB pages (gfn 0x400..0xbff) and for the 1 GiB page (first 4 MiB).
    vm.addMemslot({ id: 1, baseGfn: 0x400, pages: 0x800, hvaPage: 0x20000 });
    vm.addMemslot({ id: 2, baseGfn: 0x40000, pages: 0x400, hvaPage: 0x40000 });
    for (const p of PAGES[mode]) t.map(p.va, p.gpa, p.size, x86Leaf());
    t.map(0x401000n, 0x201000, 4096, x86Leaf({ writable: false })); // read-only
    if (mode !== "32bit") t.map(0x402000n, 0x202000, 4096, x86Leaf({ noExecute: true }));
    t.map(0x403000n, 0x203000, 4096, x86Leaf({ user: true }));
  });
  return { ...g, host };
}

describe.each(MODES)("%s guest", (mode) => {
  describe.each(HOSTS.map((h, i) => [h.name, i] as const))("on %s", (_name, hostIndex) => {
    it.each(PAGES[mode].map((p) => [p.size, p] as const))(
      "%i-byte pages: data round-trips and an uncached walk makes the exact reference count",
      (_size, p) => {
        const { vm, vcpu, host } = setup(mode, hostIndex);
        // Somewhere inside the page, away from its start (offset within a huge page too).
        const off = p.size > 4096 ? 0x12345 & (p.size - 1) & ~7 : 0x18;
        const va = p.va + BigInt(off);
        const value = 0x0123456789abcdefn;
        expect(vcpu.store(va, 8, value)).toEqual({ ok: true, value });
        expect(vcpu.load(va, 8)).toEqual({ ok: true, value });
        expect(vcpu.load(va + 2n, 2)).toEqual({ ok: true, value: 0x89abn });
        expect(vcpu.fetch(va, 4)).toEqual({ ok: true, value: 0x89abcdefn });
        expect(vm.physical.read(p.gpa + off, 8)).toEqual({ status: "ok", value });
        // A write from the VMM side is seen by the guest (same host frame).
        vm.physical.write(p.gpa + off + 8, 4, 0xfeedf00d);
        expect(vcpu.load(va + 8n, 4)).toEqual({ ok: true, value: 0xfeedf00dn });
        expect(vm.check()).toEqual([]);

        // A/D are set by now, EPT/NPT is built: an uncached walk makes the exact count.
        for (const kind of ["load", "store", "fetch"] as const) {
          vcpu.tlb.flushAll();
          const walks = vcpu.stats.completedWalks;
          const refs = vcpu.stats.completedWalkRefs;
          const exits = vcpu.exits.eptViolation + vcpu.exits.npf;
          const r = kind === "store" ? vcpu.store(va, 1, 0xef) : vcpu[kind](va, 1);
          expect(r).toEqual({ ok: true, value: 0xefn });
          const guestReads = GUEST_TABLE_READS[mode] - p.skipped;
          expect(vcpu.stats.completedWalks - walks).toBe(1);
          expect(vcpu.stats.completedWalkRefs - refs, kind).toBe(
            guestReads + guestReads * host.levels + host.levels,
          );
          expect(vcpu.exits.eptViolation + vcpu.exits.npf).toBe(exits);
        }
        if (mode === "4level" && hostIndex === 0 && p.size === 4096) {
          vcpu.tlb.flushAll();
          const refs = vcpu.stats.completedWalkRefs;
          vcpu.load(va, 1);
          expect(vcpu.stats.completedWalkRefs - refs).toBe(24);
        }
        if (mode === "5level" && host.levels === 5 && p.size === 4096) {
          vcpu.tlb.flushAll();
          const refs = vcpu.stats.completedWalkRefs;
          vcpu.load(va, 1);
          expect(vcpu.stats.completedWalkRefs - refs).toBe(35);
        }
        expect(vm.check()).toEqual([]);
        vm.destroy();
        expect(vm.host.framesInUse).toBe(0);
      },
    );

    it("guest faults come back as values with the architectural error code", () => {
      const { vm, vcpu, tables, regs } = setup(mode, hostIndex);
      const nxe = mode !== "32bit";
      const pf = (errorCode: number, address: bigint) => ({
        ok: false,
        fault: { vector: 14, errorCode, address },
      });
      // Not present: read, write, fetch (I/D reported only with EFER.NXE).
      expect(vcpu.load(0x1400000n, 4)).toEqual(pf(0, 0x1400000n));
      expect(vcpu.store(0x1400008n, 4, 1)).toEqual(pf(2, 0x1400008n));
      expect(vcpu.fetch(0x1400010n, 4)).toEqual(pf(nxe ? 0x10 : 0, 0x1400010n));
      // Write to a read-only page (CR0.WP=1): P|W; the memory is untouched.
      vm.physical.write(0x201000, 4, 0x5a5a5a5a);
      expect(vcpu.store(0x401000n, 4, 7)).toEqual(pf(3, 0x401000n));
      expect(vcpu.load(0x401000n, 4)).toEqual({ ok: true, value: 0x5a5a5a5an });
      // Fetch from an execute-disabled page: P|I; reads still work.
      if (nxe) {
        expect(vcpu.fetch(0x402000n, 1)).toEqual(pf(0x11, 0x402000n));
        expect(vcpu.load(0x402000n, 1)).toEqual({ ok: true, value: 0n });
      }
      // User-mode access to a supervisor page: P|U; a user page works.
      vcpu.setState({ ...regs, cpl: 3 });
      expect(vcpu.load(0x400000n, 4)).toEqual(pf(5, 0x400000n));
      expect(vcpu.store(0x403000n, 4, 9)).toEqual({ ok: true, value: 9n });
      vcpu.setState(regs);
      // Reserved bit: PS in the top-level entry of a long mode (RSVD|P).
      if (mode === "4level" || mode === "5level") {
        const va = mode === "4level" ? 0x8000000000n : 0x1000000000000n;
        tables.map(va, 0x204000, 4096, x86Leaf());
        const top = tables.format.levels;
        const e = tables.entryAddress(va, top, false);
        const [lo, hi] = tables.read(e);
        tables.write(e, lo | PTE_PS, hi);
        expect(vcpu.load(va, 4)).toEqual(pf(9, va));
        // Non-canonical: #GP(0).
        const nc = mode === "4level" ? 0x0000800000000000n : 0x0100000000000000n;
        expect(vcpu.load(nc, 1)).toEqual({ ok: false, fault: { vector: 13, errorCode: 0, address: nc } });
      }
      // PSE-36/PAE reserved bit in a PDE (bit 21 of a 4 MiB PDE / bit 51 is legal at 52 bits).
      if (mode === "32bit") {
        const e = tables.entryAddress(0xc00000n, 2, false);
        const [lo] = tables.read(e);
        tables.write(e, lo | (1 << 21), 0);
        vcpu.tlb.flushAll();
        expect(vcpu.load(0xc00000n, 1)).toEqual(pf(9, 0xc00000n));
      }
      expect(vcpu.stats.guestFaults).toBeGreaterThan(0);
      expect(vm.check()).toEqual([]);
      expect(hex(vm.mmio.unclaimed)).toBe("0x0");
    });
  });
});

describe("guest modes: register-level refusals", () => {
  it("the regs helper really selects each mode", () => {
    for (const mode of MODES) {
      const { vcpu } = makeGuest(mode);
      expect(vcpu.cpuRole.mode).toBe(mode);
      expect(MODE_REGS[mode].cr0 & 0x80000000n).toBe(0x80000000n);
    }
  });
});
