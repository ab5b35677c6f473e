/**
 * Opening a memory dump: a QEMU `dump-guest-memory` ELF core, plain or gzip-compressed.
 *
 * In memory (`readDump`) the segments are views of the given bytes, no copies. From a
 * file (`openDump`) a plain core's headers are read at once and its memory lazily, in
 * chunks of 2 MiB the first time a page in them is used (so a walk through a dump of
 * many gigabytes reads a few megabytes, and file offsets need no alignment); the file
 * stays open until `close()`. A gzip-compressed core is decompressed whole with zlib
 * (up to 4 GiB of output).
 */

import { constants as bufferConstants } from "node:buffer";
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { gunzipSync } from "node:zlib";
import {
  type ByteSource,
  DumpError,
  type ElfCore,
  type ElfLoadSegment,
  EM_X86_64,
  memorySource,
  type PhysicalRange,
  parseElfCore,
  physicalRanges,
} from "./elf.js";
import { DumpMemory, type MemoryPiece } from "./memory.js";
import { type QemuCpuState, qemuCpuStates } from "./qemu-note.js";

/** A parsed memory dump. */
export interface GuestDump {
  /** "gzip" when the file was gzip-compressed. */
  readonly compression: "none" | "gzip";
  readonly elfClass: 32 | 64;
  /** "x86_64" (QEMU writes EM_X86_64 when CPU 0 was in long mode) or "i386". */
  readonly machine: "x86_64" | "i386";
  readonly loads: readonly ElfLoadSegment[];
  /** Guest-physical ranges (segments sorted and merged). */
  readonly ranges: readonly PhysicalRange[];
  /** Registers from the QEMU notes, CPU 0 first; empty when the dump has none. */
  readonly cpus: readonly QemuCpuState[];
  readonly memory: DumpMemory;
  /** Releases the file (a plain dump opened with `openDump`); memory not yet read becomes unreadable. */
  close(): void;
}

const GZIP_MAGIC0 = 0x1f;
const GZIP_MAGIC1 = 0x8b;
/** Bytes of a plain file read at once, on first use. */
const READ_CHUNK = 2 << 20;

/** True for gzip data (magic 1f 8b). */
export function isGzip(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === GZIP_MAGIC0 && bytes[1] === GZIP_MAGIC1;
}

/**
 * Parses a dump held in memory (plain or gzip-compressed). Memory segments are views
 * of `bytes` (or of the decompressed buffer).
 *
 * @example
 * ```ts
 * const dump = readDump(readFileSync("guest.core"));
 * const t = translate(dump.memory, { cr0: dump.cpus[0].cr0, cr3: dump.cpus[0].cr3, cr4: dump.cpus[0].cr4, efer: 0xd00n }, 0xffffffff81000000n, { setAccessedDirty: false });
 * ```
 */
export function readDump(bytes: Uint8Array): GuestDump {
  const compression = isGzip(bytes) ? "gzip" : "none";
  const data = compression === "gzip" ? gunzip(bytes) : bytes;
  const src = memorySource(data);
  const elf = parseElfCore(src);
  const ranges = physicalRanges(elf.loads);
  const pieces = ranges.map((r) => ({
    start: r.paddr,
    end: r.paddr + r.memSize,
    bytes: data.subarray(r.offset, r.offset + r.fileSize),
  }));
  return build(compression, elf, ranges, pieces, () => undefined);
}

export interface OpenDumpOptions {
  /** Bytes of a plain file's memory read at once, when first used (default 2 MiB; a multiple of 4096). */
  readChunkBytes?: number;
}

/** Opens a dump file (plain or gzip-compressed). Throws DumpError for unusable files. */
export function openDump(path: string, o: OpenDumpOptions = {}): GuestDump {
  const chunk = o.readChunkBytes ?? READ_CHUNK;
  if (!Number.isSafeInteger(chunk) || chunk < 4096 || chunk % 4096 !== 0)
    throw new RangeError(`readChunkBytes ${chunk} is not a positive multiple of 4096`);
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (e) {
    throw new DumpError(`cannot open ${path}: ${(e as Error).message}`);
  }
  let open = true;
  const close = () => {
    if (open) closeSync(fd);
    open = false;
  };
  try {
    const size = fstatSync(fd).size;
    const src = fileSource(fd, size, path, () => open);
    if (size >= 2 && isGzip(src.read(0, 2))) {
      if (size > bufferConstants.MAX_LENGTH)
        throw new DumpError(
          `${path}: the compressed file is larger than the ${bufferConstants.MAX_LENGTH} bytes Node can hold`,
        );
      const bytes = src.read(0, size);
      close();
      return readDump(bytes);
    }
    const elf = parseElfCore(src);
    const ranges = physicalRanges(elf.loads);
    const pieces: MemoryPiece[] = [];
    for (const r of ranges) {
      let at = 0;
      // Split at page-aligned physical addresses so no page spans two chunks needlessly.
      while (at < r.fileSize) {
        let n = Math.min(chunk, r.fileSize - at);
        if (at + n < r.fileSize) n -= (r.paddr + at + n) % 4096;
        // Place the bytes at the buffer offset congruent to their physical address mod 4,
        // so whole pages inside the piece are served in place.
        const pad = (r.paddr + at) % 4;
        const offset = r.offset + at;
        const length = n;
        pieces.push({
          start: r.paddr + at,
          end: at + n === r.fileSize ? r.paddr + r.memSize : r.paddr + at + n,
          load: { length, read: () => src.read(offset, length, pad) },
        });
        at += n;
      }
      if (r.fileSize === 0)
        pieces.push({ start: r.paddr, end: r.paddr + r.memSize, bytes: new Uint8Array(0) });
    }
    return build("none", elf, ranges, pieces, close);
  } catch (e) {
    close();
    throw e;
  }
}

function build(
  compression: "none" | "gzip",
  elf: ElfCore,
  ranges: PhysicalRange[],
  pieces: MemoryPiece[],
  close: () => void,
): GuestDump {
  return Object.freeze({
    close,
    compression,
    elfClass: elf.elfClass,
    machine: elf.machine === EM_X86_64 ? "x86_64" : "i386",
    loads: elf.loads,
    ranges,
    cpus: qemuCpuStates(elf.notes),
    memory: new DumpMemory(pieces),
  });
}

function gunzip(bytes: Uint8Array): Uint8Array {
  try {
    return gunzipSync(bytes);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === "ERR_BUFFER_TOO_LARGE" || err instanceof RangeError)
      throw new DumpError(
        `the decompressed dump is larger than the ${bufferConstants.MAX_LENGTH} bytes Node can hold; decompress it first (gunzip) and open the plain file`,
      );
    throw new DumpError(`corrupt gzip data: ${err.message}`);
  }
}

/** A ByteSource whose reads can start the bytes `pad` bytes into a fresh buffer. */
interface FileSource extends ByteSource {
  read(offset: number, length: number, pad?: number): Uint8Array;
}

function fileSource(fd: number, size: number, path: string, isOpen: () => boolean): FileSource {
  return {
    size,
    read(offset: number, length: number, pad = 0): Uint8Array {
      if (!isOpen()) throw new DumpError(`${path}: the dump was closed; its memory can no longer be read`);
      const buf = Buffer.allocUnsafeSlow(pad + length);
      let done = 0;
      while (done < length) {
        const n = readSync(fd, buf, pad + done, length - done, offset + done);
        if (n === 0)
          throw new DumpError(`${path}: unexpected end of file at offset 0x${(offset + done).toString(16)}`);
        done += n;
      }
      return buf.subarray(pad);
    },
  };
}
