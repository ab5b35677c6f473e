/**
 * vmmu — the memory half of a hypervisor, in TypeScript.
 *
 * This module is the public API. Layers (see docs/ARCHITECTURE.md): `arch` (facts),
 * `mem` (physical memory), `walk` (the guest page-table walker), `dump` (memory dumps).
 *
 * @example
 * ```ts
 * import { HostMemory, Memslots, GuestPhysical, PageTableBuilder, x86Leaf, CpuRole, cpuModel, translate } from "vmmu";
 *
 * const physical = new GuestPhysical(new Memslots(), new HostMemory(64 << 20));
 * physical.memslots.add({ id: 0, baseGfn: 0, pages: 4096, hvaPage: 0x10000 });
 * const regs = { cr0: 0x80010001n, cr4: 0x20n, efer: 0xd00n };
 * const role = CpuRole.from(regs, cpuModel("qemu-max"));
 * const tables = new PageTableBuilder(physical, role.format!, bumpAllocator(physical, 0x100, 64));
 * tables.map(0x400000n, 0x200000, 4096, x86Leaf({ user: true }));
 * const t = translate(physical, { ...regs, cr3: tables.cr3 }, 0x400123n, { cpu: "qemu-max" });
 * // t.physical === 0x200123n, t.path lists the four entries
 * ```
 */

export * from "./arch/access.js";
export {
  CPU_MODELS,
  type CpuFeatures,
  type CpuRegisters,
  CpuRole,
  CpuStateError,
  cpuModel,
  DEFAULT_CPU_MODEL,
  type EptFeatures,
  type PagingMode,
} from "./arch/cpu.js";
export * from "./arch/ept.js";
export {
  type EptFormatOptions,
  eptFormat,
  FORMAT_EPT,
  FORMAT_X86,
  highAddressReserved,
  PagingFormat,
  type X86FormatOptions,
  type X86PagingMode,
  x86Format,
} from "./arch/format.js";
export * from "./arch/u64.js";
export * from "./arch/x86.js";
export {
  CMPXCHG_CHANGED,
  CMPXCHG_NOT_RAM,
  CMPXCHG_OK,
  CMPXCHG_READONLY,
  type FrameSource,
} from "./mem/frame-source.js";
export { GuestPhysical, type PhysRead, type PhysStatus } from "./mem/guest-physical.js";
export { HostAddressSpace, type InvalidateListener } from "./mem/host-address-space.js";
export { HostMemory, HostMemoryExhaustedError } from "./mem/host-memory.js";
export { type Memslot, MemslotError, type MemslotFlags, type MemslotSpec, Memslots } from "./mem/memslots.js";
export {
  bumpAllocator,
  type EntryBits,
  type EptLeafOptions,
  eptLeaf,
  PageTableBuilder,
  type TableAllocator,
  type X86LeafOptions,
  x86Leaf,
} from "./walk/builder.js";
export {
  cpuWalker,
  eptPermissionTable,
  eptWalker,
  loadCr3,
  type NptOptions,
  nptWalker,
  type RootLoad,
} from "./walk/contexts.js";
export { type CpuState, type TranslateOptions, translate } from "./walk/translate.js";
export {
  describeWalk,
  type FaultName,
  type PathEntry,
  type Translation,
  type WalkFault,
} from "./walk/translation.js";
export { VirtualMemory, type VirtualResult } from "./walk/virtual.js";
export * from "./walk/walk.js";
export { GuestWalker, type WalkerConfig } from "./walk/walker.js";

// Dump layer (src/dump): QEMU memory dumps, mapping listings, QEMU monitor formats.

export { type GuestDump, isGzip, type OpenDumpOptions, openDump, readDump } from "./dump/dump.js";
export {
  type ByteSource,
  DumpError,
  type ElfCore,
  type ElfLoadSegment,
  type ElfNote,
  EM_386,
  EM_X86_64,
  ET_CORE,
  memorySource,
  type PhysicalRange,
  PN_XNUM,
  PT_LOAD,
  PT_NOTE,
  parseElfCore,
  physicalRanges,
} from "./dump/elf.js";
export {
  type EnumerateOptions,
  enumerateMappings,
  Mapping,
  type ProtRange,
  pageTableRoot,
  protectionRanges,
} from "./dump/mappings.js";
export { DumpMemory, type MemoryPiece } from "./dump/memory.js";
export {
  canonicalAddress,
  QEMU_PG_DISABLED,
  QemuTlbFormatter,
  qemuMemLine,
  qemuTlbFlags,
} from "./dump/qemu-monitor.js";
export {
  decodeQemuCpuState,
  QEMU_CPU_STATE_SIZE,
  type QemuCpuState,
  type QemuSegment,
  qemuCpuStates,
  SEG_FLAGS_L,
} from "./dump/qemu-note.js";

// Simulated hardware (src/hw), host MMUs (src/mmu) and the VM (src/vm).

