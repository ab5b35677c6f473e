import { describe, expect, it } from "vitest";
import { Tlb } from "../../src/hw/tlb.js";
import {
  DEFAULT_TLB_PRESET,
  formatTlbSpec,
  normalizeTlbConfig,
  parseTlbSpec,
  TLB_MAX_ENTRIES,
  TLB_PRESETS,
  TlbConfigError,
  tlbPreset,
} from "../../src/hw/tlb-config.js";

describe("TLB presets", () => {
  it("every preset is valid and round-trips through its spec", () => {
    for (const name of Object.keys(TLB_PRESETS)) {
      const c = tlbPreset(name);
      expect(() => normalizeTlbConfig(c)).not.toThrow();
      const spec = formatTlbSpec(c);
      expect(formatTlbSpec(parseTlbSpec(spec))).toBe(spec);
      expect(new Tlb(name).spec).toBe(spec);
    }
  });

  it("skylake-l1d is the default: 64 + 32 + 4 entries", () => {
    expect(DEFAULT_TLB_PRESET).toBe("skylake-l1d");
    expect(new Tlb().capacity).toBe(100);
    expect(formatTlbSpec(tlbPreset("skylake-l1d"))).toBe("4k:16x4,2m:8x4,1g:1x4,policy=lru");
    expect(new Tlb("none").capacity).toBe(0);
  });

  it("tlbPreset returns a copy and names the known presets when the name is unknown", () => {
    const c = tlbPreset("tiny");
    c["4k"]!.sets = 1024;
    expect(TLB_PRESETS.tiny["4k"]!.sets).toBe(4);
    expect(() => tlbPreset("haswell")).toThrow(/unknown TLB preset "haswell" \(known: skylake-l1d, /);
  });
});

describe("TLB spec parsing", () => {
  it("parses sizes, policy and seed", () => {
    expect(parseTlbSpec("4k:64x4,2m:32x4,1g:4x4,policy=lru")).toEqual({
      "4k": { sets: 64, ways: 4 },
      "2m": { sets: 32, ways: 4 },
      "1g": { sets: 4, ways: 4 },
      policy: "lru",
    });
    expect(parseTlbSpec(" 4K:1x16 , policy=RANDOM, seed=0x10 ")).toEqual({
      "4k": { sets: 1, ways: 16 },
      policy: "random",
      seed: 16,
    });
  });

  it("a preset first, then overrides; size:off removes a size", () => {
    expect(parseTlbSpec("skylake-l1d,policy=fifo,1g:off,2m:16x2")).toEqual({
      "4k": { sets: 16, ways: 4 },
      "2m": { sets: 16, ways: 2 },
      policy: "fifo",
    });
    expect(formatTlbSpec(parseTlbSpec("tiny,policy=random,seed=9"))).toBe(
      "4k:4x2,2m:2x2,1g:1x2,policy=random,seed=9",
    );
    expect(formatTlbSpec({ "2m": { sets: 2, ways: 1 } })).toBe("4k:off,2m:2x1,1g:off,policy=lru");
  });

  it("the Tlb constructor takes a spec, a preset name or a config", () => {
    expect(new Tlb("4k:2x2").capacity).toBe(4);
    expect(new Tlb({ "1g": { sets: 2, ways: 3 } }).capacity).toBe(6);
    expect(new Tlb("tiny").capacity).toBe(8 + 4 + 2);
  });

  const bad: [string, RegExp][] = [
    ["", /empty TLB spec/],
    ["   ", /empty TLB spec/],
    ["4k:16x4,", /item 2 is empty/],
    ["4k:15x4", /item 1 "4k:15x4": TLB 4k: 15 sets is not a power of two/],
    ["4k:0x4", /0 sets is not a power of two/],
    ["4k:131072x1", /131072 sets/],
    ["2m:16x0", /0 ways is not an integer in 1\.\.256/],
    ["1g:1x257", /257 ways/],
    ["4k:16", /expected SETSxWAYS/],
    ["4k:16x4x2", /expected SETSxWAYS/],
    ["8k:16x4", /unknown page size "8k"/],
    ["4m:16x4", /4 MiB pages use 2m/],
    ["4k:16x4,4k:8x4", /"4k" is given twice/],
    ["policy=plru", /policy must be one of lru, fifo, random/],
    ["policy=lru,policy=fifo", /"policy" is given twice/],
    ["seed=-1", /seed must be an integer/],
    ["seed=4294967296", /seed must be an integer/],
    ["seed=1.5", /seed must be an integer/],
    ["ways=4", /unknown setting "ways"/],
    ["bogus", /not a preset \(skylake-l1d, .*\), SIZE:SETSxWAYS, policy= or seed=/],
    ["4k:16x4,tiny", /a preset can only be the first item/],
    ["4k:65536x256", /entries in all; the limit is/],
  ];
  for (const [spec, msg] of bad)
    it(`refuses ${JSON.stringify(spec)}`, () => {
      expect(() => parseTlbSpec(spec)).toThrow(TlbConfigError);
      expect(() => parseTlbSpec(spec)).toThrow(msg);
    });

  it("refuses bad config objects with the field named", () => {
    expect(() => normalizeTlbConfig({ "4k": { sets: 3, ways: 1 } })).toThrow(/3 sets/);
    expect(() => normalizeTlbConfig({ policy: "plru" as "lru" })).toThrow(/policy "plru"/);
    expect(() => normalizeTlbConfig({ seed: 2 ** 32 })).toThrow(/seed/);
    expect(() => normalizeTlbConfig({ "4m": { sets: 1, ways: 1 } } as object)).toThrow(
      /unknown TLB config field "4m"/,
    );
    expect(() => normalizeTlbConfig(null as unknown as object)).toThrow(/must be an object/);
    expect(() => normalizeTlbConfig({ "4k": { sets: 65536, ways: 16 }, "2m": { sets: 1, ways: 1 } })).toThrow(
      `${65536 * 16 + 1} entries in all; the limit is ${TLB_MAX_ENTRIES}`,
    );
    expect(normalizeTlbConfig({})).toEqual({ sizes: [null, null, null], policy: "lru", seed: 1 });
  });
});
