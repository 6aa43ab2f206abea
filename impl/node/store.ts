/**
 * The durable store of one node: a `Store` service with an in-memory layer (tests, `--store
 * memory`) and an lmdb layer (`--store lmdb`). It holds the node's objects and the hints it
 * keeps for replicas that were down (sloppy quorum, impl/core/node.ts).
 *
 * The contract the driver (impl/node/driver.ts) builds the machine's durability ordering on:
 *  - reads (`get`, `hint`, `hintsFor`, `hints`) are synchronous and see every write already
 *    issued, committed or not (read-your-writes), because the machine reads its own writes on
 *    the next event;
 *  - every write returns undefined when it is already durable (memory), or a promise that
 *    resolves once it is durable and rejects if the commit fails. Writes issued in one event
 *    loop turn share one lmdb transaction and one sync (group commit) and become durable in the
 *    order they were issued.
 *
 * Durable means flushed to the disk: lmdb's default durable settings (no `noSync`; on Linux
 * `overlappingSync`, where a write is visible at commit and durable at the following flush, so
 * a write's promise waits for `flushed`).
 *
 * Objects: keys are byte strings (one char per byte). lmdb keys are limited to ~1978 bytes, so
 * a key whose UTF-8 form exceeds KEY_BYTES_MAX is stored in a second database under its
 * SHA-256, with the full key inside the record to tell (astronomically unlikely) collisions
 * apart. Hints are few (they exist only while a replica is down) and are read on every replica
 * read, so all of them are kept in memory as well, loaded when the store opens.
 */
import { createHash } from "node:crypto"
import { mkdirSync } from "node:fs"
import { Context, Effect, Layer } from "effect"
import { type Database, open, type RootDatabase } from "lmdb"
import type { NodeId } from "../core/ids.ts"
import type * as Membership from "../core/membership.ts"
import type { Hint } from "../core/messages.ts"
import * as Version from "../core/version.ts"

type Obj = Version.Obj

/** undefined: already durable. A promise: resolves once durable, rejects if the commit fails. */
export type Durable = Promise<void> | undefined

export interface StoreShape {
  /** "memory" or "lmdb". */
  readonly kind: string
  readonly get: (key: string) => Obj | undefined
  readonly put: (key: string, obj: Obj) => Durable
  /** Delete a key (a purged tombstone). */
  readonly remove: (key: string) => Durable
  readonly hint: (owner: NodeId, key: string) => Obj | undefined
  readonly hintsFor: (key: string) => ReadonlyArray<Hint>
  /** Up to `limit` hints, oldest first. */
  readonly hints: (limit: number) => ReadonlyArray<Hint>
  readonly putHint: (owner: NodeId, key: string, obj: Obj) => Durable
  /** Drop the hint for (owner, key) if it still equals `obj`; undefined if nothing to drop. */
  readonly dropHint: (owner: NodeId, key: string, obj: Obj) => Durable
  /** Delete `key` if its stored object still equals `obj`; undefined if nothing to delete. */
  readonly drop: (key: string, obj: Obj) => Durable
  /** Up to `limit` stored keys after `after` (from the start if undefined), in key order. */
  readonly scan: (after: string | undefined, limit: number) => ReadonlyArray<readonly [string, Obj]>
  /**
   * This process's incarnation, strictly larger than any earlier one using this store: a
   * counter kept durably (lmdb), or the wall clock in ms (memory, which forgets everything).
   */
  readonly nextGeneration: () => number
  /** The membership view last saved (own status included), to boot a restarted node with. */
  readonly loadMembership: () => SavedMembership | undefined
  /** Save the membership view (rare: on every change of a member's status or address). */
  readonly saveMembership: (saved: SavedMembership) => void
  /** Objects stored (for INFO). */
  readonly size: () => number
  /** Hints held (for INFO). */
  readonly hintCount: () => number
}

/** What a node remembers of the cluster across restarts. */
export interface SavedMembership {
  readonly members: ReadonlyArray<Membership.Entry>
}

export class Store extends Context.Tag("dht/Store")<Store, StoreShape>() {}

// ---------------------------------------------------------------------------------------------
// Hints in memory (both layers)

class HintIndex {
  /** key -> owner -> hinted object. Insertion order: oldest first. */
  private readonly byKey = new Map<string, Map<NodeId, Obj>>()
  private count = 0

  get size(): number {
    return this.count
  }

  get(owner: NodeId, key: string): Obj | undefined {
    return this.byKey.get(key)?.get(owner)
  }

  forKey(key: string): ReadonlyArray<Hint> {
    const owners = this.byKey.get(key)
    if (owners === undefined) return []
    return [...owners].map(([owner, obj]) => ({ owner, key, obj }))
  }

  take(limit: number): ReadonlyArray<Hint> {
    const out: Array<Hint> = []
    for (const [key, owners] of this.byKey) {
      for (const [owner, obj] of owners) {
        if (out.length >= limit) return out
        out.push({ owner, key, obj })
      }
    }
    return out
  }

