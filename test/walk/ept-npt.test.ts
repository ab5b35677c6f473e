import { describe, expect, it } from "vitest";
import {
  ACCESS_FETCH,
  ACCESS_GUEST_TABLE,
  ACCESS_LINEAR_VALID,
  ACCESS_USER,
  ACCESS_WRITE,
  type CpuFeatures,
  CpuStateError,
  cpuModel,
  EPTQ_EXECUTABLE,
  EPTQ_FETCH,
  EPTQ_LINEAR_TRANSLATION,
  EPTQ_LINEAR_VALID,
  EPTQ_READ,
  EPTQ_READABLE,
  EPTQ_USER_EXECUTABLE,
  EPTQ_WRITABLE,
  EPTQ_WRITE,
  eptFormat,
  eptLeaf,
  eptWalker,
  FAULT_EPT_MISCONFIG,
  FAULT_EPT_VIOLATION,
  FAULT_PAGE,
  HostMemory,
  nptWalker,
  PageTableBuilder,
  REASON_BAD_EPT_BITS,
  REASON_RESERVED,
  Walk,
  x86Format,
  x86Leaf,
} from "../../src/index.js";

const sapphire = cpuModel("intel-sapphirerapids");

/** EPT tables in host memory; returns the builder, a walker factory and a Walk. */
function ept(caps: Partial<NonNullable<CpuFeatures["ept"]>> = {}, eptpFlags = 0x1e /* WB, 4-level */) {
  const host = new HostMemory(8 << 20);
  const cpu: CpuFeatures = { ...sapphire, maxPhyAddr: 46, ept: { ...sapphire.ept!, ...caps } };
  const walkLen = ((eptpFlags >> 3) & 7) + 1;
  const format = eptFormat({
    levels: walkLen as 4 | 5,
    maxPhyAddr: 46,
    executeOnly: cpu.ept!.executeOnly,
    mbec: cpu.ept!.mbec,
    gbPages: cpu.ept!.gbPages,
    accessedDirty: (eptpFlags & 0x40) !== 0,
  });
  const b = new PageTableBuilder(host, format, () => host.alloc());
  const walker = () => eptWalker(host, b.cr3 | BigInt(eptpFlags), cpu);
  return { host, b, walker, w: new Walk(), cpu };
}

