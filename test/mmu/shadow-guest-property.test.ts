/**
 * Random guest OS operation sequences (spawn / fork / exec / exit / mmap / munmap /
 * mprotect / touch / switchTo / age, 1-2 vCPUs, every paging mode) run in lockstep on three
 * VMs with the same seed: TDP, transparent shadow paging and lguest-style paravirtual shadow
 * paging. Every operation must return the same result on the three, the guest's digest
 * must be identical at the end, vm.check() and os.audit() must hold at checkpoints, and
 * destroying each VM must give back every host frame.
 */

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { GuestLayout, GuestPagingMode } from "../../src/guest/layout.js";
import { LguestPagingOps } from "../../src/guest/lguest-ops.js";
import { GuestOs } from "../../src/guest/os.js";
import type { ShadowMmu } from "../../src/mmu/shadow/shadow-mmu.js";
import { Vm } from "../../src/vm/vm.js";
import { type GuestOp, guestOpArb, type Region } from "../guest/ops.js";

const MODES: GuestPagingMode[] = ["32bit", "pae", "4level", "5level"];
const RAM_MIB = 16;

const opArb = guestOpArb(3);

type Kind = "tdp" | "shadow" | "shadow-pv";
const KINDS: Kind[] = ["tdp", "shadow", "shadow-pv"];

interface Config {
  cpus: number;
  pcid: boolean;
  /** Transparent shadow: unsync level-1 tables, and a page bound (constant reclaim when small). */
  unsync: boolean;
  maxPages: number | undefined;
}

function boot(mode: GuestPagingMode, kind: Kind, cfg: Config) {
  const vm = new Vm({
    cpu: "intel-sapphirerapids",
    hostMemory: (RAM_MIB + 16) << 20,
    mmu: kind,
    shadow: kind === "tdp" ? undefined : { unsync: cfg.unsync, maxPages: cfg.maxPages },
  });
  vm.addMemslot({ id: 0, baseGfn: 0, pages: RAM_MIB * 256, hvaPage: 0x100000, hostHugePages: 9 });
  const os = new GuestOs(vm, {
    mode,
    cpus: cfg.cpus,
    pcid: cfg.pcid && (mode === "4level" || mode === "5level"),
    ops: kind === "shadow-pv" ? (layout: GuestLayout) => new LguestPagingOps(layout) : undefined,
  });
  return { vm, os, kind };
}

type Booted = ReturnType<typeof boot>;

/** Runs one operation on one guest; returns what the guest observed (JSON). */
function step(g: Booted, o: GuestOp, regions: Map<number, Region[]>, hugeBytes: number): unknown {
  const { os } = g;
  const cpus = os.vcpus.length;
  const live = os.pids;
  if (o.op !== "spawn" && live.length === 0) return null;
  const pick = (i: number) => live[i % live.length];
  switch (o.op) {
    case "spawn": {
      const r = os.spawn();
      if (r.ok) regions.set(r.pid, []);
      return r;
    }
    case "fork": {
      const p = pick(o.p);
      const r = os.fork(p);
      if (r.ok)
        regions.set(
          r.pid,
          (regions.get(p) ?? []).map((x) => ({ ...x })),
        );
      return r;
    }
    case "exit": {
      const p = pick(o.p);
      os.exit(p);
      regions.delete(p);
      return p;
    }
    case "exec": {
      const p = pick(o.p);
      os.exec(p);
      regions.set(p, []);
      return p;
    }
    case "mmap": {
      const p = pick(o.p);
      const len = o.huge ? hugeBytes : o.pages * 4096;
      const r = os.mmap(p, len, o.prot, { huge: o.huge });
      if (r.ok) regions.get(p)!.push({ va: r.va, pages: len / 4096, huge: o.huge });
      return r;
    }
    case "munmap": {
      const p = pick(o.p);
      const rs = regions.get(p)!;
      if (rs.length === 0) return null;
      const reg = rs[o.r % rs.length];
      if (reg.huge) {
        os.munmap(p, reg.va, reg.pages * 4096);
        return [p, reg.va];
      }
      const from = o.from % reg.pages;
      const va = reg.va + BigInt(from * 4096);
      // Cache the page on every vCPU running p, unmap, and probe: it must be gone everywhere.
      const cached = [0, 1].filter((c) => os.process(p).activeOn.has(c));
      const before = cached.map((c) => os.touch(p, va, "read", 0, c));
      os.munmap(p, va, Math.min(o.pages, reg.pages - from) * 4096);
      const after = cached.map((c) => os.touch(p, va, "read", 0, c));
      for (const r of after) expect(r.ok).toBe(false);
      return [before, after];
    }
    case "mprotect": {
      const p = pick(o.p);
      const rs = regions.get(p)!;
      if (rs.length === 0) return null;
      const reg = rs[o.r % rs.length];
      const cached = [0, 1].filter((c) => os.process(p).activeOn.has(c));
      const before = cached.map((c) => os.touch(p, reg.va, "write", 3, c));
      const r = os.mprotect(p, reg.va, reg.pages * 4096, o.prot);
      const after = cached.map((c) => os.touch(p, reg.va, "write", 1, c));
      return [before, r, after];
    }
    case "touch": {
      const p = pick(o.p);
      const rs = regions.get(p)!;
      const stackTop = BigInt(os.process(p).vmas.find((v) => v.name === "stack")?.end ?? 2) * 4096n;
      const va =
        rs.length === 0
          ? stackTop - 4096n + BigInt(o.word * 4)
          : rs[o.r % rs.length].va +
            BigInt(((o.page * 4099) % rs[o.r % rs.length].pages) * 4096 + o.word * 4);
      return os.touch(p, va, o.kind, o.kind === "write" ? (o.word * 2654435761) >>> 0 : 0, o.cpu % cpus);
    }
    case "switch":
      os.switchTo(pick(o.p), o.cpu % cpus);
      return null;
    case "age":
      return os.age(pick(o.p));
  }
}

