/**
 * TLB geometry: how many sets and ways each page-size array has, which entry a full set
 * gives up, and the seed of the random policy. These are implementation choices, not
 * architecture, so they are parameters with named presets (docs/TLB.md), and a one-line
 * text form for the CLI's `--tlb SPEC`:
 *
 * ```
 *   spec  := item ("," item)*
 *   item  := PRESET                  only as the first item; later items override it
 *          | SIZE ":" SETS "x" WAYS  SIZE is 4k, 2m or 1g; SETS a power of two
 *          | SIZE ":off"             this page size is not cached
 *          | "policy=" (lru | fifo | random)
 *          | "seed=" INTEGER         0..2^32-1, for policy=random
 *   e.g. "4k:16x4,2m:8x4,1g:1x4,policy=lru"   "skylake-l1d,policy=random,seed=7"
 * ```
 *
 * SETSxWAYS multiplies: "16x4" is 16 sets of 4 ways, 64 entries (what Intel's manuals call
 * "64 entries, 4-way"). A spec without a preset caches only the sizes it names.
 */

/** One page-size array: `sets` (a power of two) × `ways` entries. */
export interface TlbGeometry {
  sets: number;
  ways: number;
}

/** Which way of a full set is replaced. */
export type TlbPolicy = "lru" | "fifo" | "random";

export const TLB_POLICIES: readonly TlbPolicy[] = ["lru", "fifo", "random"];

/** Page-size arrays, in lookup order. 4 MiB (32-bit PSE) pages live in "2m" as 2 MiB fragments. */
export type TlbSize = "4k" | "2m" | "1g";

export const TLB_SIZES: readonly TlbSize[] = ["4k", "2m", "1g"];

/**
 * A TLB configuration. An absent size is not cached: translations of that size are walked
 * on every access.
 */
export interface TlbConfig {
  "4k"?: TlbGeometry;
  "2m"?: TlbGeometry;
  "1g"?: TlbGeometry;
  /** Default "lru". */
  policy?: TlbPolicy;
  /** Seed of the random policy's PRNG (0..2^32-1). Default 1. */
  seed?: number;
}

/** Largest set count and way count accepted (65,536 sets; 256 ways). */
export const TLB_MAX_SETS = 1 << 16;
export const TLB_MAX_WAYS = 256;
/** Largest total capacity accepted (2^20 entries). */
export const TLB_MAX_ENTRIES = 1 << 20;

/**
 * Named configurations. Real replacement is a pseudo-LRU; "lru" is its exact ideal.
 * - `skylake-l1d`: Intel Skylake L1 data TLB: 4 KiB 64 entries 4-way, 2 MiB/4 MiB 32 entries
 *   4-way, 1 GiB 4 entries fully associative (Intel Optimization Reference Manual, Table 2-7).
 * - `skylake-l1i`: Skylake L1 instruction TLB: 4 KiB 128 entries 8-way, 2 MiB 8 entries
 *   fully associative (per thread), no 1 GiB entries.
 * - `skylake-stlb`: Skylake second-level TLB: 1536 entries 12-way for 4 KiB (shared with
 *   2 MiB in hardware; modelled here as two arrays of the same shape), 1 GiB 16 entries 4-way.
 * - `tiny`: a few entries per size, to make capacity effects visible in small examples.
 * - `huge`: large enough that no ordinary workload evicts (an "infinite" TLB).
 * - `none`: caches nothing; every access walks.
 */
export const TLB_PRESETS: Readonly<Record<string, Readonly<TlbConfig>>> = Object.freeze({
  "skylake-l1d": { "4k": { sets: 16, ways: 4 }, "2m": { sets: 8, ways: 4 }, "1g": { sets: 1, ways: 4 } },
  "skylake-l1i": { "4k": { sets: 16, ways: 8 }, "2m": { sets: 1, ways: 8 } },
  "skylake-stlb": {
    "4k": { sets: 128, ways: 12 },
    "2m": { sets: 128, ways: 12 },
    "1g": { sets: 4, ways: 4 },
  },
  tiny: { "4k": { sets: 4, ways: 2 }, "2m": { sets: 2, ways: 2 }, "1g": { sets: 1, ways: 2 } },
  huge: { "4k": { sets: 4096, ways: 8 }, "2m": { sets: 512, ways: 8 }, "1g": { sets: 16, ways: 4 } },
  none: {},
});

