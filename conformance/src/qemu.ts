/** Runs case batches in QEMU through the conformance kernel and parses what it reports. */

import { spawn } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { type Case, encodeBatch } from "./case.js";
import type { ModeNumber } from "./layout.js";
import type { Outcome } from "./oracle.js";

const KERNEL_DIR = fileURLToPath(new URL("../kernel/", import.meta.url));
const OUT_DIR = fileURLToPath(new URL("../out/", import.meta.url));

export interface KernelHeader {
  mode: number;
  cpuid7ecx: number;
  maxPhyAddr: number;
}

export interface BatchResult {
  header: KernelHeader | null;
  /** Outcome per case index; missing when QEMU stopped before reporting it. */
  outcomes: (Outcome | undefined)[];
  /** Lines the kernel marked as errors. */
  errors: string[];
  status: number;
}

/** Runs one batch; resolves with whatever the kernel reported (partial on a crash). */
export async function runBatch(mode: ModeNumber, cases: readonly Case[], tag: string): Promise<BatchResult> {
  mkdirSync(OUT_DIR, { recursive: true });
  const batch = `${OUT_DIR}batch-${tag}.bin`;
  const out = `${OUT_DIR}batch-${tag}.out`;
  writeFileSync(batch, encodeBatch(mode, cases));
  const status = await new Promise<number>((resolve) => {
    const p = spawn(`${KERNEL_DIR}run-batch.sh`, [`${KERNEL_DIR}build`, batch, out], {
      stdio: ["ignore", "ignore", "inherit"],
    });
    p.on("exit", (code) => resolve(code ?? 1));
  });
  let text = "";
  try {
    text = readFileSync(out, "utf8");
  } catch {
    // no output at all: QEMU did not start
  }
  return { ...parseOutput(text, cases.length), status };
}

export function parseOutput(text: string, count: number): Omit<BatchResult, "status"> {
  const outcomes: (Outcome | undefined)[] = new Array(count);
  const errors: string[] = [];
  let header: KernelHeader | null = null;
  for (const line of text.split("\n")) {
    const f = line.trim().split(/\s+/);
    if (f[0] === "VMMU-KERNEL") {
      const kv = Object.fromEntries(f.slice(2).map((x) => x.split("=")));
      header = {
        mode: Number(kv.mode),
        cpuid7ecx: Number.parseInt(kv.cpuid7ecx, 16),
        maxPhyAddr: Number(kv.maxphyaddr),
      };
    } else if (f[0] === "C" && f.length >= 5) {
      const i = Number(f[1]);
      if (!(i >= 0 && i < count)) continue;
      outcomes[i] = {
        vector: f[2] === "-" ? null : Number(f[2]),
        errorCode: f[3] === "-" ? null : Number.parseInt(f[3], 16),
        cr2: f[4] === "-" ? null : BigInt(`0x${f[4]}`),
        watches: f.slice(5).map((x) => BigInt(`0x${x}`)),
      };
    } else if (f[0] === "ERR") errors.push(line.trim());
  }
  return { header, outcomes, errors };
}

/** Builds the kernel if needed (make is idempotent). */
export async function buildKernel(): Promise<void> {
  const code = await new Promise<number>((resolve) => {
    const p = spawn("make", ["-s", "-C", KERNEL_DIR], { stdio: ["ignore", "inherit", "inherit"] });
    p.on("exit", (c) => resolve(c ?? 1));
  });
  if (code !== 0) throw new Error(`building the conformance kernel failed (make exit ${code})`);
}