  set(owner: NodeId, key: string, obj: Obj): void {
    let owners = this.byKey.get(key)
    if (owners === undefined) {
      owners = new Map()
      this.byKey.set(key, owners)
    }
    if (!owners.has(owner)) this.count++
    owners.set(owner, obj)
  }

  /** Delete if the hint still equals `obj`; true if deleted. */
  dropIfEqual(owner: NodeId, key: string, obj: Obj): boolean {
    const owners = this.byKey.get(key)
    const held = owners?.get(owner)
    if (owners === undefined || held === undefined || !Version.equals(held, obj)) return false
    owners.delete(owner)
    if (owners.size === 0) this.byKey.delete(key)
    this.count--
    return true
  }
}

// ---------------------------------------------------------------------------------------------
// Memory

/** Index of the first element of sorted `keys` greater than `after`. */
const firstAfter = (keys: ReadonlyArray<string>, after: string | undefined): number => {
  if (after === undefined) return 0
  let lo = 0
  let hi = keys.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if (keys[mid]! <= after) lo = mid + 1
    else hi = mid
  }
  return lo
}

export const makeMemory = (): StoreShape => {
  const map = new Map<string, Obj>()
  const hints = new HintIndex()
  // Sorted keys for `scan`, rebuilt lazily after a key is added or deleted. Scans run only
  // while the ring is rebalancing, so the occasional sort is cheap enough for a memory store.
  let sorted: Array<string> | undefined
  let savedMembership: SavedMembership | undefined
  const remove = (key: string): undefined => {
    if (map.delete(key)) sorted = undefined
    return undefined
  }
  return {
    kind: "memory",
    get: (key) => map.get(key),
    put: (key, obj) => {
      if (!map.has(key)) sorted = undefined
      map.set(key, obj)
      return undefined
    },
    remove,
    drop: (key, obj) => {
      const held = map.get(key)
      return held !== undefined && Version.equals(held, obj) ? remove(key) : undefined
    },
    scan: (after, limit) => {
      sorted ??= [...map.keys()].sort()
      const from = firstAfter(sorted, after)
      return sorted.slice(from, from + limit).map((key) => [key, map.get(key)!] as const)
    },
    // An incarnation id, not a time (so not NodeClock's): Date.now only because it grows.
    nextGeneration: () => Date.now(),
    loadMembership: () => savedMembership,
    saveMembership: (saved) => {
      savedMembership = saved
    },
    hint: (owner, key) => hints.get(owner, key),
    hintsFor: (key) => hints.forKey(key),
    hints: (limit) => hints.take(limit),
    putHint: (owner, key, obj) => {
      hints.set(owner, key, obj)
      return undefined
    },
    dropHint: (owner, key, obj) => {
      hints.dropIfEqual(owner, key, obj)
      return undefined
    },
    size: () => map.size,
    hintCount: () => hints.size,
  }
}

export const layerMemory: Layer.Layer<Store> = Layer.sync(Store, makeMemory)

// ---------------------------------------------------------------------------------------------
// lmdb

/** lmdb's limit is 1978 bytes by default; stay clear of it. */
const KEY_BYTES_MAX = 1900

const REMOVED = Symbol("removed")

interface KeyedRecord {
  readonly key: string
  readonly obj: Obj
}

interface HintRecord {
  readonly owner: string
  readonly key: string
  readonly obj: Obj
}

const digest = (text: string): string => createHash("sha256").update(text, "latin1").digest("hex")

const isLong = (key: string): boolean =>
  key.length > KEY_BYTES_MAX / 2 && Buffer.byteLength(key, "utf8") > KEY_BYTES_MAX

const hintId = (owner: string, key: string): string => digest(`${owner}\u0000${key}`)

const entryCount = (db: Database<unknown, string>): number =>
  (db.getStats() as { entryCount?: number }).entryCount ?? 0

