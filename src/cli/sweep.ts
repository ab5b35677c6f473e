/**
 * `vmmu sweep CONFIG`: every point of a grid (workloads × MMUs × TLBs × paging modes ×
 * seeds × scales × host pages × caches), in parallel on worker threads, one result file per
 * point in the output directory, resumable, shardable (docs/SCALING.md). When the grid is
 * complete the directory also gets results.json, results.csv and results.svg.
 *
 * stdout: a summary table (one line per point), or the results document (--json) or CSV
 * (--csv); stderr: one line per point as it finishes (unless --quiet). Exit status 0, 1 when
 * a point failed, a check found a problem or an input is bad, 2 for usage errors, 130 when
 * interrupted (SIGINT: finished points are kept; run the same command again to resume).
 */

import { readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { basename, dirname, resolve } from "node:path";
import { type Command, InvalidArgumentError } from "commander";
import { grouped } from "../sim/report.js";
import {
  parseShard,
  parseSweepConfig,
  type Shard,
  type SweepResultPoint,
  type SweepResults,
  sweepCsv,
} from "../sim/sweep.js";
import { runSweep } from "../sim/sweep-run.js";
import { type Io, UsageError } from "./io.js";
import { parseIndex } from "./registers.js";
import { InputError } from "./simulate.js";

export interface SweepCliOptions {
  out?: string;
  jobs?: number;
  shard?: Shard;
  json?: boolean;
  csv?: boolean;
  quiet?: boolean;
}

function shardOption(value: string): Shard {
  try {
    return parseShard(value);
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
}

function readText(file: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch (e) {
    throw new InputError(`cannot read ${file}: ${(e as Error).message}`);
  }
}

export function registerSweep(program: Command, io: Io, done: (code: number) => void): void {
  program
    .command("sweep")
    .description("run every point of a grid of configurations in parallel; resumable and shardable")
    .argument("<config>", "JSON grid file (docs/SCALING.md)")
    .option("--out <dir>", "output directory (default: the config's name without .json, plus .sweep)")
    .option("--jobs <n>", "worker threads (default: all cores; 0 runs on the main thread)", parseIndex)
    .option("--shard <k/n>", "run only the points whose index mod N is K-1 (batch array jobs)", shardOption)
    .option("--json", "print the results document on stdout instead of the table")
    .option("--csv", "print the results as CSV on stdout instead of the table")
    .option("--quiet", "no progress lines on stderr")
    .addHelpText(
      "after",
      `
Points whose result file in the output directory exists and is valid are not run again:
run the same command after an interruption to resume. With --shard, run every shard (on
any machines, into one shared directory or separate ones) and combine with vmmu merge.
Exit status: 0 ok, 1 a point failed or an input is bad, 2 usage errors, 130 interrupted.

Example config (docs/SCALING.md):
  { "workloads": ["compile", "database"], "mmus": ["tdp", "shadow"],
    "tlbs": ["skylake-l1d", "tiny"], "guestPaging": ["4level", "pae"], "seeds": [1, 2] }`,
    )
    .action(async (config: string, o: SweepCliOptions) => {
      done(await runSweepCli(config, o, io));
    });
}

export async function runSweepCli(configFile: string, o: SweepCliOptions, io: Io): Promise<number> {
  if (o.json && o.csv) throw new UsageError("--json and --csv exclude each other");
  const config = parseSweepConfig(readText(configFile), configFile, (f) => {
    const path = resolve(dirname(configFile), f);
    const text = readText(path);
    try {
      return JSON.parse(text) as unknown;
    } catch (e) {
      throw new InputError(`${path}: not valid JSON (${(e as Error).message})`);
    }
  });
  const out = o.out ?? `${basename(configFile).replace(/\.json$/i, "")}.sweep`;
  const jobs = o.jobs ?? availableParallelism();
  const ac = new AbortController();
  const onSigint = () => {
    io.stderr.write("\nvmmu: interrupted; finished points are kept, run the same command to resume\n");
    ac.abort();
  };
  process.once("SIGINT", onSigint);
  let summary: Awaited<ReturnType<typeof runSweep>>;
  try {
    summary = await runSweep(config, {
      out,
      jobs,
      shard: o.shard,
      signal: ac.signal,
      onPoint: o.quiet
        ? undefined
        : (e, p) => {
            const at = `[${p.finished}/${p.todo}]`;
            if (e.status === "done") io.stderr.write(`vmmu: ${at} ${e.id} (${(e.ms / 1000).toFixed(1)} s)\n`);
            else if (e.status === "failed") io.stderr.write(`vmmu: ${at} ${e.id} FAILED: ${e.error}\n`);
            else if (e.status === "invalid")
              io.stderr.write(`vmmu: ${e.id}: the result file is invalid (${e.reason}); running it again\n`);
          },
    });
  } finally {
    process.removeListener("SIGINT", onSigint);
  }
  const r = summary.results;
  if (o.json) io.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
  else if (o.csv) io.stdout.write(sweepCsv(r));
  else io.stdout.write(formatSweepTable(r));
  const shard = o.shard ? `shard ${o.shard.index}/${o.shard.count}: ` : "";
  io.stderr.write(
    `vmmu: ${shard}${summary.selected} points (${summary.ran} run, ${summary.skipped} already done, ${summary.failed.length} failed) with ${jobs === 0 ? "no worker threads" : `${jobs} worker${jobs === 1 ? "" : "s"}`}; ${r.complete} of ${r.total} points in ${out}\n`,
  );
  if (summary.wroteResults)
    io.stderr.write(`vmmu: wrote ${out}/results.json, ${out}/results.csv and ${out}/results.svg\n`);
  else if (o.shard && !summary.interrupted && summary.failed.length === 0)
    io.stderr.write(`vmmu: when every shard has finished: vmmu merge DIR... --out results.json\n`);
  for (const f of summary.failed.slice(0, 20)) io.stderr.write(`vmmu: failed: ${f.id}: ${f.error}\n`);
  for (const p of r.problems.slice(0, 20)) io.stderr.write(`vmmu: problem: ${p}\n`);
  if (summary.interrupted) return 130;
  return summary.failed.length > 0 || r.problems.length > 0 ? 1 : 0;
}

/** The parameters that can vary between points, as table columns: label and value. */
const PARAM_COLUMNS: [string, (p: SweepResultPoint) => string][] = [
  ["seed", (p) => String(p.seed)],
  ["scale", (p) => String(p.scale)],
  ["TLB", (p) => p.result.tlb],
  ["host", (p) => (p.result.hostHugePages ? "2m" : "4k")],
  ["psc/ntlb", (p) => `${p.result.caches.pagingStructure}/${p.result.caches.nestedTlb}`],
];

/** One line per point with a result: the parameters that vary, then the headline numbers. */
export function formatSweepTable(r: SweepResults): string {
  const params = PARAM_COLUMNS.filter(([, f]) => new Set(r.points.map(f)).size > 1);
  const head = [
    "point",
    ...params.map(([l]) => l),
    "cycles",
    "vs native",
    "TLB miss",
    "refs/walk",
    "VM exits",
    "digest",
  ];
  const rows = r.points.map((p) => {
    const x = p.result;
    return [
      p.id,
      ...params.map(([, f]) => f(p)),
      grouped(x.cycles),
      x.overheadVsNative === null
        ? "-"
        : `${x.overheadVsNative >= 0 ? "+" : ""}${(x.overheadVsNative * 100).toFixed(1)}%`,
      `${(x.tlbMissRate * 100).toFixed(2)}%`,
      x.refsPerCompletedWalk.toFixed(2),
      grouped(x.exitsTotal),
      x.digest,
    ];
  });
  const ws = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(ws[i]) : c.padStart(ws[i]))).join("  ");
  const title = `sweep${r.name ? ` ${r.name}` : ""}: ${r.complete} of ${r.total} points, grid ${r.grid}`;
  return `${[title, "", line(head), ...rows.map(line)].join("\n")}\n`;
}
