/**
 * Random operation sequences (spawn / fork / exit / exec / mmap / munmap / mprotect /
 * touch / switch / age) on a 2-vCPU guest: every load is verified by the guest's value
 * model, and after every step the VM's MMU/TLB audit and the guest's own audit are clean;
 * at the end every process exits and the allocator balances.
 */

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { PROT_EXEC, PROT_WRITE } from "../../src/guest/os.js";
import { bootGuest, EPT, expectBalanced, MODES, NPT } from "./helpers.js";
import { guestOpArb, type Region } from "./ops.js";

const opArb = guestOpArb();

describe.each(MODES)("%s guest: random operation sequences", (mode) => {
  it.each([EPT, NPT])(
    "on $name: loads verify, audits clean after every step, balanced at the end",
    (host) => {
      fc.assert(
        fc.property(fc.array(opArb, { minLength: 10, maxLength: 60 }), (ops) => {
          const g = bootGuest(mode, { host, cpus: 2, ramMiB: 24, pcid: mode === "4level" });
          const { os, vm } = g;
          const regions = new Map<number, Region[]>();
          const live = () => os.pids;
          const pick = (i: number) => live()[i % live().length];
          const hugeBytes = mode === "32bit" ? 4 << 20 : 2 << 20;
          for (const o of ops) {
            if (o.op !== "spawn" && live().length === 0) continue;
            switch (o.op) {
              case "spawn": {
                const r = os.spawn();
                if (r.ok) regions.set(r.pid, []);
                break;
              }
              case "fork": {
                const p = pick(o.p);
                const r = os.fork(p);
                if (r.ok)
                  regions.set(
                    r.pid,
                    (regions.get(p) ?? []).map((x) => ({ ...x })),
                  );
                break;
              }
              case "exit": {
                const p = pick(o.p);
                os.exit(p);
                regions.delete(p);
                break;
              }
              case "exec": {
                const p = pick(o.p);
                os.exec(p);
                regions.set(p, []);
                break;
              }
              case "mmap": {
                const p = pick(o.p);
                const len = o.huge ? hugeBytes : o.pages * 4096;
                const r = os.mmap(p, len, o.prot, { huge: o.huge });
                if (r.ok) regions.get(p)!.push({ va: r.va, pages: len / 4096, huge: o.huge });
                break;
              }
              case "munmap": {
                const p = pick(o.p);
                const rs = regions.get(p)!;
                if (rs.length === 0) break;
                const reg = rs[o.r % rs.length];
                if (reg.huge) os.munmap(p, reg.va, reg.pages * 4096);
                else {
                  const from = o.from % reg.pages;
                  const cached = [0, 1].filter((c) => os.process(p).activeOn.has(c));
                  for (const c of cached) os.touch(p, reg.va + BigInt(from * 4096), "read", 0, c);
                  os.munmap(p, reg.va + BigInt(from * 4096), Math.min(o.pages, reg.pages - from) * 4096);
                  // Probe the first unmapped page on every vCPU running p: it must be gone everywhere.
                  for (const c of cached)
                    expect(os.touch(p, reg.va + BigInt(from * 4096), "read", 0, c)).toMatchObject({
                      ok: false,
                    });
                }
                break;
              }
              case "mprotect": {
                const p = pick(o.p);
                const rs = regions.get(p)!;
                if (rs.length === 0) break;
                const reg = rs[o.r % rs.length];
                const cached = [0, 1].filter((c) => os.process(p).activeOn.has(c));
                for (const c of cached) os.touch(p, reg.va, "write", 3, c);
                const r = os.mprotect(p, reg.va, reg.pages * 4096, o.prot); // ENOMEM after a partial munmap is fine
                if (r.ok && (o.prot & PROT_WRITE) === 0)
                  for (const c of cached)
                    expect(os.touch(p, reg.va, "write", 1, c)).toMatchObject({ ok: false, error: "SIGSEGV" });
                break;
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
                const r = os.touch(
                  p,
                  va,
                  o.kind,
                  o.kind === "write" ? (o.word * 2654435761) >>> 0 : 0,
                  o.cpu,
                );
                if (!r.ok && r.error === "SIGSEGV") {
                  const m = os.process(p).vmaAt(Number(va >> 12n));
                  const allowed =
                    m !== undefined &&
                    m.prot !== 0 &&
                    (o.kind !== "write" || (m.prot & PROT_WRITE) !== 0) &&
                    (o.kind !== "fetch" || mode === "32bit" || (m.prot & PROT_EXEC) !== 0);
                  expect(allowed).toBe(false);
                }
                break;
              }
              case "switch":
                os.switchTo(pick(o.p), o.cpu);
                break;
              case "age":
                os.age(pick(o.p));
                break;
            }
            expect(vm.check()).toEqual([]);
            expect(os.audit()).toEqual([]);
          }
          for (const p of live()) os.exit(p);
          expectBalanced(g);
        }),
        { numRuns: 30, seed: 0x5eed + MODES.indexOf(mode) },
      );
    },
  );
});
