/**
 * An Intel EPT table with an execute-only page: translate guest-physical addresses and
 * decode an EPT violation's exit qualification. Run: npx tsx examples/ept-walk.ts
 */
import {
  ACCESS_FETCH,
  ACCESS_LINEAR_VALID,
  cpuModel,
  EPTQ_EXECUTABLE,
  EPTQ_READ,
  eptFormat,
  eptLeaf,
  eptWalker,
  HostMemory,
  PageTableBuilder,
  Walk,
} from "../src/index.js";

const cpu = cpuModel("intel-sapphirerapids");
const host = new HostMemory(16 << 20); // EPT tables live in host memory
const format = eptFormat({
  levels: 4,
  maxPhyAddr: 52,
  executeOnly: true,
  mbec: false,
  gbPages: true,
  accessedDirty: true,
});
const ept = new PageTableBuilder(host, format, () => host.alloc());
ept.map(0x100000n, 0x7000000, 4096, eptLeaf({ read: false, write: false, execute: true }));

// EPTP: WB memory type (6), 4-level walk (3 << 3), A/D enabled (bit 6).
const walker = eptWalker(host, ept.cr3 | 0x5en, cpu);
const w = new Walk();

console.log(
  "fetch:",
  walker.walk(0, 0x100010, ACCESS_FETCH, w) ? `ok → ${w.address.toString(16)}` : "violation",
);
walker.walk(0, 0x100010, ACCESS_LINEAR_VALID, w);
const q = w.errorCode;
console.log(`read: EPT violation, exit qualification ${q.toString(16)}`);
console.log(
  `  data read: ${!!(q & EPTQ_READ)}, page executable: ${!!(q & EPTQ_EXECUTABLE)}, readable: ${!!(q & 8)}`,
);