describe("EPT", () => {
  it("refuses EPTPs that fail VM entry", () => {
    const { host, cpu } = ept();
    expect(() => eptWalker(host, 0x1000n | 0x1en | 0n, cpu)).not.toThrow();
    expect(() => eptWalker(host, 0x1000n | 0x18n | 2n, cpu)).toThrow(/memory type/);
    expect(() => eptWalker(host, 0x1000n | 0x2en, cpu)).toThrow(/walk length 6/);
    const bochs = cpuModel("bochs-tigerlake");
    expect(() => eptWalker(host, 0x1000n | 0x26n, bochs)).toThrow(CpuStateError); // 5-level unsupported
    expect(() => eptWalker(host, 0x1000n | 0x1en | 0x80n, cpu)).toThrow(/11:7/);
    expect(() => eptWalker(host, (1n << 46n) | 0x1en, cpu)).toThrow(/MAXPHYADDR/);
    expect(() => eptWalker(host, 0x1000n | 0x1en, cpuModel("qemu-max"))).toThrow(/no EPT/);
  });

  it("translates 4 KiB, 2 MiB and 1 GiB pages", () => {
    const e = ept();
    e.b.map(0x1000n, 0x50000, 4096, eptLeaf());
    e.b.map(0x200000n, 0x400000, 2 << 20, eptLeaf());
    e.b.map(0x40000000n, 0x80000000, 1 << 30, eptLeaf());
    const w = e.walker();
    expect(w.walk(0, 0x1234, 0, e.w) && e.w.address).toBe(0x50234);
    expect(w.walk(0, 0x212345, 0, e.w) && e.w.address).toBe(0x412345);
    expect(w.walk(0, 0x52345678, 0, e.w) && e.w.address).toBe(0x92345678);
  });

  it("violations carry the access and the AND of R/W/X in the exit qualification", () => {
    const e = ept();
    e.b.map(0x1000n, 0x50000, 4096, eptLeaf({ write: false }));
    const w = e.walker();
    expect(w.walk(0, 0x1000, ACCESS_WRITE | ACCESS_LINEAR_VALID, e.w)).toBe(false);
    expect(e.w.fault).toBe(FAULT_EPT_VIOLATION);
    expect(e.w.errorCode).toBe(
      EPTQ_WRITE | EPTQ_READABLE | EPTQ_EXECUTABLE | EPTQ_LINEAR_VALID | EPTQ_LINEAR_TRANSLATION,
    );
    // A guest paging-structure access: bit 8 clear; with A/D it is a write and reports read and write.
    expect(w.walk(0, 0x1000, ACCESS_WRITE | ACCESS_GUEST_TABLE | ACCESS_LINEAR_VALID, e.w)).toBe(false);
    expect(e.w.errorCode).toBe(EPTQ_READ | EPTQ_WRITE | EPTQ_READABLE | EPTQ_EXECUTABLE | EPTQ_LINEAR_VALID);
    // Not present at the PDPTE: rights bits are all zero.
    expect(w.walk(0, 0x40000000, ACCESS_FETCH, e.w)).toBe(false);
    expect(e.w.errorCode).toBe(EPTQ_FETCH);
    expect(e.w.faultLevel).toBe(3);
  });

  it("misconfigurations: write without read, execute-only without support, bad memory type, reserved bits", () => {
    const e = ept({ executeOnly: false });
    e.b.map(0x1000n, 0x50000, 4096, eptLeaf({ read: false, write: true, execute: false }));
    e.b.map(0x2000n, 0x50000, 4096, eptLeaf({ read: false, write: false, execute: true }));
    e.b.map(0x3000n, 0x50000, 4096, eptLeaf({ memoryType: 2 }));
    e.b.map(0x200000n, 0x400000, 2 << 20, { lo: eptLeaf().lo | (1 << 12), hi: 0 });
    const w = e.walker();
    for (const a of [0x1000, 0x2000, 0x3000]) {
      expect(w.walk(0, a, 0, e.w)).toBe(false);
      expect(e.w.fault).toBe(FAULT_EPT_MISCONFIG);
      expect(e.w.reason).toBe(REASON_BAD_EPT_BITS);
    }
    expect(w.walk(0, 0x200000, 0, e.w)).toBe(false);
    expect(e.w.fault).toBe(FAULT_EPT_MISCONFIG);
    expect(e.w.reason).toBe(REASON_RESERVED);
    // A not-present entry is a violation whatever its other bits say.
    const pte = e.b.entryAddress(0x1000n, 1, false);
    e.b.write(pte, 0xf8, 0);
    expect(w.walk(0, 0x1000, 0, e.w)).toBe(false);
    expect(e.w.fault).toBe(FAULT_EPT_VIOLATION);
  });

  it("execute-only pages where supported: fetch allowed, read a violation", () => {
    const e = ept({ executeOnly: true });
    e.b.map(0x1000n, 0x50000, 4096, eptLeaf({ read: false, write: false, execute: true }));
    const w = e.walker();
    expect(w.walk(0, 0x1000, ACCESS_FETCH, e.w)).toBe(true);
    expect(w.walk(0, 0x1000, 0, e.w)).toBe(false);
    expect(e.w.errorCode).toBe(EPTQ_READ | EPTQ_EXECUTABLE);
  });

  it("mode-based execute control: X for supervisor linear addresses, XU for user ones", () => {
    const e = ept({ mbec: true });
    e.b.map(0x1000n, 0x50000, 4096, eptLeaf({ execute: false, userExecute: true }));
    const w = e.walker();
    expect(w.walk(0, 0x1000, ACCESS_FETCH | ACCESS_USER, e.w)).toBe(true);
    expect(w.walk(0, 0x1000, ACCESS_FETCH, e.w)).toBe(false);
    expect(e.w.errorCode).toBe(EPTQ_FETCH | EPTQ_READABLE | EPTQ_WRITABLE | EPTQ_USER_EXECUTABLE);
    // An entry whose only right is XU is present.
    e.b.map(
      0x2000n,
      0x51000,
      4096,
      eptLeaf({ read: false, write: false, execute: false, userExecute: true }),
    );
    expect(w.walk(0, 0x2000, ACCESS_FETCH | ACCESS_USER, e.w)).toBe(true);
  });

  it("accessed and dirty flags when the EPTP enables them", () => {
    const e = ept({}, 0x5e);
    e.b.map(0x1000n, 0x50000, 4096, eptLeaf());
    const w = e.walker();
    expect(w.walk(0, 0x1000, ACCESS_WRITE, e.w)).toBe(true);
    for (let i = 0; i < 4; i++) expect(e.w.newLo[i] & 0x100).toBe(0x100);
    expect(e.w.newLo[3] & 0x200).toBe(0x200);
    const [lo] = e.b.read(e.w.entryAddr[3]);
    expect(lo & 0x300).toBe(0x300);
    const plain = ept();
    plain.b.map(0x1000n, 0x50000, 4096, eptLeaf());
    plain.walker().walk(0, 0x1000, ACCESS_WRITE, plain.w);
    expect(plain.b.read(plain.w.entryAddr[3])[0] & 0x300).toBe(0);
  });

  it("5-level EPT walks five levels", () => {
    const e = ept({}, 0x26);
    e.b.map(0x1_0000_0000_0000n, 0x50000, 4096, eptLeaf());
    expect(e.walker().walk(0x10000, 0x0, 0, e.w)).toBe(true);
    expect(e.w.depth).toBe(5);
  });
});

