import {
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { expandGrid, type SweepResults, sweepConfigFrom } from "../../src/sim/sweep.js";
import { mergeSweepDirs } from "../../src/sim/sweep-merge.js";
import { pointFile, runSweep, SweepDirError } from "../../src/sim/sweep-run.js";
import { run } from "../cli/helpers.js";

const root = mkdtempSync(join(tmpdir(), "vmmu-sweep-test-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const fresh = () => join(root, `d${n++}`);

// 2 workloads × 2 MMUs × 2 paging modes at a small scale: 8 points, a few seconds in all.
const GRID = {
  name: "test",
  workloads: ["churn", "compile"],
  mmus: ["tdp", "shadow"],
  guestPaging: ["4level", "pae"],
  scales: [0.05],
};
const config = sweepConfigFrom(GRID);
const points = expandGrid(config);

const asText = (r: SweepResults) => JSON.stringify(r);

describe("runSweep", () => {
  let reference: SweepResults;
  let refDir: string;

  it("runs every point on 1 worker and writes point files and results", async () => {
    refDir = fresh();
    const s = await runSweep(config, { out: refDir, jobs: 1 });
    expect(s).toMatchObject({ total: 8, selected: 8, ran: 8, skipped: 0, failed: [], interrupted: false });
    expect(s.wroteResults).toBe(true);
    expect(readdirSync(join(refDir, "points")).sort()).toEqual(points.map((p) => `${p.id}.json`).sort());
    for (const f of ["sweep.json", "results.json", "results.csv", "results.svg"])
      expect(existsSync(join(refDir, f)), f).toBe(true);
    reference = JSON.parse(readFileSync(join(refDir, "results.json"), "utf8"));
    expect(reference.complete).toBe(8);
    expect(reference.problems).toEqual([]);
    expect(reference.points.every((p) => p.result.overheadVsNative !== null)).toBe(true);
    expect(readFileSync(join(refDir, "results.csv"), "utf8").trimEnd().split("\n")).toHaveLength(9);
    const svg = readFileSync(join(refDir, "results.svg"), "utf8");
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg.trim().endsWith("</svg>")).toBe(true);
  });

  it("gives the same results with 2 workers and on the main thread", async () => {
    const two = fresh();
    const s = await runSweep(config, { out: two, jobs: 2 });
    expect(s.ran).toBe(8);
    expect(asText(s.results)).toBe(asText(reference));
    expect(readFileSync(join(two, "results.csv"), "utf8")).toBe(
      readFileSync(join(refDir, "results.csv"), "utf8"),
    );
    for (const p of points)
      expect(readFileSync(pointFile(two, p.id), "utf8")).toBe(readFileSync(pointFile(refDir, p.id), "utf8"));
    const inline = await runSweep(config, { out: fresh(), jobs: 0 });
    expect(asText(inline.results)).toBe(asText(reference));
  });

  it("resumes: skips points with valid files, re-runs deleted and corrupt ones", async () => {
    const dir = fresh();
    await runSweep(config, { out: dir, jobs: 2 });
    // An interrupted run: some files never written, one half-written, a temp file left over.
    unlinkSync(pointFile(dir, points[1].id));
    unlinkSync(pointFile(dir, points[6].id));
    writeFileSync(pointFile(dir, points[3].id), '{"schemaVersion":1,"kind":"vmmu-sweep-p');
    writeFileSync(`${pointFile(dir, points[4].id)}.123.abc.tmp`, "{");
    unlinkSync(join(dir, "results.json"));
    const kept = statSync(pointFile(dir, points[0].id)).mtimeMs;
    const events: string[] = [];
    const s = await runSweep(config, {
      out: dir,
      jobs: 2,
      onPoint: (e) => events.push(`${e.status} ${e.id}`),
    });
    expect(s).toMatchObject({ ran: 3, skipped: 5, failed: [] });
    expect(events.filter((e) => e.startsWith("done")).sort()).toEqual(
      [points[1], points[3], points[6]].map((p) => `done ${p.id}`).sort(),
    );
    expect(events).toContain(`invalid ${points[3].id}`);
    expect(statSync(pointFile(dir, points[0].id)).mtimeMs).toBe(kept);
    expect(readdirSync(join(dir, "points")).filter((f) => f.endsWith(".tmp"))).toEqual([]);
    expect(asText(JSON.parse(readFileSync(join(dir, "results.json"), "utf8")))).toBe(asText(reference));
    // Nothing left to do.
    const again = await runSweep(config, { out: dir, jobs: 2 });
    expect(again).toMatchObject({ ran: 0, skipped: 8 });
  });

  it("refuses a directory of another grid", async () => {
    const other = sweepConfigFrom({ ...GRID, seeds: [2] });
    await expect(runSweep(other, { out: refDir, jobs: 0 })).rejects.toThrow(SweepDirError);
    await expect(runSweep(other, { out: refDir, jobs: 0 })).rejects.toThrow(/holds another sweep/);
  });

  it("runs shards into separate directories that merge into the whole", async () => {
    const dirs = [fresh(), fresh(), fresh()];
    for (let k = 0; k < 3; k++) {
      const s = await runSweep(config, { out: dirs[k], jobs: 1, shard: { index: k + 1, count: 3 } });
      expect(s.selected).toBe([3, 3, 2][k]);
      expect(s.wroteResults).toBe(false);
      expect(s.results.missing).toHaveLength(8 - s.selected);
    }
    const m = mergeSweepDirs(dirs);
    expect(m.errors).toEqual([]);
    expect(m.warnings).toEqual([]);
    expect(asText(m.results)).toBe(asText(reference));

    // Missing: without the last shard.
    const missing = mergeSweepDirs(dirs.slice(0, 2));
    expect(missing.errors).toHaveLength(1);
    expect(missing.errors[0]).toMatch(
      /^2 of 8 points have no result in any directory: .* \(run the missing shards/,
    );
    const allowed = mergeSweepDirs(dirs.slice(0, 2), { allowMissing: true });
    expect(allowed.errors).toEqual([]);
    expect(allowed.warnings[0]).toMatch(/^2 of 8 points have no result/);
    expect(allowed.results.missing).toHaveLength(2);

    // Duplicates: the complete reference directory overlaps every shard with identical results.
    const dup = mergeSweepDirs([...dirs, refDir]);
    expect(dup.errors).toEqual([]);
    expect(dup.warnings).toHaveLength(1);
    expect(dup.warnings[0]).toMatch(/^8 points found more than once with identical results \(kept once\)/);

    // Conflicts: a record whose results differ.
    const p = points.find((x) => x.params.mmu === "shadow")!;
    const shard = dirs.find((d) => existsSync(pointFile(d, p.id)))!;
    const rec = JSON.parse(readFileSync(pointFile(shard, p.id), "utf8"));
    rec.result.walks += 1;
    writeFileSync(pointFile(shard, p.id), JSON.stringify(rec));
    const conflict = mergeSweepDirs([...dirs, refDir]);
    expect(conflict.errors).toEqual([
      `conflicting results for point ${p.id}: ${shard} and ${refDir} differ (first at result.walks)`,
    ]);

    // Another sweep's directory.
    const other = fresh();
    await runSweep(sweepConfigFrom({ ...GRID, workloads: ["churn"] }), {
      out: other,
      jobs: 0,
      shard: { index: 1, count: 8 },
    });
    expect(() => mergeSweepDirs([dirs[0], other])).toThrow(/is from another sweep than/);
    expect(() => mergeSweepDirs([root])).toThrow(/no sweep\.json/);
  });
});

describe("vmmu sweep and vmmu merge", () => {
  it("runs a grid file, prints a table, resumes, and exits 2 on usage errors", async () => {
    const dir = fresh();
    const cfg = join(root, "grid.json");
    writeFileSync(cfg, JSON.stringify({ ...GRID, workloads: ["churn"], guestPaging: ["pae"] }));
    const r = await run("sweep", cfg, "--out", dir, "--jobs", "2");
    expect(r.code).toBe(0);
    const lines = r.stdout.split("\n");
    expect(lines[0]).toMatch(/^sweep test: 2 of 2 points, grid [0-9a-f]{12}$/);
    expect(lines[2].split(/\s{2,}/)).toEqual([
      "point",
      "cycles",
      "vs native",
      "TLB miss",
      "refs/walk",
      "VM exits",
      "digest",
    ]);
    expect(r.stderr).toMatch(/2 points \(2 run, 0 already done, 0 failed\) with 2 workers/);
    const again = await run("sweep", cfg, "--out", dir, "--jobs", "2", "--csv", "--quiet");
    expect(again.code).toBe(0);
    expect(again.stderr).toMatch(/2 points \(0 run, 2 already done, 0 failed\)/);
    expect(again.stdout).toBe(readFileSync(join(dir, "results.csv"), "utf8"));
    const json = await run("sweep", cfg, "--out", dir, "--json", "--quiet");
    expect(JSON.parse(json.stdout)).toEqual(JSON.parse(readFileSync(join(dir, "results.json"), "utf8")));

    expect((await run("sweep", cfg, "--out", dir, "--shard", "3/2")).code).toBe(2);
    expect((await run("sweep", cfg, "--out", dir, "--json", "--csv")).code).toBe(2);
    const bad = join(root, "bad.json");
    writeFileSync(bad, JSON.stringify({ workloads: ["churn"], mmus: [] }));
    const b = await run("sweep", bad);
    expect(b.code).toBe(1);
    expect(b.stderr).toBe(`vmmu: error: ${bad}: "mmus" is empty: an axis needs at least one value\n`);
    const missing = await run("sweep", join(root, "nope.json"));
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^vmmu: error: cannot read .*nope\.json/);
  });

  it("merges shard directories into a file, and refuses missing points", async () => {
    const cfg = join(root, "grid2.json");
    writeFileSync(cfg, JSON.stringify({ ...GRID, workloads: ["compile"], guestPaging: ["4level"] }));
    const a = fresh();
    const b = fresh();
    expect((await run("sweep", cfg, "--out", a, "--shard", "1/2", "--jobs", "1", "--quiet")).code).toBe(0);
    const out = join(root, "merged.json");
    const m1 = await run("merge", a, "--out", out);
    expect(m1.code).toBe(1);
    expect(m1.stderr).toMatch(/vmmu: error: 1 of 2 points have no result in any directory/);
    expect(m1.stderr).toMatch(/nothing written\n$/);
    expect(existsSync(out)).toBe(false);
    expect((await run("sweep", cfg, "--out", b, "--shard", "2/2", "--jobs", "1", "--quiet")).code).toBe(0);
    const csv = join(root, "merged.csv");
    const m2 = await run("merge", a, b, "--out", out, "--csv", csv, "--svg", join(root, "merged.svg"));
    expect(m2.code).toBe(0);
    expect(m2.stderr).toBe(`vmmu: merged 2 of 2 points from 2 directories into ${out}\n`);
    const merged = JSON.parse(readFileSync(out, "utf8")) as SweepResults;
    expect(merged.complete).toBe(2);
    expect(readFileSync(csv, "utf8").trimEnd().split("\n")).toHaveLength(3);
  });
});
