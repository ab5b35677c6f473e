/**
 * Profiling driver for the simulator's operation loop: the `hot` workload (one process
 * touching 48 pages round-robin) under one MMU. Run with `node --cpu-prof` through tsx, or
 * plain to print the rate.
 *   npx tsx bench/profile-sim.ts [tdp|shadow|shadow-pv] [rounds] [batched]
 */
import { type MmuName, runProgram } from "../src/index.js";
import { hotProgram } from "./lib/sim-programs.js";

const mmu = (process.argv[2] ?? "tdp") as MmuName;
const rounds = Number(process.argv[3] ?? 40000);
const batched = process.argv[4] === "batched";
runProgram(hotProgram(48, 200, batched), { mmu });
const t0 = process.cpuUsage();
const r = runProgram(hotProgram(48, rounds, batched), { mmu });
const t = process.cpuUsage(t0);
const s = (t.user + t.system) / 1e6;
console.log(
  `${mmu}: ${r.userAccesses} touches in ${s.toFixed(2)} s CPU: ${(r.userAccesses / s / 1e6).toFixed(2)} M/s (whole run, boot included)`,
);