/** The preset used when none is named. */
export const DEFAULT_TLB_PRESET = "skylake-l1d";

/** Thrown for a configuration or spec the TLB cannot be built from. */
export class TlbConfigError extends Error {
  override name = "TlbConfigError";
}

/** Looks a preset up by name; throws a TlbConfigError listing the known names. */
export function tlbPreset(name: string): TlbConfig {
  const p = TLB_PRESETS[name];
  if (!p)
    throw new TlbConfigError(`unknown TLB preset "${name}" (known: ${Object.keys(TLB_PRESETS).join(", ")})`);
  return cloneConfig(p);
}

/** A validated configuration with every field present (absent sizes are null). */
export interface NormalizedTlbConfig {
  sizes: readonly [TlbGeometry | null, TlbGeometry | null, TlbGeometry | null];
  policy: TlbPolicy;
  seed: number;
}

/** Checks a configuration and fills the defaults; throws a TlbConfigError naming the bad field. */
export function normalizeTlbConfig(config: TlbConfig): NormalizedTlbConfig {
  if (typeof config !== "object" || config === null) throw new TlbConfigError("TLB config must be an object");
  for (const k of Object.keys(config))
    if (!(TLB_SIZES as readonly string[]).includes(k) && k !== "policy" && k !== "seed")
      throw new TlbConfigError(
        `unknown TLB config field "${k}" (known: ${TLB_SIZES.join(", ")}, policy, seed)`,
      );
  const sizes = TLB_SIZES.map((s) => {
    const g = config[s];
    if (g === undefined || g === null) return null;
    return checkGeometry(s, g.sets, g.ways);
  }) as [TlbGeometry | null, TlbGeometry | null, TlbGeometry | null];
  let total = 0;
  for (const g of sizes) if (g) total += g.sets * g.ways;
  if (total > TLB_MAX_ENTRIES)
    throw new TlbConfigError(`TLB has ${total} entries in all; the limit is ${TLB_MAX_ENTRIES}`);
  const policy = config.policy ?? "lru";
  if (!TLB_POLICIES.includes(policy))
    throw new TlbConfigError(`TLB policy "${policy as string}" is not one of ${TLB_POLICIES.join(", ")}`);
  const seed = config.seed ?? 1;
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff)
    throw new TlbConfigError(`TLB seed ${seed} is not an integer in 0..4294967295`);
  return { sizes, policy, seed };
}

function checkGeometry(size: TlbSize, sets: number, ways: number): TlbGeometry {
  if (!Number.isInteger(sets) || sets < 1 || sets > TLB_MAX_SETS || (sets & (sets - 1)) !== 0)
    throw new TlbConfigError(
      `TLB ${size}: ${sets} sets is not a power of two in 1..${TLB_MAX_SETS} (the set index is a mask of the page number)`,
    );
  if (!Number.isInteger(ways) || ways < 1 || ways > TLB_MAX_WAYS)
    throw new TlbConfigError(`TLB ${size}: ${ways} ways is not an integer in 1..${TLB_MAX_WAYS}`);
  return { sets, ways };
}

/**
 * Parses a `--tlb` spec (grammar in the file comment) into a configuration. Throws a
 * TlbConfigError that quotes the offending item and says what was expected.
 */