describe("NPT", () => {
  const qemu = cpuModel("qemu-max");
  function npt() {
    const host = new HostMemory(8 << 20);
    const format = x86Format({
      mode: "4level",
      maxPhyAddr: 40,
      nxe: true,
      pse: true,
      pse36: false,
      gbPages: true,
      amd: true,
    });
    const b = new PageTableBuilder(host, format, () => host.alloc());
    return { host, b, walker: () => nptWalker(host, b.cr3, qemu, { levels: 4 }), w: new Walk() };
  }

  it("nested accesses are user accesses: a supervisor nested page faults with U set", () => {
    const n = npt();
    n.b.map(0x1000n, 0x50000, 4096, x86Leaf({ user: true }));
    n.b.map(0x2000n, 0x51000, 4096, x86Leaf({ user: false }));
    const w = n.walker();
    expect(w.walk(0, 0x1000, ACCESS_USER, n.w)).toBe(true);
    expect(w.walk(0, 0x2000, ACCESS_USER, n.w)).toBe(false);
    expect(n.w.fault).toBe(FAULT_PAGE);
    expect(n.w.errorCode).toBe(0x1 | 0x4);
  });

  it("read-only and NX nested pages", () => {
    const n = npt();
    n.b.map(0x1000n, 0x50000, 4096, x86Leaf({ user: true, writable: false, noExecute: true }));
    const w = n.walker();
    expect(w.walk(0, 0x1000, ACCESS_USER | ACCESS_WRITE, n.w)).toBe(false);
    expect(n.w.errorCode).toBe(0x7);
    expect(w.walk(0, 0x1000, ACCESS_USER | ACCESS_FETCH, n.w)).toBe(false);
    expect(n.w.errorCode).toBe(0x15);
  });

  it("refuses an nCR3 beyond MAXPHYADDR", () => {
    const n = npt();
    expect(() => nptWalker(n.host, 1n << 41n, qemu, { levels: 4 })).toThrow(/nCR3/);
  });
});
