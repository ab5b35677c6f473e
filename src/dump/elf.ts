/**
 * ELF core files as QEMU's `dump-guest-memory` writes them (dump/dump.c): a little-endian
 * ET_CORE file whose PT_LOAD segments hold guest-physical memory (`p_paddr`) and whose
 * PT_NOTE segment holds per-CPU notes.
 *
 * ```
 *  ELF header | program headers: PT_NOTE, PT_LOAD × n | notes | memory ...
 *  PT_LOAD i: guest-physical [p_paddr, p_paddr + p_memsz) ← file [p_offset, p_offset + p_filesz),
 *             the rest of p_memsz (p_memsz > p_filesz) reads as zeros
 *  e_phnum = 0xffff (PN_XNUM): the real count is sh_info of section header 0
 * ```
 *
 * QEMU writes ELF64 for 64-bit guests and for 32-bit guests with memory above 4 GiB,
 * ELF32 otherwise; both are read. Everything is validated, and every problem is a
 * `DumpError` naming what is wrong and where.
 */

/** Thrown for a file that is not a usable memory dump; the message names the problem and where. */
export class DumpError extends Error {
  override name = "DumpError";
}

export const ET_CORE = 4;
export const EM_386 = 3;
export const EM_X86_64 = 62;
export const PT_LOAD = 1;
export const PT_NOTE = 4;
/** e_phnum value meaning "the count is in section header 0" (ELF gABI, extended numbering). */
export const PN_XNUM = 0xffff;

/** Random access to the bytes of a file (in memory, or read on demand). */
export interface ByteSource {
  /** Total size in bytes. */
  readonly size: number;
  /** Exactly `length` bytes at `offset`; the caller checks bounds first. */
  read(offset: number, length: number): Uint8Array;
}

/** A byte source over bytes already in memory (no copies). */
export function memorySource(bytes: Uint8Array): ByteSource {
  return {
    size: bytes.length,
    read: (offset, length) => bytes.subarray(offset, offset + length),
  };
}

/** A PT_LOAD program header. */
export interface ElfLoadSegment {
  /** Index among all program headers. */
  readonly index: number;
  /** File offset of the segment's bytes. */
  readonly offset: number;
  /** Guest-physical address of the first byte. */
  readonly paddr: number;
  /** Virtual address QEMU recorded (0, or the guest-virtual address with `dump-guest-memory -p`). */
  readonly vaddr: bigint;
  /** Bytes present in the file. */
  readonly fileSize: number;
  /** Bytes of guest memory described; past `fileSize` they read as zeros. */
  readonly memSize: number;
}

/** One ELF note. */
export interface ElfNote {
  readonly name: string;
  readonly type: number;
  readonly desc: Uint8Array;
  /** Program header index of the PT_NOTE segment holding it. */
  readonly segment: number;
}

export interface ElfCore {
  readonly elfClass: 32 | 64;
  /** EM_X86_64 or EM_386. */
  readonly machine: number;
  /** Number of program headers. */
  readonly programHeaders: number;
  /** PT_LOAD segments in file order. */
  readonly loads: readonly ElfLoadSegment[];
  readonly notes: readonly ElfNote[];
}

const MAX_PHYS = 2 ** 52;

