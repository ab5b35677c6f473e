/**
 * Merging shard directories of one sweep (`vmmu merge DIR... --out FILE`).
 *
 * Every directory must hold the manifest of the same grid. Point records are gathered from
 * all of them: a point found in several directories with identical results is a warning
 * (kept once); with different results it is an error (a conflict: the runs were not of the
 * same code or configuration). Grid points found nowhere are an error, or a warning with
 * `allowMissing` (the results then say which are missing). Files that are not valid records
 * of a grid point are warnings and ignored.
 */

import { readdirSync } from "node:fs";
import { join } from "node:path";
import {
  assembleSweep,
  expandGrid,
  gridHash,
  type PointRecord,
  type SweepConfig,
  type SweepResults,
} from "./sweep.js";
import { pointsDir, readManifest, readPointRecord, SweepDirError } from "./sweep-run.js";

export interface MergeOptions {
  /** Missing points are a warning, not an error. */
  allowMissing?: boolean;
}

export interface MergeOutcome {
  /** The merged results (also when there are errors, for inspection). */
  results: SweepResults;
  config: SweepConfig;
  warnings: string[];
  /** Conflicts and (without allowMissing) missing points: do not use the results. */
  errors: string[];
}

/** The first field (dotted path) where two JSON values differ. */
function firstDifference(a: unknown, b: unknown, path = ""): string | null {
  if (typeof a !== typeof b || Array.isArray(a) !== Array.isArray(b) || (a === null) !== (b === null))
    return path || "(root)";
  if (typeof a === "object" && a !== null) {
    const ao = a as Record<string, unknown>;
    const bo = b as Record<string, unknown>;
    const keys = new Set([...Object.keys(ao), ...Object.keys(bo)]);
    for (const k of keys) {
      const d = firstDifference(ao[k], bo[k], path ? `${path}.${k}` : k);
      if (d) return d;
    }
    return null;
  }
  return a === b ? null : path || "(root)";
}

const LIST_AT_MOST = 10;

function listed(ids: string[]): string {
  return ids.length <= LIST_AT_MOST
    ? ids.join(", ")
    : `${ids.slice(0, LIST_AT_MOST).join(", ")} and ${ids.length - LIST_AT_MOST} more`;
}

/** Merges the shard directories `dirs`; throws SweepDirError when they are not of one sweep. */
export function mergeSweepDirs(dirs: readonly string[], o: MergeOptions = {}): MergeOutcome {
  if (dirs.length === 0) throw new SweepDirError("no directory to merge");
  const manifests = dirs.map((d) => {
    const m = readManifest(d);
    if (!m) throw new SweepDirError(`${d}: no sweep.json: not the output directory of vmmu sweep`);
    return m;
  });
  const first = manifests[0];
  manifests.forEach((m, i) => {
    if (m.grid !== first.grid)
      throw new SweepDirError(
        `${dirs[i]} is from another sweep than ${dirs[0]} (grid ${m.grid}, ${m.points.length} points; ${first.grid}, ${first.points.length} points)`,
      );
  });
  const config = first.config;
  const points = expandGrid(config);
  if (gridHash(points) !== first.grid)
    throw new SweepDirError(
      `${dirs[0]}/sweep.json: its grid does not expand to the points it lists (made by another version of vmmu?)`,
    );
  const warnings: string[] = [];
  const errors: string[] = [];
  manifests.forEach((m, i) => {
    if (JSON.stringify(m.config.costs) !== JSON.stringify(config.costs))
      warnings.push(`${dirs[i]}: another cost model than ${dirs[0]}; the results use ${dirs[0]}'s`);
  });

  const byId = new Map(points.map((p) => [p.id, p]));
  const found = new Map<string, { record: PointRecord; dir: string }>();
  const duplicates: string[] = [];
  for (const dir of dirs) {
    let files: string[];
    try {
      files = readdirSync(pointsDir(dir));
    } catch {
      warnings.push(`${dir}: no points directory (no point finished there)`);
      continue;
    }
    for (const f of files.sort()) {
      if (!f.endsWith(".json")) continue;
      const id = f.slice(0, -5);
      const p = byId.get(id);
      if (!p) {
        warnings.push(`${join(pointsDir(dir), f)}: not a point of this grid; ignored`);
        continue;
      }
      const r = readPointRecord(dir, p);
      if (!r) continue;
      if ("invalid" in r) {
        warnings.push(`${join(pointsDir(dir), f)}: invalid record (${r.invalid}); ignored`);
        continue;
      }
      const prev = found.get(id);
      if (!prev) {
        found.set(id, { record: r.record, dir });
        continue;
      }
      const d = firstDifference(prev.record.result, r.record.result);
      if (d === null) duplicates.push(`${id} (${prev.dir}, ${dir})`);
      else
        errors.push(
          `conflicting results for point ${id}: ${prev.dir} and ${dir} differ (first at result.${d})`,
        );
    }
  }
  if (duplicates.length > 0)
    warnings.push(
      `${duplicates.length} point${duplicates.length === 1 ? "" : "s"} found more than once with identical results (kept once): ${listed(duplicates)}`,
    );
  const records = new Map([...found].map(([id, x]) => [id, x.record]));
  const results = assembleSweep(config, points, records);
  if (results.missing.length > 0) {
    const msg = `${results.missing.length} of ${results.total} points have no result in any directory: ${listed(results.missing)}`;
    if (o.allowMissing) warnings.push(msg);
    else errors.push(`${msg} (run the missing shards, or --allow-missing)`);
  }
  return { results, config, warnings, errors };
}
