/** The simulator benchmark's programs (sim.bench.ts, profile-sim.ts). */
import { PROT_READ, PROT_WRITE, type Program, type SimOp } from "../../src/index.js";

/**
 * One process, `pages` pages touched round-robin `rounds` times (reads, every 4th a write).
 * `batched`: each round is one `touches` operation instead of `pages` `touch` operations
 * (the same accesses and values, the same results).
 */
export function hotProgram(pages: number, rounds: number, batched = false): Program {
  return {
    name: batched ? "hot-batched" : "hot",
    cpus: 1,
    ramPages: 16 * 256,
    *ops(): Generator<SimOp> {
      yield { op: "spawn", proc: 0 };
      yield { op: "mmap", proc: 0, region: 0, pages, prot: PROT_READ | PROT_WRITE };
      for (let p = 0; p < pages; p++)
        yield { op: "touch", proc: 0, region: 0, offset: p * 4096, kind: "write" };
      if (batched) {
        const offset = new Uint32Array(pages);
        const kind = new Uint8Array(pages);
        for (let r = 0; r < rounds; r++) {
          for (let p = 0; p < pages; p++) {
            offset[p] = p * 4096 + ((r * 4) & 4092);
            kind[p] = (r + p) & 3 ? 0 : 1;
          }
          yield { op: "touches", proc: 0, region: 0, offset, kind };
        }
        return;
      }
      for (let r = 0; r < rounds; r++)
        for (let p = 0; p < pages; p++)
          yield {
            op: "touch",
            proc: 0,
            region: 0,
            offset: p * 4096 + ((r * 4) & 4092),
            kind: (r + p) & 3 ? "read" : "write",
          };
    },
  };
}

/** A 4 GiB guest, one mapping of 2^20 pages each read once. */
export function millionProgram(): Program {
  const pages = 1 << 20;
  return {
    name: "million",
    cpus: 1,
    ramPages: pages + 32 * 256,
    *ops(): Generator<SimOp> {
      yield { op: "spawn", proc: 0 };
      yield { op: "mmap", proc: 0, region: 0, pages, prot: PROT_READ | PROT_WRITE };
      for (let p = 0; p < pages; p++)
        yield { op: "touch", proc: 0, region: 0, offset: p * 4096, kind: "read" };
    },
  };
}