/** Parses and validates the headers and notes of an x86 ELF core (memory is not read). */
export function parseElfCore(src: ByteSource): ElfCore {
  if (src.size < 16 || !isElfMagic(src.read(0, 4)))
    throw new DumpError("not an ELF file (no \\x7fELF magic at offset 0)");
  const ident = src.read(0, 16);
  const cls = ident[4];
  if (cls !== 1 && cls !== 2)
    throw new DumpError(`unknown ELF class ${cls} (expected 1 = ELF32 or 2 = ELF64)`);
  if (ident[5] === 2) throw new DumpError("big-endian ELF file: x86 dumps are little-endian");
  if (ident[5] !== 1)
    throw new DumpError(`unknown ELF data encoding ${ident[5]} (expected 1 = little-endian)`);
  const is64 = cls === 2;
  const ehsize = is64 ? 64 : 52;
  if (src.size < ehsize)
    throw new DumpError(
      `truncated ELF header: the file has ${src.size} bytes, an ELF${is64 ? 64 : 32} header needs ${ehsize}`,
    );
  const eh = view(src.read(0, ehsize));
  const type = eh.getUint16(16, true);
  const machine = eh.getUint16(18, true);
  if (type !== ET_CORE)
    throw new DumpError(`not a core file: e_type is ${type} (${typeName(type)}), expected 4 (ET_CORE)`);
  if (machine !== EM_X86_64 && machine !== EM_386)
    throw new DumpError(`wrong machine: e_machine is ${machine}, expected 62 (x86-64) or 3 (i386)`);
  const phoff = is64 ? u64(eh, 32, "e_phoff") : eh.getUint32(28, true);
  const shoff = is64 ? u64(eh, 40, "e_shoff") : eh.getUint32(32, true);
  const phentsize = eh.getUint16(is64 ? 54 : 42, true);
  let phnum = eh.getUint16(is64 ? 56 : 44, true);
  const shentsize = eh.getUint16(is64 ? 58 : 46, true);
  const wantPhent = is64 ? 56 : 32;
  if (phnum === PN_XNUM) phnum = extendedPhnum(src, is64, shoff, shentsize);
  if (phnum === 0) throw new DumpError("the ELF file has no program headers (no PT_LOAD segment)");
  if (phentsize !== wantPhent)
    throw new DumpError(`e_phentsize is ${phentsize}, expected ${wantPhent} for ELF${is64 ? 64 : 32}`);
  if (phoff + phnum * phentsize > src.size)
    throw new DumpError(
      `truncated program headers: ${phnum} × ${phentsize} bytes at offset ${hex(phoff)} end at ${hex(phoff + phnum * phentsize)}, past the end of the file (${hex(src.size)} bytes)`,
    );

  const ph = view(src.read(phoff, phnum * phentsize));
  const loads: ElfLoadSegment[] = [];
  const notes: ElfNote[] = [];
  for (let i = 0; i < phnum; i++) {
    const b = i * phentsize;
    const ptype = ph.getUint32(b, true);
    if (ptype !== PT_LOAD && ptype !== PT_NOTE) continue;
    const what = `segment ${i} (${ptype === PT_LOAD ? "PT_LOAD" : "PT_NOTE"})`;
    let offset: number;
    let vaddr: bigint;
    let paddr: number;
    let fileSize: number;
    let memSize: number;
    if (is64) {
      fileSize = u64(ph, b + 32, `${what} p_filesz`);
      memSize = u64(ph, b + 40, `${what} p_memsz`);
      // QEMU writes p_offset = -1 for a `-p` mapping of non-RAM with no file bytes.
      offset = fileSize === 0 ? 0 : u64(ph, b + 8, `${what} p_offset`);
      vaddr = ph.getBigUint64(b + 16, true);
      paddr = u64(ph, b + 24, `${what} p_paddr`);
    } else {
      offset = ph.getUint32(b + 4, true);
      vaddr = BigInt(ph.getUint32(b + 8, true));
      paddr = ph.getUint32(b + 12, true);
      fileSize = ph.getUint32(b + 16, true);
      memSize = ph.getUint32(b + 20, true);
    }
    if (fileSize > 0 && offset + fileSize > src.size)
      throw new DumpError(
        `truncated ${what}: file bytes ${hex(offset)}..${hex(offset + fileSize)} extend past the end of the file (${hex(src.size)} bytes)`,
      );
    if (ptype === PT_NOTE) {
      parseNotes(src.read(offset, fileSize), i, notes);
      continue;
    }
    if (fileSize > memSize)
      throw new DumpError(`${what}: p_filesz ${hex(fileSize)} is larger than p_memsz ${hex(memSize)}`);
    if (paddr + memSize > MAX_PHYS)
      throw new DumpError(
        `${what}: guest-physical range ${hex(paddr)}..${hex(paddr + memSize)} goes past 2^52 (the x86 physical address limit)`,
      );
    if (memSize === 0) continue;
    loads.push({ index: i, offset, paddr, vaddr, fileSize, memSize });
  }
  if (loads.length === 0) throw new DumpError("no PT_LOAD segment: the dump holds no memory");
  return { elfClass: is64 ? 64 : 32, machine, programHeaders: phnum, loads, notes };
}

/** A maximal guest-physical range built from one or more PT_LOAD segments that agree. */
export interface PhysicalRange {
  readonly paddr: number;
  /** Bytes backed by the file from `offset`. */
  readonly fileSize: number;
  /** Bytes of memory, `fileSize` of them from the file, the rest zeros. */
  readonly memSize: number;
  readonly offset: number;
  /** Program header indices merged into this range. */
  readonly segments: readonly number[];
}

