/**
 * 64-bit values at the API edge. Inside the library a 64-bit value travels as two
 * unsigned 32-bit halves; outside it is a `bigint` (or a hex string in text formats).
 * Physical addresses and frame numbers (at most 52 bits) are plain Numbers, exact below 2^53.
 */

/** Anything the public API accepts as a 64-bit value: a bigint, a safe non-negative integer, or a (0x-)hex/decimal string. */
export type U64Input = bigint | number | string;

const U64_MAX = (1n << 64n) - 1n;

/** Parses a 64-bit value; throws a RangeError naming `what` for anything that is not an unsigned 64-bit integer. */
export function toU64(value: U64Input, what: string): bigint {
  let v: bigint;
  if (typeof value === "bigint") v = value;
  else if (typeof value === "number") {
    if (!Number.isSafeInteger(value))
      throw new RangeError(`${what}: ${value} is not a safe integer; pass a bigint`);
    v = BigInt(value);
  } else {
    const s = value.trim().replaceAll("_", "");
    if (!/^(0x[0-9a-f]+|[0-9]+)$/i.test(s)) throw new RangeError(`${what}: "${value}" is not a number`);
    v = BigInt(s);
  }
  if (v < 0n || v > U64_MAX) throw new RangeError(`${what}: ${value} does not fit in 64 bits`);
  return v;
}

export function lo32(v: bigint): number {
  return Number(v & 0xffffffffn);
}

export function hi32(v: bigint): number {
  return Number((v >> 32n) & 0xffffffffn);
}

export function fromHalves(hi: number, lo: number): bigint {
  return (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
}

/** An exact Number from halves; only for values below 2^53 (addresses, frame numbers). */
export function halvesToNumber(hi: number, lo: number): number {
  return (hi >>> 0) * 0x1_0000_0000 + (lo >>> 0);
}

/** `0x`-prefixed hex, zero-padded to `digits`. */
export function hex(v: bigint | number, digits = 0): string {
  return `0x${v.toString(16).padStart(digits, "0")}`;
}
