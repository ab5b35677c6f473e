import { readdirSync } from "node:fs";
import { afterEach, describe, expect, it, vi } from "vitest";

// Every program in examples/ runs and prints what its comment promises.
const dir = new URL("../examples/", import.meta.url);
const examples = readdirSync(dir).filter((f) => f.endsWith(".ts"));

describe("examples", () => {
  afterEach(() => vi.restoreAllMocks());
  it.each(examples)("%s runs", async (file) => {
    const lines: string[] = [];
    vi.spyOn(console, "log").mockImplementation((...a: unknown[]) => void lines.push(a.join(" ")));
    await import(new URL(file, dir).href);
    expect(lines.length).toBeGreaterThan(0);
    if (file === "walk-basics.ts") {
      expect(lines[0]).toBe("400123 read → 1000123 (4 KiB page)");
      expect(lines.some((l) => l.includes("page-fault error code 7 (protection)"))).toBe(true);
    }
    if (file === "ept-walk.ts") expect(lines).toContain("read: EPT violation, exit qualification 1a1");
  });
});
