/**
 * The oracle checked on its own against hand-worked examples from the SDM (no vmmu code
 * involved), so that the matrix's agreement with vmmu is agreement with the manual.
 */

import { describe, expect, it } from "vitest";
import {
  type CaseSpec,
  expectedWalk,
  isCanonical,
  type LevelSpec,
  type OracleAccess,
  type OracleControl,
  type OracleCpu,
  type OraclePagingMode,
  PF_I,
  PF_P,
  PF_PK,
  PF_RSVD,
  PF_U,
  PF_W,
  PKRS_APPLIES_TO_USER_ACCESSES,
} from "./x86-paging-oracle.js";

const INTEL: OracleCpu = { vendor: "intel", maxPhyAddr: 46, pse36: true, gbPages: true };
const AMD: OracleCpu = { vendor: "amd", maxPhyAddr: 40, pse36: true, gbPages: true };
const CTL: OracleControl = {
  wp: false,
  pse: false,
  smep: false,
  smap: false,
  pke: false,
  pks: false,
  nxe: false,
  pkru: 0,
  pkrs: 0,
};
const TABLES = [0x10000, 0x11000, 0x12000, 0x13000, 0x14000];
const read = (privilege: OracleAccess["privilege"] = "supervisor", ac = false): OracleAccess => ({
  kind: "read",
  privilege,
  ac,
});
const write = (privilege: OracleAccess["privilege"] = "supervisor", ac = false): OracleAccess => ({
  kind: "write",
  privilege,
  ac,
});
const fetch = (privilege: OracleAccess["privilege"] = "supervisor"): OracleAccess => ({
  kind: "fetch",
  privilege,
  ac: false,
});

function run(
  mode: OraclePagingMode,
  levels: LevelSpec[],
  access: OracleAccess,
  control: Partial<OracleControl> = {},
  opts: { cpu?: OracleCpu; va?: bigint; page?: number } = {},
) {
  const spec: CaseSpec = {
    mode,
    cpu: opts.cpu ?? INTEL,
    control: { ...CTL, ...control },
    access,
    va: opts.va ?? (mode === "32bit" || mode === "pae" ? 0x00403123n : 0x0000_7f00_0040_3123n),
    levels,
    tables: mode === "pae" ? [TABLES[0] + 0x20, ...TABLES.slice(1)] : TABLES,
    page: opts.page ?? 0x5000,
  };
  return expectedWalk(spec);
}

const ok4 = (leaf: LevelSpec = {}, upper: LevelSpec = {}): LevelSpec[] => [upper, upper, upper, leaf];

describe("oracle: translations", () => {
  it("4-level 4 KiB: physical = page base + offset; A on all four entries, D on the PTE for a write", () => {
    const e = run("4level", ok4(), write());
    expect(e.walk?.fault).toBe("none");
    expect(e.walk?.physical).toBe(0x5123);
    expect(e.walk?.pageSize).toBe(4096);
    expect(e.after.map((v, i) => v ^ e.entries[i].value)).toEqual([0x20n, 0x20n, 0x20n, 0x60n]);
  });

  it("4-level 2 MiB and 1 GiB pages take the low 21/30 bits of the address", () => {
    const e2 = run("4level", [{}, {}, {}], read(), {}, { page: 0x4000_0000 });
    expect(e2.walk?.physical).toBe(0x4000_0000 + (0x0040_3123 & 0x1f_ffff));
    expect(e2.walk?.pageSize).toBe(2 << 20);
    const e1 = run("4level", [{}, {}], read(), {}, { page: 0x80_0000_0000 });
    expect(e1.walk?.physical).toBe(0x80_0000_0000 + 0x0040_3123);
    expect(e1.walk?.pageSize).toBe(1 << 30);
  });

  it("32-bit 4 MiB page with PSE-36: bits 20:13 of the PDE are physical bits 39:32", () => {
    const e = run("32bit", [{}], read(), { pse: true }, { page: 0x12_8040_0000 });
    expect(e.entries[0].value & 0x1fe000n).toBe(0x12n << 13n);
    expect(e.walk?.physical).toBe(0x12_8040_0000 + 0x3123);
    expect(e.walk?.pageSize).toBe(4 << 20);
  });

  it("32-bit paging with CR4.PSE=0 ignores PDE.PS", () => {
    const e = run("32bit", [{ ps: true }, {}], read(), { pse: false });
    expect(e.walk?.pageSize).toBe(4096);
  });

  it("PAE: the PDPTE is a register (no A), PDE and PTE get A", () => {
    const e = run("pae", [{}, {}, {}], read());
    expect(e.walk?.physical).toBe(0x5123);
    expect(e.after.map((v, i) => v ^ e.entries[i].value)).toEqual([0n, 0x20n, 0x20n]);
  });

  it("canonical addresses: 48 bits for 4-level, 57 for 5-level", () => {
    expect(isCanonical("4level", 0x0000_7fff_ffff_ffffn)).toBe(true);
    expect(isCanonical("4level", 0xffff_8000_0000_0000n)).toBe(true);
    expect(isCanonical("4level", 0x0000_8000_0000_0000n)).toBe(false);
    expect(isCanonical("5level", 0x0000_8000_0000_0000n)).toBe(true);
    expect(isCanonical("5level", 0x0100_0000_0000_0000n)).toBe(false);
    expect(isCanonical("5level", 0xff00_0000_0000_0000n)).toBe(true);
  });
});