export function parseTlbSpec(spec: string): TlbConfig {
  if (typeof spec !== "string" || spec.trim() === "")
    throw new TlbConfigError('empty TLB spec (try "skylake-l1d" or "4k:16x4,2m:8x4,policy=lru")');
  const items = spec.split(",").map((s) => s.trim());
  let config: TlbConfig = {};
  const seen = new Set<string>();
  items.forEach((item, i) => {
    const where = `TLB spec item ${i + 1} "${item}"`;
    if (item === "") throw new TlbConfigError(`TLB spec item ${i + 1} is empty (stray comma?)`);
    const size = /^([^:=]+):(.*)$/.exec(item);
    const kv = /^([a-z]+)=(.*)$/i.exec(item);
    if (size) {
      const name = size[1].toLowerCase();
      if (!(TLB_SIZES as readonly string[]).includes(name))
        throw new TlbConfigError(
          `${where}: unknown page size "${size[1]}" (use 4k, 2m or 1g; 4 MiB pages use 2m)`,
        );
      once(seen, name, where);
      const value = size[2].trim().toLowerCase();
      if (value === "off") {
        delete config[name as TlbSize];
        return;
      }
      const m = /^(\d+)x(\d+)$/.exec(value);
      if (!m)
        throw new TlbConfigError(`${where}: expected SETSxWAYS (e.g. 16x4 = 16 sets of 4 ways) or "off"`);
      try {
        config[name as TlbSize] = checkGeometry(name as TlbSize, Number(m[1]), Number(m[2]));
      } catch (e) {
        throw new TlbConfigError(`${where}: ${(e as Error).message}`);
      }
    } else if (kv) {
      const key = kv[1].toLowerCase();
      const value = kv[2].trim().toLowerCase();
      once(seen, key, where);
      if (key === "policy") {
        if (!(TLB_POLICIES as readonly string[]).includes(value))
          throw new TlbConfigError(`${where}: policy must be one of ${TLB_POLICIES.join(", ")}`);
        config.policy = value as TlbPolicy;
      } else if (key === "seed") {
        const n = /^(0x[0-9a-f]+|\d+)$/.test(value) ? Number(value) : Number.NaN;
        if (!Number.isInteger(n) || n > 0xffffffff)
          throw new TlbConfigError(`${where}: seed must be an integer in 0..4294967295`);
        config.seed = n;
      } else throw new TlbConfigError(`${where}: unknown setting "${kv[1]}" (known: policy, seed)`);
    } else if (i === 0 && TLB_PRESETS[item.toLowerCase()]) {
      config = tlbPreset(item.toLowerCase());
    } else if (TLB_PRESETS[item.toLowerCase()]) {
      throw new TlbConfigError(`${where}: a preset can only be the first item`);
    } else
      throw new TlbConfigError(
        `${where}: not a preset (${Object.keys(TLB_PRESETS).join(", ")}), SIZE:SETSxWAYS, policy= or seed=`,
      );
  });
  normalizeTlbConfig(config);
  return config;
}

function once(seen: Set<string>, key: string, where: string): void {
  if (seen.has(key)) throw new TlbConfigError(`${where}: "${key}" is given twice`);
  seen.add(key);
}

/** The canonical spec of a configuration (sizes in order, then policy, then seed if random). */
export function formatTlbSpec(config: TlbConfig): string {
  const n = normalizeTlbConfig(config);
  const parts: string[] = [];
  n.sizes.forEach((g, i) => {
    parts.push(g ? `${TLB_SIZES[i]}:${g.sets}x${g.ways}` : `${TLB_SIZES[i]}:off`);
  });
  parts.push(`policy=${n.policy}`);
  if (n.policy === "random") parts.push(`seed=${n.seed}`);
  return parts.join(",");
}

function cloneConfig(c: Readonly<TlbConfig>): TlbConfig {
  const out: TlbConfig = {};
  for (const s of TLB_SIZES) {
    const g = c[s];
    if (g) out[s] = { sets: g.sets, ways: g.ways };
  }
  if (c.policy !== undefined) out.policy = c.policy;
  if (c.seed !== undefined) out.seed = c.seed;
  return out;
}
