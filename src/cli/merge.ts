/**
 * `vmmu merge DIR... --out FILE`: combines the output directories of the shards of one
 * sweep into one results document (and optionally CSV and chart). Duplicate points with
 * identical results and stray files are warnings; conflicting results, directories of
 * different sweeps and (without --allow-missing) missing points are errors: exit 1 and
 * nothing written.
 */

import { writeFileSync } from "node:fs";
import type { Command } from "commander";
import { sweepCsv, sweepSvg } from "../sim/sweep.js";
import { mergeSweepDirs } from "../sim/sweep-merge.js";
import type { Io } from "./io.js";
import { InputError } from "./simulate.js";

export interface MergeCliOptions {
  out: string;
  csv?: string;
  svg?: string;
  allowMissing?: boolean;
}

function write(file: string, text: string): void {
  try {
    writeFileSync(file, text);
  } catch (e) {
    throw new InputError(`cannot write ${file}: ${(e as Error).message}`);
  }
}

export function registerMerge(program: Command, io: Io, done: (code: number) => void): void {
  program
    .command("merge")
    .description("combine the output directories of sweep shards into one results file")
    .argument("<dir...>", "output directories of vmmu sweep (one per shard, or shared)")
    .requiredOption("--out <file>", "the merged results document (JSON, as results.json)")
    .option("--csv <file>", "also write the results as CSV")
    .option("--svg <file>", "also write the chart")
    .option("--allow-missing", "merge even when some points have no result (they are listed)")
    .addHelpText(
      "after",
      `
Exit status: 0 ok (warnings on stderr), 1 conflicting or missing points, directories of
different sweeps, unreadable files.

Example:
  vmmu merge out/shard-* --out results.json --csv results.csv --svg results.svg`,
    )
    .action((dirs: string[], o: MergeCliOptions) => {
      done(runMerge(dirs, o, io));
    });
}

export function runMerge(dirs: string[], o: MergeCliOptions, io: Io): number {
  const m = mergeSweepDirs(dirs, { allowMissing: o.allowMissing });
  for (const w of m.warnings) io.stderr.write(`vmmu: warning: ${w}\n`);
  if (m.errors.length > 0) {
    for (const e of m.errors.slice(0, 20)) io.stderr.write(`vmmu: error: ${e}\n`);
    if (m.errors.length > 20) io.stderr.write(`vmmu: ... and ${m.errors.length - 20} more errors\n`);
    io.stderr.write("vmmu: nothing written\n");
    return 1;
  }
  const r = m.results;
  write(o.out, `${JSON.stringify(r, null, 2)}\n`);
  if (o.csv) write(o.csv, sweepCsv(r));
  if (o.svg) write(o.svg, sweepSvg(r));
  io.stderr.write(
    `vmmu: merged ${r.complete} of ${r.total} points from ${dirs.length} director${dirs.length === 1 ? "y" : "ies"} into ${o.out}\n`,
  );
  for (const p of r.problems.slice(0, 20)) io.stderr.write(`vmmu: problem: ${p}\n`);
  return r.problems.length > 0 ? 1 : 0;
}
