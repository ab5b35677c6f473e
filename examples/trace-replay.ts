/**
 * Replay a valgrind lackey trace (valgrind --tool=lackey --trace-mem=yes PROGRAM) as a
 * guest process, in a 64-bit and a PAE guest (whose 3 GiB user space cannot hold the
 * traced stack near 128 GiB, so the trace's regions are packed lower), and print the text
 * report. Run: npx tsx examples/trace-replay.ts [FILE]
 */
import { fileURLToPath } from "node:url";
import { formatTable, layoutTrace, readLackeyFile, simulate, traceProgram } from "../src/index.js";

const file = process.argv[2]?.endsWith(".lackey")
  ? process.argv[2]
  : fileURLToPath(new URL("../test/fixtures/lackey/true.lackey", import.meta.url));
const trace = readLackeyFile(file);
console.log(`${trace.name}: ${trace.accesses.count} accesses, ${trace.malformed} malformed lines`);
const pae = layoutTrace(trace, 1, 0xc0000);
console.log(
  `${pae.pages} pages in ${pae.regions.length} regions; relocated in a PAE guest: ${pae.relocated}`,
);
for (const guestPaging of ["4level", "pae"] as const)
  console.log(formatTable(simulate(traceProgram([trace]), { guestPaging, mmus: ["tdp", "shadow"] })));