const json = (v: unknown) => JSON.stringify(v, (_, x) => (typeof x === "bigint" ? `0x${x.toString(16)}` : x));

function run(mode: GuestPagingMode, cfg: Config, ops: GuestOp[], checkEvery: number): void {
  const guests = KINDS.map((k) => boot(mode, k, cfg));
  const regions = KINDS.map(() => new Map<number, Region[]>());
  const hugeBytes = mode === "32bit" ? 4 << 20 : 2 << 20;
  const audit = (g: Booted, where: string) => {
    expect(g.vm.check(), `${g.kind} check() ${where}`).toEqual([]);
    expect(g.os.audit(), `${g.kind} audit ${where}`).toEqual([]);
  };
  for (const [i, o] of ops.entries()) {
    const where = `after step ${i} ${json(o)} (${mode}, ${json(cfg)})`;
    const results = guests.map((g, k) => json(step(g, o, regions[k], hugeBytes)));
    expect(results[1], `shadow vs TDP ${where}`).toBe(results[0]);
    expect(results[2], `shadow-pv vs TDP ${where}`).toBe(results[0]);
    if (i % checkEvery === checkEvery - 1) for (const g of guests) audit(g, where);
  }
  const digests = guests.map((g) => g.os.digest());
  expect(digests[1], "shadow digest").toBe(digests[0]);
  expect(digests[2], "shadow-pv digest").toBe(digests[0]);
  for (const g of guests) {
    for (const p of g.os.pids) g.os.exit(p);
    expect(g.os.memory()).toEqual(g.os.bootMemory);
    audit(g, "at the end");
    const mmu = g.vm.hostMmu;
    if (g.kind !== "tdp") expect((mmu as ShadowMmu).stopReason).toBeNull();
    g.vm.destroy();
    expect(g.vm.host.framesInUse, `${g.kind}: host frames in use after destroy`).toBe(0);
  }
}

const configArb: fc.Arbitrary<Config> = fc.record({
  cpus: fc.integer({ min: 1, max: 2 }),
  pcid: fc.boolean(),
  unsync: fc.boolean(),
  maxPages: fc.constantFrom<number | undefined>(undefined, undefined, 24),
});

const RUNS = Number(process.env.RUNS ?? 1);

describe.each(MODES)("%s guest on TDP, shadow and shadow-pv", (mode) => {
  it("random operation sequences: identical results and digests, audits clean, every frame freed", () => {
    fc.assert(
      fc.property(configArb, fc.array(opArb, { minLength: 10, maxLength: 50 }), (cfg, ops) =>
        run(mode, cfg, ops, 4),
      ),
      { numRuns: Math.round(20 * RUNS), seed: Number(process.env.SEED ?? 0x5ad6_0000) + MODES.indexOf(mode) },
    );
  });
});

describe("fixed sequences", () => {
  it("aging a process that runs nowhere: its unsync table's cleared A bits are seen after the switch back", () => {
    const touch = (p: number): GuestOp => ({ op: "touch", p, r: 0, page: 0, word: 0, kind: "read", cpu: 0 });
    run(
      "4level",
      { cpus: 1, pcid: false, unsync: true, maxPages: undefined },
      [
        { op: "spawn" },
        { op: "fork", p: 0 },
        touch(0),
        touch(1), // the child runs: the parent's address space is loaded nowhere
        { op: "age", p: 0 }, // A cleared in the parent's (unsync) table, nothing to invalidate
        touch(0), // the switch back resyncs: the entry must fault again and set A
        { op: "age", p: 0 }, // young on every MMU
      ],
      1,
    );
  });
});