/**
 * Sorts the PT_LOAD segments by guest-physical address and checks that they do not
 * overlap. Overlaps that describe the same bytes (same file offset for every address,
 * file-backed on both sides, as `dump-guest-memory -p` writes when two virtual mappings
 * alias one physical range) are merged; any other overlap is a DumpError.
 */
export function physicalRanges(loads: readonly ElfLoadSegment[]): PhysicalRange[] {
  const sorted = [...loads].sort((a, b) => a.paddr - b.paddr || a.index - b.index);
  const out: {
    paddr: number;
    fileSize: number;
    memSize: number;
    offset: number;
    segments: number[];
  }[] = [];
  for (const s of sorted) {
    const cur = out[out.length - 1];
    if (cur === undefined || s.paddr >= cur.paddr + cur.memSize) {
      out.push({
        paddr: s.paddr,
        fileSize: s.fileSize,
        memSize: s.memSize,
        offset: s.offset,
        segments: [s.index],
      });
      continue;
    }
    const ovStart = s.paddr;
    const ovEnd = Math.min(cur.paddr + cur.memSize, s.paddr + s.memSize);
    const sameBytes =
      cur.offset - cur.paddr === s.offset - s.paddr &&
      ovEnd <= cur.paddr + cur.fileSize &&
      ovEnd <= s.paddr + s.fileSize;
    const bothZeros = cur.fileSize === 0 && s.fileSize === 0;
    if (!sameBytes && !bothZeros)
      throw new DumpError(
        `overlapping segments: PT_LOAD ${cur.segments[cur.segments.length - 1]} and PT_LOAD ${s.index} both describe guest-physical ${hex(ovStart)}..${hex(ovEnd)} with different contents`,
      );
    const end = Math.max(cur.paddr + cur.memSize, s.paddr + s.memSize);
    if (!bothZeros) cur.fileSize = Math.max(cur.paddr + cur.fileSize, s.paddr + s.fileSize) - cur.paddr;
    cur.memSize = end - cur.paddr;
    cur.segments.push(s.index);
  }
  return out;
}

function parseNotes(bytes: Uint8Array, segment: number, out: ElfNote[]): void {
  const v = view(bytes);
  let p = 0;
  while (p < bytes.length) {
    if (p + 12 > bytes.length)
      throw new DumpError(`truncated note header at offset ${hex(p)} of PT_NOTE segment ${segment}`);
    const namesz = v.getUint32(p, true);
    const descsz = v.getUint32(p + 4, true);
    const type = v.getUint32(p + 8, true);
    const nameAt = p + 12;
    const descAt = nameAt + align4(namesz);
    const next = descAt + align4(descsz);
    if (descAt + descsz > bytes.length)
      throw new DumpError(
        `truncated note at offset ${hex(p)} of PT_NOTE segment ${segment}: name ${namesz} and descriptor ${descsz} bytes do not fit in the segment (${bytes.length} bytes)`,
      );
    let name = "";
    for (let i = 0; i < namesz && bytes[nameAt + i] !== 0; i++)
      name += String.fromCharCode(bytes[nameAt + i]);
    out.push({ name, type, desc: bytes.subarray(descAt, descAt + descsz), segment });
    p = next;
  }
}

function extendedPhnum(src: ByteSource, is64: boolean, shoff: number, shentsize: number): number {
  const need = is64 ? 64 : 40;
  if (shoff === 0 || shentsize < need)
    throw new DumpError(
      "e_phnum is 0xffff (PN_XNUM) but there is no section header 0 holding the real count",
    );
  if (shoff + need > src.size)
    throw new DumpError(
      `truncated section header 0 at offset ${hex(shoff)} (needed for e_phnum = PN_XNUM); the file has ${hex(src.size)} bytes`,
    );
  return view(src.read(shoff, need)).getUint32(is64 ? 44 : 28, true);
}

function isElfMagic(b: Uint8Array): boolean {
  return b[0] === 0x7f && b[1] === 0x45 && b[2] === 0x4c && b[3] === 0x46;
}

function typeName(t: number): string {
  return ["ET_NONE", "ET_REL", "ET_EXEC", "ET_DYN", "ET_CORE"][t] ?? "unknown";
}

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

function u64(v: DataView, at: number, what: string): number {
  const x = v.getBigUint64(at, true);
  if (x > BigInt(Number.MAX_SAFE_INTEGER))
    throw new DumpError(`${what} is 0x${x.toString(16)}, too large for a dump`);
  return Number(x);
}

function align4(n: number): number {
  return Math.ceil(n / 4) * 4;
}

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}
