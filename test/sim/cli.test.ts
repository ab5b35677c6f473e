import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { main } from "../../src/cli/main.js";
import { run, tempDir } from "../cli/helpers.js";

const tmp = tempDir();
afterAll(() => tmp.cleanup());
const FIXTURE = new URL("../fixtures/lackey/true.lackey", import.meta.url).pathname;

/** A structural check of an SVG document: one root, every element closed, nothing outside it. */
function expectWellFormedSvg(svg: string): void {
  expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
  const stack: string[] = [];
  for (const m of svg.matchAll(/<(\/?)([a-zA-Z]+)([^>]*?)(\/?)>/g)) {
    const [, close, name, , self] = m;
    if (self) continue;
    if (close) expect(stack.pop()).toBe(name);
    else stack.push(name);
  }
  expect(stack).toEqual([]);
  expect(svg.trim().endsWith("</svg>")).toBe(true);
  expect(svg).not.toMatch(/&(?!amp;|lt;|gt;|quot;)/);
}

describe("vmmu simulate", () => {
  it("prints a table with one column per MMU, the native estimate and the seed", async () => {
    const r = await run("simulate", "--workload", "churn", "--scale", "0.05", "--seed", "42");
    expect(r.code).toBe(0);
    expect(r.stderr).toBe("");
    const lines = r.stdout.split("\n");
    expect(lines[0]).toBe(
      "workload churn, seed 42, scale 0.05, guest 4level, TLB 4k:16x4,2m:8x4,1g:1x4,policy=lru",
    );
    expect(lines[2].trim().split(/\s{2,}/)).toEqual(["tdp", "shadow", "shadow-pv", "native (est.)"]);
    for (const label of [
      "accesses",
      "TLB miss rate",
      "walks",
      "refs/walk",
      "exits: shadow #PF",
      "exits: hypercall",
      "VM exits (total)",
      "guest faults",
      "host table bytes",
      "cycles",
      "overhead vs native",
      "digest",
    ])
      expect(
        lines.some((l) => l.startsWith(label)),
        label,
      ).toBe(true);
    const digests = lines
      .find((l) => l.startsWith("digest"))!
      .split(/\s+/)
      .slice(1, 4);
    expect(new Set(digests).size).toBe(1);
    const again = await run("simulate", "--workload", "churn", "--scale", "0.05", "--seed", "42");
    expect(again.stdout).toBe(r.stdout);
  });

  it("writes JSON (schemaVersion 1) and an SVG chart", async () => {
    const json = join(tmp.dir, "out.json");
    const svg = join(tmp.dir, "out.svg");
    const r = await run(
      "simulate",
      "--workload",
      "server",
      "--scale",
      "0.05",
      "--mmu",
      "tdp,tdp-npt,shadow",
      "--guest-paging",
      "pae",
      "--tlb",
      "tiny",
      "--json",
      json,
      "--svg",
      svg,
      "--check",
    );
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/^vmmu: check: \d+ audits, 0 problems\n$/);
    const doc = JSON.parse(readFileSync(json, "utf8"));
    expect(doc).toMatchObject({
      schemaVersion: 1,
      workload: "server",
      seed: 1,
      scale: 0.05,
      guestPaging: "pae",
    });
    expect(doc.runs.map((x: { mmu: string }) => x.mmu)).toEqual(["tdp", "tdp-npt", "shadow"]);
    for (const x of doc.runs) {
      for (const k of [
        "accesses",
        "tlbHits",
        "tlbMisses",
        "walks",
        "walkMemoryRefs",
        "refsPerCompletedWalk",
        "guestPageFaults",
        "hostTableBytes",
        "cycles",
        "overheadVsNative",
      ])
        expect(typeof x[k], k).toBe("number");
      expect(Object.keys(x.exits)).toContain("shadowPageFault");
      expect(x.digest).toBe(doc.runs[0].digest);
      expect(x.guestPaging).toBe("pae");
      expect(x.problems).toEqual([]);
    }
    expect(doc.native.source).toBe("tdp");
    const chart = readFileSync(svg, "utf8");
    expectWellFormedSvg(chart);
    for (const label of ["tdp", "tdp-npt", "shadow", "native (est.)", "page walks", "VM exits"])
      expect(chart).toContain(`>${label}</text>`);
  });

  it("--json - writes the JSON document to stdout instead of the table", async () => {
    const r = await run(
      "simulate",
      "--workload",
      "stream",
      "--scale",
      "0.05",
      "--mmu",
      "shadow",
      "--json",
      "-",
    );
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.stdout);
    expect(doc.runs).toHaveLength(1);
    expect(doc.runs[0].refsPerCompletedWalk).toBe(4);
  });

  it("replays traces, warning about malformed lines with their line numbers", async () => {
    const bad = join(tmp.dir, "bad.lackey");
    writeFileSync(bad, "==1== hello\nI  04011c0,3\n L 1ffefffd68,8\n L oops\n S 1ffefffd60,8\n");
    const r = await run("simulate", "--trace", FIXTURE, bad, "--mmu", "tdp,shadow", "--quantum", "200");
    expect(r.code).toBe(0);
    expect(r.stderr).toBe(
      `vmmu: warning: ${bad}: 1 malformed line skipped (--strict-trace makes this an error)\n  bad.lackey:4: expected a hexadecimal address: " L oops"\n`,
    );
    expect(r.stdout.split("\n")[0]).toMatch(/^workload traces true.lackey, bad.lackey, seed 1, guest 4level/);
    const strict = await run("simulate", "--trace", bad, "--strict-trace");
    expect(strict.code).toBe(1);
    expect(strict.stderr).toBe('vmmu: error: bad.lackey:4: expected a hexadecimal address: " L oops"\n');
  });

  it("uses a cost file and refuses a bad one", async () => {
    const good = join(tmp.dir, "cost.json");
    writeFileSync(good, JSON.stringify({ walkRef: 0, tlbHit: 0, tlbMiss: 0, guestFault: 0, tlbFlush: 0 }));
    const r = await run(
      "simulate",
      "--workload",
      "churn",
      "--scale",
      "0.05",
      "--mmu",
      "tdp",
      "--cost",
      good,
      "--json",
      "-",
    );
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.stdout);
    expect(doc.costs.walkRef).toBe(0);
    expect(doc.runs[0].cycles).toBe(doc.runs[0].cyclesByCause.exits);
    const bad = join(tmp.dir, "bad-cost.json");
    writeFileSync(bad, '{"walkRefs": 3}');
    const e = await run("simulate", "--workload", "churn", "--scale", "0.05", "--cost", bad);
    expect(e.code).toBe(1);
    expect(e.stderr).toMatch(/^vmmu: error: .*bad-cost\.json: unknown key "walkRefs" \(known: tlbHit, /);
    expect(e.stdout).toBe("");
  });

  it("runs the default workload when none is named", async () => {
    const r = await run("simulate", "--scale", "0.05", "--mmu", "tdp");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^workload compile, seed 1/);
  });

  it.each([
    [["simulate", "--workload", "nope"], 'unknown workload "nope"'],
    [["simulate", "--workload", "churn", "--trace", "x"], "--workload and --trace exclude each other"],
    [["simulate", "--workload", "churn", "--mmu", "vtx"], 'unknown MMU "vtx"'],
    [["simulate", "--workload", "churn", "--tlb", "4k:3x4"], "--tlb:"],
    [["simulate", "--workload", "churn", "--scale", "0"], '"0" is not a scale in (0, 1000]'],
    [["simulate", "--workload", "churn", "--seed", "-1"], '"-1" is not a non-negative integer'],
    [
      ["simulate", "--workload", "churn", "--guest-paging", "6level"],
      "Allowed choices are 32bit, pae, 4level, 5level",
    ],
  ])("usage error: %j", async (argv, message) => {
    const r = await run(...argv);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(message);
    expect(r.stdout).toBe("");
  });

  it("a missing trace file is an error (1)", async () => {
    const r = await run("simulate", "--trace", join(tmp.dir, "missing.lackey"));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^vmmu: error: cannot read .*missing\.lackey: ENOENT/);
  });

  it("shows progress on stderr only when it is a terminal", async () => {
    const stderr = {
      text: "",
      isTTY: true,
      write(s: string) {
        this.text += s;
        return true;
      },
    };
    const stdout = {
      text: "",
      write(s: string) {
        this.text += s;
        return true;
      },
    };
    const argv = ["simulate", "--workload", "stream", "--scale", "0.05", "--mmu", "shadow"];
    expect(await main(argv, { stdout, stderr })).toBe(0);
    expect(stderr.text).toContain("\r\x1b[Kvmmu: shadow (run 1 of 2): 4,096 of 32,771 operations");
    expect(stderr.text).toContain("vmmu: tdp (run 2 of 2)");
    expect(stderr.text.endsWith("\r\x1b[K")).toBe(true);
    expect(stdout.text).toBe((await run(...argv)).stdout);
  });

  it("--help describes the options", async () => {
    const r = await run("simulate", "--help");
    expect(r.code).toBe(0);
    for (const o of [
      "--workload",
      "--trace",
      "--mmu",
      "--guest-paging",
      "--tlb",
      "--seed",
      "--scale",
      "--json",
      "--svg",
      "--check",
      "--cost",
    ])
      expect(r.stdout).toContain(o);
  });
});

describe("vmmu workloads", () => {
  it("lists the built-in workloads with their intent", async () => {
    const r = await run("workloads");
    expect(r.code).toBe(0);
    const names = r.stdout
      .split("\n")
      .filter((l) => /^[a-z]+ {2}/.test(l))
      .map((l) => l.split(" ")[0]);
    expect(names).toEqual(["compile", "database", "server", "stream", "churn"]);
    expect(r.stdout).toContain("TLB-hostile");
    const j = await run("workloads", "--json");
    expect(JSON.parse(j.stdout).workloads[0]).toMatchObject({ name: "compile", cpus: 2 });
  });
});