describe("oracle: access rights (SDM 4.6.1) and error codes (4.7)", () => {
  it("user access to a supervisor page: P|U (|W for a write)", () => {
    expect(run("4level", ok4({ us: false }), read("user")).walk?.errorCode).toBe(PF_P | PF_U);
    expect(run("4level", ok4({}, { us: false }), write("user")).walk?.errorCode).toBe(PF_P | PF_W | PF_U);
  });

  it("CR0.WP: supervisor writes to read-only pages fault only with WP=1; user writes always", () => {
    expect(run("4level", ok4({ rw: false }), write()).walk?.fault).toBe("none");
    expect(run("4level", ok4({ rw: false }), write(), { wp: true }).walk?.errorCode).toBe(PF_P | PF_W);
    expect(run("4level", ok4({ rw: false }), write("user")).walk?.errorCode).toBe(PF_P | PF_W | PF_U);
  });

  it("SMAP: supervisor data access to a user page faults unless explicit with AC=1; implicit always faults", () => {
    expect(run("4level", ok4(), read(), { smap: true }).walk?.errorCode).toBe(PF_P);
    expect(run("4level", ok4(), read("supervisor", true), { smap: true }).walk?.fault).toBe("none");
    expect(run("4level", ok4(), write("implicit", true), { smap: true }).walk?.errorCode).toBe(PF_P | PF_W);
    // SMAP does not concern supervisor pages, nor fetches.
    expect(run("4level", ok4({ us: false }), read(), { smap: true }).walk?.fault).toBe("none");
    expect(run("4level", ok4(), fetch(), { smap: true }).walk?.fault).toBe("none");
  });

  it("SMEP: supervisor fetch from a user page faults with P|I (I because SMEP=1), even in 32-bit paging", () => {
    expect(run("32bit", [{}, {}], fetch(), { smep: true }).walk?.errorCode).toBe(PF_P | PF_I);
    expect(run("32bit", [{}, { us: false }], fetch(), { smep: true }).walk?.fault).toBe("none");
  });

  it("XD: with NXE=1 a fetch from an XD page faults (P|I, plus U for user); with NXE=0 XD is reserved", () => {
    expect(run("4level", ok4({ nx: true }), fetch("user"), { nxe: true }).walk?.errorCode).toBe(
      PF_P | PF_U | PF_I,
    );
    expect(run("4level", ok4({}, { nx: true }), fetch(), { nxe: true }).walk?.errorCode).toBe(PF_P | PF_I);
    expect(run("4level", ok4({ nx: true }), read()).walk?.errorCode).toBe(PF_P | PF_RSVD);
  });

  it("I/D: a not-present fetch reports I only with SMEP or PAE-type paging with NXE", () => {
    expect(run("4level", ok4({ p: false }), fetch(), { nxe: true }).walk?.errorCode).toBe(PF_I);
    expect(run("4level", ok4({ p: false }), fetch()).walk?.errorCode).toBe(0);
    expect(run("32bit", [{}, { p: false }], fetch(), { nxe: true }).walk?.errorCode).toBe(0);
    expect(run("32bit", [{}, { p: false }], fetch("user"), { smep: true }).walk?.errorCode).toBe(PF_U | PF_I);
  });

  it("not-present: P=0, W/U describe the access; A on the levels above only", () => {
    const e = run("4level", [{}, { p: false }, {}, {}], write("user"));
    expect(e.walk?.errorCode).toBe(PF_W | PF_U);
    expect(e.walk?.faultLevel).toBe(3);
    expect(e.after.map((v, i) => v ^ e.entries[i].value)).toEqual([0x20n, 0n, 0n, 0n]);
  });

  it("reserved bits: RSVD with P=1; win over an access-rights violation; not checked when P=0", () => {
    const rsvd = { extra: 1n << 50n }; // ≥ MAXPHYADDR 46
    expect(run("4level", ok4({ ...rsvd, us: false }), write("user")).walk?.errorCode).toBe(
      PF_P | PF_RSVD | PF_W | PF_U,
    );
    expect(run("4level", ok4({ ...rsvd, p: false }), read()).walk?.errorCode).toBe(0);
    // A reserved upper level stops the walk before a non-present leaf.
    const e = run("4level", [{}, rsvd, {}, { p: false }], read());
    expect(e.walk?.errorCode).toBe(PF_P | PF_RSVD);
    expect(e.walk?.faultLevel).toBe(3);
  });

  it("protection fault: A on every non-leaf entry, not on the leaf, no D", () => {
    const e = run("4level", ok4({ rw: false }), write("user"));
    expect(e.after.map((v, i) => v ^ e.entries[i].value)).toEqual([0x20n, 0x20n, 0x20n, 0n]);
  });

  it("AMD reserves bit 8 in non-leaf PML4Es and PDPTEs; Intel ignores it", () => {
    const g = { extra: 1n << 8n };
    expect(run("4level", [g, {}, {}, {}], read(), {}, { cpu: AMD }).walk?.errorCode).toBe(PF_P | PF_RSVD);
    expect(run("4level", [{}, g, {}, {}], read(), {}, { cpu: AMD }).walk?.errorCode).toBe(PF_P | PF_RSVD);
    expect(run("4level", [{}, {}, g, {}], read(), {}, { cpu: AMD }).walk?.fault).toBe("none");
    expect(run("4level", [g, g, {}, {}], read()).walk?.fault).toBe("none");
  });

  it("PAE: a present PDPTE with a reserved bit fails the CR3 load", () => {
    expect(run("pae", [{ extra: 1n << 1n }, {}, {}], read()).load?.ok).toBe(false);
    expect(run("pae", [{ extra: 1n << 63n }, {}, {}], read(), { nxe: true }).load?.ok).toBe(false);
    expect(run("pae", [{ p: false, extra: 1n << 1n }, {}, {}], read()).load?.ok).toBe(true);
  });
});

