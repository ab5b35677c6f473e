/**
 * `vmmu simulate`: one workload (or valgrind traces) under several host MMUs; a table on
 * stdout, optionally JSON and an SVG chart; progress on stderr only when it is a terminal.
 * Exit status 0, or 1 when a check found a problem, the guest digests differ or an input
 * is bad (trace, cost file); usage errors (2) are thrown as UsageError.
 */

import { readFileSync, writeFileSync } from "node:fs";
import { type Command, InvalidArgumentError, Option } from "commander";
import { CPU_MODELS, DEFAULT_CPU_MODEL } from "../arch/cpu.js";
import type { GuestPagingMode } from "../guest/layout.js";
import { DEFAULT_TLB_PRESET, parseTlbSpec, TlbConfigError } from "../hw/tlb-config.js";
import { type CostModel, DEFAULT_COSTS, parseCostModel } from "../sim/cost.js";
import { type LackeyTrace, readLackeyFile, traceProgram } from "../sim/lackey.js";
import type { Program } from "../sim/program.js";
import { formatJson, formatSvg, formatTable, grouped } from "../sim/report.js";
import { GUEST_PAGING_MODES, MMU_NAMES, type MmuName, parseMmuList, simulate } from "../sim/runner.js";
import { WORKLOADS, workload } from "../sim/workloads.js";
import { type Io, UsageError } from "./io.js";
import { parseIndex } from "./registers.js";
import { runWorkloads } from "./workloads.js";

/** A file that cannot be read or written: exit status 1. */
export class InputError extends Error {
  override name = "InputError";
}

/** Runs `f`, turning file-system errors into InputErrors naming `file`. */
function fileOp<T>(file: string, what: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof Error && "code" in e) throw new InputError(`cannot ${what} ${file}: ${e.message}`);
    throw e;
  }
}

function parseSeed(value: string): number {
  const n = parseIndex(value);
  if (!Number.isSafeInteger(n)) throw new InvalidArgumentError(`seed ${value} is too large`);
  return n;
}

function parseScale(value: string): number {
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n) || n <= 0 || n > 1000)
    throw new InvalidArgumentError(`"${value}" is not a scale in (0, 1000]`);
  return n;
}

function parsePositive(value: string): number {
  const n = parseIndex(value);
  if (n < 1) throw new InvalidArgumentError("must be at least 1");
  return n;
}

/** Registers `vmmu simulate` and `vmmu workloads` on the program; `done` receives the exit status. */
export function registerSimulate(program: Command, io: Io, done: (code: number) => void): void {
  program
    .command("simulate")
    .description("run a workload or valgrind traces under several host MMUs and compare their costs")
    .option(
      "--workload <name>",
      `built-in workload (${WORKLOADS.map((w) => w.name).join(", ")}; default compile)`,
    )
    .option("--trace <file...>", "valgrind lackey traces (--tool=lackey --trace-mem=yes), one process each")
    .option("--mmu <list>", `MMUs, comma-separated, or all (${MMU_NAMES.join(", ")})`, "tdp,shadow,shadow-pv")
    .addOption(
      new Option("--guest-paging <mode>", "the guest's paging mode")
        .choices(GUEST_PAGING_MODES)
        .default("4level"),
    )
    .option("--tlb <spec>", "TLB preset or spec (docs/TLB.md)", DEFAULT_TLB_PRESET)
    .option("--seed <n>", "PRNG seed of the workload", parseSeed, 1)
    .option("--scale <x>", "workload size factor", parseScale, 1)
    .option("--quantum <n>", "trace accesses per time slice with several traces", parsePositive, 10000)
    .option("--strict-trace", "a malformed trace line is an error (default: skipped with a warning)")
    .option("--psc <entries>", "paging-structure cache entries per level (0: off)", parseIndex, 0)
    .option("--nested-tlb <entries>", "nested TLB entries for 2-D walks (0: off)", parseIndex, 0)
    .option("--host-4k", "back guest RAM with 4 KiB host pages, no TDP huge pages")
    .option("--no-pcid", "no PCIDs in 4/5-level guests")
    .addOption(
      new Option("--cpu <model>", "CPU model").choices(Object.keys(CPU_MODELS)).default(DEFAULT_CPU_MODEL),
    )
    .option("--cost <file>", "JSON file overriding cycles per event (docs/SIMULATOR.md)")
    .option("--check", "audit every MMU (vm.check) and the guest periodically; compare digests")
    .option("--json <file>", "also write the JSON report to FILE (- : JSON on stdout instead of the table)")
    .option("--svg <file>", "write an SVG chart of cycles per MMU by cause")
    .addHelpText(
      "after",
      `
Counters cover everything after the guest boots. The native column is an estimate made
from the TDP run (docs/SIMULATOR.md). Output is deterministic for a seed.
Exit status: 0 ok, 1 a check failed, digests differ or an input is bad, 2 usage errors.

Examples:
  vmmu simulate --workload database --mmu all
  vmmu simulate --workload server --guest-paging pae --tlb skylake-stlb --json out.json --svg out.svg
  valgrind --tool=lackey --trace-mem=yes --log-file=ls.lackey ls && vmmu simulate --trace ls.lackey`,
    )
    .action(async (o: SimulateCliOptions) => {
      done(await runSimulate(o, io));
    });

  program
    .command("workloads")
    .description("list the built-in workloads of simulate")
    .option("--json", "machine-readable output")
    .action((o: { json?: boolean }) => {
      done(runWorkloads(o, io));
    });
}