/** Open (creating if needed) the lmdb store under `dataDir`. Close it with `close`. */
export const openLmdb = (
  dataDir: string,
): { readonly store: StoreShape; readonly close: () => Promise<void> } => {
  mkdirSync(dataDir, { recursive: true })
  // noSubdir false: lmdb takes a path with an extension ("data.v1") for a file, not a directory.
  const root: RootDatabase = open({ path: dataDir, noSubdir: false })
  const objects: Database<Obj, string> = root.openDB({ name: "objects" })
  const long: Database<KeyedRecord, string> = root.openDB({ name: "objects-long-keys" })
  const hintsDb: Database<HintRecord, string> = root.openDB({ name: "hints" })
  const meta: Database<number, string> = root.openDB({ name: "meta" })
  const membershipDb: Database<SavedMembership, string> = root.openDB({ name: "membership" })
  const hints = new HintIndex()
  for (const { value } of hintsDb.getRange()) {
    hints.set(value.owner as NodeId, value.key, value.obj)
  }
  // Long keys live under their digest, out of key order: keep them, sorted, for `scan`.
  const longKeys: Array<string> = []
  for (const { value } of long.getRange()) longKeys.push(value.key)
  longKeys.sort()
  const trackLong = (key: string, present: boolean): void => {
    const i = firstAfter(longKeys, key)
    const has = i > 0 && longKeys[i - 1] === key
    if (present && !has) longKeys.splice(i, 0, key)
    if (!present && has) longKeys.splice(i - 1, 1)
  }
  // Object writes issued and not yet durable, so that `get` reads its own writes (REMOVED: a
  // delete). An entry is removed when its write settles, unless a later write replaced it.
  const unflushed = new Map<string, Obj | typeof REMOVED>()

  /**
   * Resolves once `written` is committed and flushed. Call it right after issuing the write:
   * `root.flushed` names the flush of the batch being built when its `then` is called, so
   * asking later could wait for a later batch's flush as well.
   */
  const flushed = (written: Promise<unknown>): Promise<void> => {
    const flush = new Promise<void>((resolve, reject) => {
      ;(root.flushed as PromiseLike<unknown>).then(() => resolve(), reject)
    })
    return Promise.all([written, flush]).then(() => undefined)
  }

  const durable = (key: string, obj: Obj | typeof REMOVED, written: Promise<unknown>) => {
    unflushed.set(key, obj)
    const settle = () => {
      if (unflushed.get(key) === obj) unflushed.delete(key)
    }
    return flushed(written).then(settle, (error: unknown) => {
      settle()
      throw error
    })
  }

  const get = (key: string): Obj | undefined => {
    const pending = unflushed.get(key)
    if (pending === REMOVED) return undefined
    if (pending !== undefined) return pending
    if (!isLong(key)) return objects.get(key)
    const record = long.get(digest(key))
    return record !== undefined && record.key === key ? record.obj : undefined
  }

  const put = (key: string, obj: Obj): Promise<void> => {
    if (!isLong(key)) return durable(key, obj, objects.put(key, obj))
    trackLong(key, true)
    return durable(key, obj, long.put(digest(key), { key, obj }))
  }

  const remove = (key: string): Promise<void> => {
    if (!isLong(key)) return durable(key, REMOVED, objects.remove(key))
    trackLong(key, false)
    return durable(key, REMOVED, long.remove(digest(key)))
  }

  /**
   * Merge three sorted sources: the committed keys (lmdb range), the long keys, and writes not
   * yet committed. lmdb orders string keys by their UTF-8 bytes, which for byte strings (chars
   * below U+0100) is the order of JS string comparison.
   */
  const scan = (
    after: string | undefined,
    limit: number,
  ): ReadonlyArray<readonly [string, Obj]> => {
    const found = new Map<string, Obj>()
    // Enough committed keys that removals still pending cannot leave fewer than `limit`.
    const window = limit + unflushed.size + 1
    for (const { key, value } of objects.getRange({ start: after, limit: window })) {
      if (typeof key === "string" && (after === undefined || key > after)) found.set(key, value)
    }
    const from = firstAfter(longKeys, after)
    for (const key of longKeys.slice(from, from + limit)) {
      const obj = get(key)
      if (obj !== undefined) found.set(key, obj)
    }
    for (const [key, obj] of unflushed) {
      if (after !== undefined && key <= after) continue
      if (obj === REMOVED) found.delete(key)
      else found.set(key, obj)
    }
    return [...found.keys()]
      .sort()
      .slice(0, limit)
      .map((key) => [key, found.get(key)!] as const)
  }

  const store: StoreShape = {
    kind: "lmdb",
    get,
    put,
    remove,
    drop: (key, obj) => {
      const held = get(key)
      return held !== undefined && Version.equals(held, obj) ? remove(key) : undefined
    },
    scan,
    loadMembership: () => membershipDb.get("view"),
    saveMembership: (saved) => {
      membershipDb.putSync("view", saved)
    },
    nextGeneration: () => {
      // Committed synchronously, before the node says anything to anyone.
      const generation = (meta.get("generation") ?? 0) + 1
      meta.putSync("generation", generation)
      return generation
    },
    hint: (owner, key) => hints.get(owner, key),
    hintsFor: (key) => hints.forKey(key),
    hints: (limit) => hints.take(limit),
    putHint: (owner, key, obj) => {
      hints.set(owner, key, obj)
      return flushed(hintsDb.put(hintId(owner, key), { owner, key, obj }))
    },
    dropHint: (owner, key, obj) =>
      hints.dropIfEqual(owner, key, obj) ? flushed(hintsDb.remove(hintId(owner, key))) : undefined,
    size: () => entryCount(objects) + entryCount(long),
    hintCount: () => hints.size,
  }
  const close = async (): Promise<void> => {
    await root.flushed
    await root.close()
  }
  return { store, close }
}

/** The lmdb store as a scoped layer: opened on acquire, flushed and closed on release. */
export const layerLmdb = (dataDir: string): Layer.Layer<Store, Error> =>
  Layer.scoped(
    Store,
    Effect.acquireRelease(
      Effect.try({
        try: () => openLmdb(dataDir),
        catch: (e) =>
          new Error(
            `cannot open the lmdb store in ${dataDir}: ${e instanceof Error ? e.message : e}`,
          ),
      }),
      (opened) => Effect.promise(() => opened.close()),
    ).pipe(Effect.map((opened) => opened.store)),
  )