describe("oracle: protection keys (SDM 4.6.2, 4.7 PK)", () => {
  const key5 = (ad: number, wd: number) => ((ad | (wd << 1)) << 10) >>> 0;

  it("PKRU AD: data accesses to user pages fault with PK, from user and supervisor; fetches do not", () => {
    const c = { pke: true, pkru: key5(1, 0) };
    expect(run("4level", ok4({ pk: 5 }), read("user"), c).walk?.errorCode).toBe(PF_P | PF_U | PF_PK);
    expect(run("4level", ok4({ pk: 5 }), read(), c).walk?.errorCode).toBe(PF_P | PF_PK);
    expect(run("4level", ok4({ pk: 5 }), fetch("user"), c).walk?.fault).toBe("none");
    expect(run("4level", ok4({ pk: 4 }), read("user"), c).walk?.fault).toBe("none");
  });

  it("PKRU WD: user writes fault; supervisor writes only with CR0.WP=1", () => {
    const c = { pke: true, pkru: key5(0, 1) };
    expect(run("4level", ok4({ pk: 5 }), write("user"), c).walk?.errorCode).toBe(PF_P | PF_W | PF_U | PF_PK);
    expect(run("4level", ok4({ pk: 5 }), write(), c).walk?.fault).toBe("none");
    expect(run("4level", ok4({ pk: 5 }), write(), { ...c, wp: true }).walk?.errorCode).toBe(
      PF_P | PF_W | PF_PK,
    );
  });

  it("PK is reported together with an access-rights violation", () => {
    const c = { pke: true, pkru: key5(0, 1) };
    expect(run("4level", ok4({ pk: 5, rw: false }), write("user"), c).walk?.errorCode).toBe(
      PF_P | PF_W | PF_U | PF_PK,
    );
  });

  it("PKRS governs supervisor pages; PKRU does not", () => {
    expect(
      run("4level", ok4({ pk: 5, us: false }), read(), { pks: true, pkrs: key5(1, 0) }).walk?.errorCode,
    ).toBe(PF_P | PF_PK);
    expect(
      run("4level", ok4({ pk: 5, us: false }), read(), { pke: true, pkru: key5(1, 0) }).walk?.fault,
    ).toBe("none");
  });

  it("open question (vmmu's documented choice): PKRS is not consulted for a user-mode access", () => {
    expect(PKRS_APPLIES_TO_USER_ACCESSES).toBe(false);
    const e = run("4level", ok4({ pk: 5, us: false }), read("user"), { pks: true, pkrs: key5(1, 0) });
    expect(e.walk?.errorCode).toBe(PF_P | PF_U);
  });

  it("keys do not exist outside IA-32e paging", () => {
    expect(run("32bit", [{}, {}], read("user"), { pke: true, pkru: 0xffffffff }).walk?.fault).toBe("none");
    expect(run("pae", [{}, {}, {}], read("user"), { pke: true, pkru: 0xffffffff }).walk?.fault).toBe("none");
  });
});
