import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { guestLayout } from "../../src/guest/layout.js";
import {
  LackeyParser,
  layoutTrace,
  parseLackey,
  readLackeyFile,
  TRACE_INSTR,
  TRACE_LOAD,
  TRACE_MODIFY,
  TRACE_STORE,
  TraceError,
  tracePages,
  traceProgram,
} from "../../src/sim/lackey.js";
import { expandTouches, type SimOp } from "../../src/sim/program.js";
import { simulate } from "../../src/sim/runner.js";

const FIXTURE = new URL("../fixtures/lackey/true.lackey", import.meta.url);
const fixturePath = FIXTURE.pathname;

describe("lackey parser", () => {
  it("reads the fixture: every access line, valgrind's messages skipped", () => {
    const t = readLackeyFile(fixturePath);
    const lines = readFileSync(FIXTURE, "utf8").split("\n");
    if (lines[lines.length - 1] === "") lines.pop();
    const messages = lines.filter((l) => l.startsWith("==")).length;
    expect(t.name).toBe("true.lackey");
    expect(t.lines).toBe(lines.length);
    expect(t.skipped).toBe(messages);
    expect(t.malformed).toBe(0);
    expect(t.accesses.count).toBe(lines.length - messages);
    const a = t.accesses;
    expect([a.kind[0], a.address[0], a.size[0]]).toEqual([TRACE_INSTR, 0x401ab70, 3]);
    const first = lines.findIndex((l) => l.startsWith(" S"));
    const [addr, size] = lines[first].trim().slice(2).split(",");
    const i = first - messages;
    expect([a.kind[i], a.address[i], a.size[i]]).toEqual([
      TRACE_STORE,
      Number.parseInt(addr, 16),
      Number(size),
    ]);
  });

  it("parses every kind, CRLF, tabs, blank and SB lines", () => {
    const t = parseLackey(
      "I  04011c0,3\r\n L 1ffefffd68,8\n S 1FFEFFFD60,16\n M 0403e3a8,4  \n\n\tL\t10,1\nSB 04011c0\n==1== bye\n I 0,1",
    );
    expect(t.malformed).toBe(0);
    expect(t.skipped).toBe(3);
    const a = t.accesses;
    expect(a.count).toBe(6);
    expect(Array.from(a.kind.subarray(0, 6))).toEqual([
      TRACE_INSTR,
      TRACE_LOAD,
      TRACE_STORE,
      TRACE_MODIFY,
      TRACE_LOAD,
      TRACE_INSTR,
    ]);
    expect(Array.from(a.address.subarray(0, 6))).toEqual([
      0x4011c0, 0x1ffefffd68, 0x1ffefffd60, 0x403e3a8, 0x10, 0,
    ]);
    expect(Array.from(a.size.subarray(0, 6))).toEqual([3, 8, 16, 4, 1, 1]);
  });

  it("skips malformed lines, counting them and keeping the first few with line numbers", () => {
    const text = [
      "I  1000,4", // 1
      " X 1000,4", // 2
      " L zz,4", // 3
      " L 1000 4", // 4
      " L 1000,", // 5
      " L 1000,0", // 6
      " L 1000,4 junk", // 7
      "L1000,4", // 8
      " S 2000,8", // 9
      " L 12345678901234567,8", // 10 (above 2^53)
    ].join("\n");
    const t = parseLackey(text, "bad.lackey", { maxProblems: 3 });
    expect(t.accesses.count).toBe(2);
    expect(t.malformed).toBe(8);
    expect(t.problems).toEqual([
      { file: "bad.lackey", line: 2, reason: "expected I, L, S or M", text: " X 1000,4" },
      { file: "bad.lackey", line: 3, reason: "expected a hexadecimal address", text: " L zz,4" },
      { file: "bad.lackey", line: 4, reason: "expected ',' after the address", text: " L 1000 4" },
    ]);
    const all = parseLackey(text, "bad.lackey", { maxProblems: 10 }).problems.map((p) => [p.line, p.reason]);
    expect(all.slice(3)).toEqual([
      [5, "expected a decimal size after ','"],
      [6, "size must be 1..65536"],
      [7, "unexpected text after the size"],
      [8, "expected a blank after the access kind"],
      [10, "address above 2^53"],
    ]);
  });

  it("strict mode: the first malformed line is an error naming file and line", () => {
    expect(() => parseLackey("I  10,4\n\n L 10;4\n", "x.lackey", { strict: true })).toThrow(TraceError);
    expect(() => parseLackey("I  10,4\n\n L 10;4\n", "x.lackey", { strict: true })).toThrow(
      `x.lackey:3: expected ',' after the address: " L 10;4"`,
    );
  });

  it("gives the same result whatever the chunk boundaries", () => {
    const bytes = readFileSync(FIXTURE);
    const whole = parseLackey(new Uint8Array(bytes), "f");
    let seed = 7;
    const p = new LackeyParser("f");
    for (let at = 0; at < bytes.length; ) {
      seed = (seed * 1103515245 + 12345) >>> 0;
      const n = 1 + (seed % 97);
      p.push(new Uint8Array(bytes.subarray(at, at + n)));
      at += n;
    }
    const t = p.end();
    expect(t.accesses.count).toBe(whole.accesses.count);
    expect(t.lines).toBe(whole.lines);
    expect(t.accesses.address.subarray(0, t.accesses.count)).toEqual(
      whole.accesses.address.subarray(0, whole.accesses.count),
    );
    expect(t.accesses.size.subarray(0, t.accesses.count)).toEqual(
      whole.accesses.size.subarray(0, t.accesses.count),
    );
  });

  it("a last line without newline is parsed; a half-written one is reported", () => {
    expect(parseLackey("I  10,4\n L 20,8").accesses.count).toBe(2);
    const t = parseLackey("I  10,4\n L 20", "cut");
    expect(t.accesses.count).toBe(1);
    expect(t.problems[0]).toMatchObject({ line: 2, reason: "expected ',' after the address" });
  });
});