export interface SimulateCliOptions {
  workload?: string;
  trace?: string[];
  mmu: string;
  guestPaging: GuestPagingMode;
  tlb: string;
  seed: number;
  scale: number;
  json?: string;
  svg?: string;
  check?: boolean;
  cost?: string;
  quantum: number;
  strictTrace?: boolean;
  psc: number;
  nestedTlb: number;
  host4k?: boolean;
  pcid: boolean;
  cpu: string;
}

/** Operations between audits with --check. */
const CHECK_EVERY = 2000;

/** The workload run when neither --workload nor --trace is given (what `npm start` shows). */
export const DEFAULT_WORKLOAD = "compile";

export async function runSimulate(o: SimulateCliOptions, io: Io): Promise<number> {
  if (o.workload === undefined && (o.trace === undefined || o.trace.length === 0))
    o = { ...o, workload: DEFAULT_WORKLOAD };
  if (o.workload !== undefined && o.trace !== undefined)
    throw new UsageError("--workload and --trace exclude each other");
  let mmus: MmuName[];
  try {
    mmus = parseMmuList(o.mmu);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  try {
    parseTlbSpec(o.tlb);
  } catch (e) {
    if (e instanceof TlbConfigError) throw new UsageError(`--tlb: ${e.message}`);
    throw e;
  }
  let program: Program;
  if (o.workload !== undefined) {
    try {
      program = workload(o.workload).create({ scale: o.scale, seed: o.seed });
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
  } else {
    const traces: LackeyTrace[] = [];
    for (const file of o.trace ?? []) {
      const t = fileOp(file, "read", () => readLackeyFile(file, { strict: o.strictTrace }));
      if (t.malformed > 0) {
        const first = t.problems.map((p) => `\n  ${p.file}:${p.line}: ${p.reason}: "${p.text}"`).join("");
        io.stderr.write(
          `vmmu: warning: ${file}: ${t.malformed} malformed line${t.malformed === 1 ? "" : "s"} skipped (--strict-trace makes this an error)${first}\n`,
        );
      }
      if (t.accesses.count === 0) throw new InputError(`${file}: no memory accesses in the trace`);
      traces.push(t);
    }
    program = traceProgram(traces, { quantum: o.quantum });
  }
  let costs: CostModel = DEFAULT_COSTS;
  if (o.cost !== undefined) {
    const file = o.cost;
    costs = parseCostModel(
      fileOp(file, "read", () => readFileSync(file, "utf8")),
      file,
    );
  }

  const tty = (io.stderr as { isTTY?: boolean }).isTTY === true;
  const report = simulate(program, {
    mmus,
    guestPaging: o.guestPaging,
    tlb: o.tlb,
    caches: { pagingStructure: o.psc, nestedTlb: o.nestedTlb },
    cpu: o.cpu,
    pcid: o.pcid,
    hostHugePages: !o.host4k,
    checkEvery: o.check ? CHECK_EVERY : 0,
    costs,
    seed: o.seed,
    scale: o.workload !== undefined ? o.scale : undefined,
    onProgress: tty
      ? (e) =>
          io.stderr.write(
            `\r\x1b[Kvmmu: ${e.mmu} (run ${e.run + 1} of ${e.runs}): ${grouped(e.ops)}${e.totalOps ? ` of ${grouped(e.totalOps)}` : ""} operations`,
          )
      : undefined,
  });
  if (tty) io.stderr.write("\r\x1b[K");

  if (o.json === "-") io.stdout.write(formatJson(report));
  else {
    io.stdout.write(formatTable(report));
    const json = o.json;
    if (json !== undefined) fileOp(json, "write", () => writeFileSync(json, formatJson(report)));
  }
  const svg = o.svg;
  if (svg !== undefined) fileOp(svg, "write", () => writeFileSync(svg, formatSvg(report)));
  if (o.check) {
    const audits = report.runs.reduce((s, r) => s + r.checks, 0);
    io.stderr.write(`vmmu: check: ${audits} audits, ${report.problems.length} problems\n`);
  }
  for (const p of report.problems.slice(0, 20)) io.stderr.write(`vmmu: problem: ${p}\n`);
  if (report.problems.length > 20)
    io.stderr.write(`vmmu: ... and ${report.problems.length - 20} more problems\n`);
  return report.problems.length > 0 ? 1 : 0;
}