export { NestedFrameSource } from "./hw/nested-frames.js";
export {
  TLB_1G,
  TLB_2M,
  TLB_4K,
  TLB_DIRTY,
  TLB_GLOBAL,
  TLB_HIGH_FRAME,
  TLB_MISS,
  TLB_PKEY_SHIFT,
  TLB_U,
  TLB_W,
  TLB_X,
  Tlb,
  type TlbEntry,
  type TlbPermissions,
  tlbAttrs,
  tlbAttrsFromWalk,
} from "./hw/tlb.js";
export {
  DEFAULT_TLB_PRESET,
  formatTlbSpec,
  type NormalizedTlbConfig,
  normalizeTlbConfig,
  parseTlbSpec,
  TLB_MAX_ENTRIES,
  TLB_MAX_SETS,
  TLB_MAX_WAYS,
  TLB_POLICIES,
  TLB_PRESETS,
  TLB_SIZES,
  type TlbConfig,
  TlbConfigError,
  type TlbGeometry,
  type TlbPolicy,
  type TlbSize,
  tlbPreset,
} from "./hw/tlb-config.js";
export * from "./hw/tlb-stats.js";
export {
  TWO_D_GUEST_FAULT,
  TWO_D_HOST_FAULT,
  TWO_D_OK,
  TwoDimensionalWalk,
} from "./hw/two-dimensional-walk.js";
export { type MemslotChange, MMU_MMIO, MMU_RETRY, type Mmu, type MmuHost, type MmuVcpu } from "./mmu/mmu.js";
export { MMIO_GEN_BITS, SPTE_HOST_WRITABLE_HI, SPTE_MMU_WRITABLE_HI, SpteFormat } from "./mmu/spte.js";
export { TdpMmu, type TdpMmuOptions } from "./mmu/tdp/tdp-mmu.js";
export { MmioBus, type MmioDevice } from "./vm/mmio.js";
export {
  ACCESS_FAULTED,
  ACCESS_OK,
  type AccessResult,
  type ExitCounts,
  type GuestFault,
  Vcpu,
} from "./vm/vcpu.js";
export { type MemslotOptions, Vm, type VmOptions } from "./vm/vm.js";

// The guest OS model (src/guest).

export * from "./guest/allocator.js";
export * from "./guest/layout.js";
export * from "./guest/lguest-ops.js";
export * from "./guest/model.js";
export * from "./guest/os.js";
export * from "./guest/paravirt.js";
export {
  GuestStoppedError,
  MMU_EMULATE,
  MMU_INJECT,
  type PagingHypercall,
  ShadowMmu,
  type ShadowMmuOptions,
  type ShadowVcpu,
} from "./mmu/shadow/shadow-mmu.js";
export { ShadowPages } from "./mmu/shadow/shadow-pages.js";

// The simulator (src/sim): workloads, lackey traces, the runner, the cost model, reports.

export {
  CostConfigError,
  type CostCounts,
  type CostModel,
  CYCLE_CAUSES,
  type CycleBreakdown,
  costModelFrom,
  cyclesOf,
  DEFAULT_COSTS,
  EXIT_KINDS,
  type ExitCosts,
  parseCostModel,
} from "./sim/cost.js";
export {
  type LackeyOptions,
  LackeyParser,
  type LackeyTrace,
  layoutTrace,
  parseLackey,
  readLackeyFile,
  TRACE_INSTR,
  TRACE_LOAD,
  TRACE_MODIFY,
  TRACE_STORE,
  TraceBuffer,
  TraceError,
  type TraceLayout,
  type TraceProblem,
  type TraceProgramOptions,
  type TraceRegion,
  tracePages,
  traceProgram,
} from "./sim/lackey.js";
export {
  expandTouches,
  type Program,
  type ProgramEnv,
  REGION_DATA,
  REGION_STACK,
  REGION_TEXT,
  type SimOp,
  TOUCH_KINDS,
  TouchBatch,
} from "./sim/program.js";
export { Prng } from "./sim/random.js";
export { formatJson, formatSvg, formatTable, reportTitle } from "./sim/report.js";
export {
  ALL_MMUS,
  type ExitTotals,
  GUEST_PAGING_MODES,
  MMU_NAMES,
  type MmuName,
  NATIVE_WALK_DEPTH,
  type NativeEstimate,
  nativeFrom,
  parseMmuList,
  type RunConfig,
  type RunOptions,
  type RunResult,
  runProgram,
  type SimulateOptions,
  SimulationError,
  type SimulationReport,
  simulate,
} from "./sim/runner.js";
export {
  assembleSweep,
  type CacheSizes,
  canonicalParams,
  expandGrid,
  gridHash,
  groupReports,
  type HostPages,
  type PointParams,
  type PointRecord,
  parseShard,
  parseSweepConfig,
  pointOf,
  pointRecord,
  pointRecordProblem,
  runPoint,
  type Shard,
  SWEEP_SCHEMA_VERSION,
  type SweepConfig,
  SweepConfigError,
  type SweepPoint,
  type SweepResultPoint,
  type SweepResults,
  shardOf,
  sweepConfigFrom,
  sweepCsv,
  sweepSvg,
} from "./sim/sweep.js";
export { type MergeOptions, type MergeOutcome, mergeSweepDirs } from "./sim/sweep-merge.js";
export {
  collectRecords,
  type PointEvent,
  readManifest,
  readPointRecord,
  runSweep,
  SweepDirError,
  type SweepManifest,
  type SweepRunOptions,
  type SweepRunSummary,
  writeFileAtomic,
  writeResults,
} from "./sim/sweep-run.js";
export {
  churn,
  compile,
  database,
  server,
  stream,
  WORKLOADS,
  type Workload,
  type WorkloadOptions,
  workload,
} from "./sim/workloads.js";
