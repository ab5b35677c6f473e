/**
 * `vmmu workloads`: the built-in workloads of `vmmu simulate`, with their intent.
 */

import { WORKLOADS } from "../sim/workloads.js";
import type { Io } from "./io.js";

export function runWorkloads(o: { json?: boolean }, io: Io): number {
  const list = WORKLOADS.map((w) => {
    const p = w.create();
    return { name: w.name, intent: w.intent, cpus: p.cpus, ramMiB: Math.ceil(p.ramPages / 256) };
  });
  if (o.json) {
    io.stdout.write(`${JSON.stringify({ schemaVersion: 1, workloads: list }, null, 2)}\n`);
    return 0;
  }
  const w = Math.max(...list.map((x) => x.name.length));
  for (const x of list)
    io.stdout.write(`${x.name.padEnd(w)}  ${x.intent} (${x.cpus} vCPU${x.cpus > 1 ? "s" : ""})\n`);
  io.stdout.write("\nRun one with: vmmu simulate --workload NAME [--mmu all] [--scale X] [--seed N]\n");
  return 0;
}
