/** MMIO devices: guest-physical ranges whose accesses reach a handler, never memory. */

export interface MmioDevice {
  /** Reads `size` (1, 2, 4, 8) bytes at `offset` within the device's range. */
  read(offset: number, size: number): bigint;
  write(offset: number, size: number, value: bigint): void;
}

interface Region {
  base: number;
  size: number;
  device: MmioDevice;
}

export class MmioBus {
  private regions: Region[] = [];
  /** Accesses that reached no device (reads return all-ones, writes are dropped). */
  unclaimed = 0;

  add(base: number, size: number, device: MmioDevice): void {
    if (!Number.isSafeInteger(base) || base < 0 || !Number.isSafeInteger(size) || size <= 0)
      throw new RangeError(`MMIO region 0x${base.toString(16)}+0x${size.toString(16)} is not a valid range`);
    const clash = this.regions.find((r) => base < r.base + r.size && r.base < base + size);
    if (clash)
      throw new RangeError(
        `MMIO region 0x${base.toString(16)}..0x${(base + size - 1).toString(16)} overlaps 0x${clash.base.toString(16)}..0x${(clash.base + clash.size - 1).toString(16)}`,
      );
    this.regions.push({ base, size, device });
  }

  read(gpa: number, size: number): bigint {
    const r = this.find(gpa);
    if (!r) {
      this.unclaimed++;
      return (1n << BigInt(size * 8)) - 1n;
    }
    return BigInt.asUintN(size * 8, r.device.read(gpa - r.base, size));
  }

  write(gpa: number, size: number, value: bigint): void {
    const r = this.find(gpa);
    if (!r) {
      this.unclaimed++;
      return;
    }
    r.device.write(gpa - r.base, size, value);
  }

  private find(gpa: number): Region | undefined {
    return this.regions.find((r) => gpa >= r.base && gpa < r.base + r.size);
  }
}