describe("trace layout and replay", () => {
  const l4 = guestLayout("4level");
  const l32 = guestLayout("32bit");

  it("splits accesses at page boundaries and maps every page touched", () => {
    const t = parseLackey(" L 400ffe,4\n S 401000,4\n M 7fff000,8\n");
    expect(tracePages(t)).toEqual([0x400, 0x401, 0x7fff]);
    const p = traceProgram([t]);
    const ops = [...expandTouches(p.ops({ layout: l4 }))];
    const touches = ops.filter((o): o is Extract<SimOp, { op: "touch" }> => o.op === "touch");
    expect(touches.map((o) => [o.region, o.offset, o.kind])).toEqual([
      [0, 0xffc, "read"],
      [0, 0x1000, "read"],
      [0, 0x1000, "write"],
      [1, 0, "read"],
      [1, 0, "write"],
    ]);
    expect(ops.filter((o) => o.op === "mmap")).toEqual([
      { op: "mmap", proc: 0, region: 0, pages: 2, prot: 7, atVpn: 0x400 },
      { op: "mmap", proc: 0, region: 1, pages: 1, prot: 7, atVpn: 0x7fff },
    ]);
  });

  it("keeps the traced addresses in a 64-bit guest and packs them into a 32-bit one", () => {
    const t = readLackeyFile(fixturePath);
    const same = layoutTrace(t, l4.userFirstVpn, l4.userEndVpn);
    expect(same.relocated).toBe(false);
    for (const r of same.regions) expect(r.guestVpn).toBe(r.firstVpn);
    const packed = layoutTrace(t, l32.userFirstVpn, l32.userEndVpn);
    expect(packed.relocated).toBe(true);
    expect(packed.pages).toBe(same.pages);
    for (const r of packed.regions) {
      expect(r.guestVpn % 1024).toBe(r.firstVpn % 1024);
      expect(r.guestVpn + (r.endVpn - r.firstVpn)).toBeLessThanOrEqual(l32.userEndVpn);
    }
    for (let i = 1; i < packed.regions.length; i++)
      expect(packed.regions[i].guestVpn).toBeGreaterThan(
        packed.regions[i - 1].guestVpn + packed.regions[i - 1].endVpn - packed.regions[i - 1].firstVpn,
      );
  });

  it("runs several traces as processes with a quantum, switching between them", () => {
    const a = parseLackey(" L 1000,4\n L 1004,4\n L 1008,4\n", "a");
    const b = parseLackey(" S 2000,4\n S 2004,4\n", "b");
    const ops = [...expandTouches(traceProgram([a, b], { quantum: 2 }).ops({ layout: l4 }))];
    const seq = ops.map((o) =>
      o.op === "touch" ? `${o.proc}${o.kind[0]}` : `${o.op}${"proc" in o ? o.proc : ""}`,
    );
    expect(seq).toEqual([
      "spawn0",
      "mmap0",
      "spawn1",
      "mmap1",
      "switch0",
      "0r",
      "0r",
      "switch1",
      "1w",
      "1w",
      "exit1",
      "switch0",
      "0r",
      "exit0",
    ]);
  });

  it("replays the fixture under TDP, shadow and shadow-pv with equal digests, audits clean", () => {
    const t = readLackeyFile(fixturePath);
    for (const guestPaging of ["pae", "4level"] as const) {
      const r = simulate(traceProgram([t, t], { quantum: 500 }), { guestPaging, checkEvery: 1000 });
      expect(r.problems).toEqual([]);
      expect(r.digestsAgree).toBe(true);
      expect(r.runs[0].guest.segv).toBe(0);
      expect(r.runs[0].userAccesses).toBeGreaterThanOrEqual(2 * t.accesses.count);
    }
  });
});

const valgrind = spawnSync("valgrind", ["--version"], { encoding: "utf8" });
const hasValgrind = valgrind.status === 0;

describe("a fresh valgrind trace", () => {
  it.skipIf(!hasValgrind)("valgrind --tool=lackey /bin/true parses cleanly and replays", () => {
    const dir = mkdtempSync(join(tmpdir(), "vmmu-lackey-"));
    try {
      const file = join(dir, "true.lackey");
      execFileSync("valgrind", ["--tool=lackey", "--trace-mem=yes", `--log-file=${file}`, "/bin/true"], {
        stdio: "ignore",
      });
      const t = readLackeyFile(file);
      expect(t.malformed).toBe(0);
      expect(t.skipped).toBeGreaterThan(0);
      expect(t.accesses.count).toBeGreaterThan(10_000);
      const kinds = new Set(t.accesses.kind.subarray(0, t.accesses.count));
      expect([...kinds].sort()).toEqual([TRACE_INSTR, TRACE_LOAD, TRACE_STORE, TRACE_MODIFY]);
      // Replay the first 20,000 accesses (the whole run takes a few seconds per MMU).
      t.accesses.count = 20_000;
      const r = simulate(traceProgram([t]), { mmus: ["tdp", "shadow"], checkEvery: 5000 });
      expect(r.problems).toEqual([]);
      expect(r.digestsAgree).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
