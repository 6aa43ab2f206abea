/**
 * The durable store of one node: a `Store` service with an in-memory layer (tests, `--store
 * memory`) and an lmdb layer (`--store lmdb`).
 *
 * The contract the driver (impl/node/driver.ts) builds the machine's durability ordering on:
 *  - `get(key)` is synchronous and sees every `put` already issued, committed or not
 *    (read-your-writes), because the machine reads its own writes on the next event;
 *  - `put(key, obj)` returns undefined when the write is already durable (memory), or a promise
 *    that resolves once it is durable, and rejects if the commit fails. Puts made in one event
 *    loop turn share one lmdb transaction and one sync (group commit); they become durable in
 *    the order they were issued.
 *
 * Durable means flushed to the disk (lmdb's default durable settings, `overlappingSync` on
 * Linux: the commit is acknowledged after its flush, not only when it becomes visible).
 *
 * Keys are byte strings (one char per byte). lmdb keys are limited to ~1978 bytes, so a key
 * whose UTF-8 form exceeds KEY_BYTES_MAX is stored in a second database under its SHA-256,
 * with the full key inside the record to tell (astronomically unlikely) collisions apart.
 */
import { createHash } from "node:crypto"
import { mkdirSync } from "node:fs"
import { Context, Effect, Layer } from "effect"
import { open, type Database, type RootDatabase } from "lmdb"
import type { Obj } from "../core/version.ts"

export interface StoreShape {
  /** "memory" or "lmdb". */
  readonly kind: string
  readonly get: (key: string) => Obj | undefined
  /** undefined: already durable. A promise: resolves once durable, rejects if the commit fails. */
  readonly put: (key: string, obj: Obj) => Promise<void> | undefined
  /** Number of keys stored (for INFO). */
  readonly size: () => number
}

export class Store extends Context.Tag("dht/Store")<Store, StoreShape>() {}

// ---------------------------------------------------------------------------------------------
// Memory

export const makeMemory = (): StoreShape => {
  const map = new Map<string, Obj>()
  return {
    kind: "memory",
    get: (key) => map.get(key),
    put: (key, obj) => {
      map.set(key, obj)
      return undefined
    },
    size: () => map.size,
  }
}

export const layerMemory: Layer.Layer<Store> = Layer.sync(Store, makeMemory)

// ---------------------------------------------------------------------------------------------
// lmdb

/** lmdb's limit is 1978 bytes by default; stay clear of it. */
const KEY_BYTES_MAX = 1900

interface LongRecord {
  readonly key: string
  readonly obj: Obj
}

const digest = (key: string): string => createHash("sha256").update(key, "latin1").digest("hex")

const isLong = (key: string): boolean =>
  key.length > KEY_BYTES_MAX / 2 && Buffer.byteLength(key, "utf8") > KEY_BYTES_MAX

const entryCount = (db: Database<unknown, string>): number =>
  (db.getStats() as { entryCount?: number }).entryCount ?? 0

/** Open (creating if needed) the lmdb store under `dataDir`. Close it with `close`. */
export const openLmdb = (
  dataDir: string,
): { readonly store: StoreShape; readonly close: () => Promise<void> } => {
  mkdirSync(dataDir, { recursive: true })
  const root: RootDatabase = open({ path: dataDir, name: undefined })
  const objects: Database<Obj, string> = root.openDB({ name: "objects" })
  const long: Database<LongRecord, string> = root.openDB({ name: "objects-long-keys" })
  // Writes issued and not yet durable, so that `get` reads its own writes. An entry is removed
  // when its put settles, unless a later put of the same key replaced it.
  const unflushed = new Map<string, Obj>()

  const get = (key: string): Obj | undefined => {
    const pending = unflushed.get(key)
    if (pending !== undefined) return pending
    if (!isLong(key)) return objects.get(key)
    const record = long.get(digest(key))
    return record !== undefined && record.key === key ? record.obj : undefined
  }

  const put = (key: string, obj: Obj): Promise<void> => {
    unflushed.set(key, obj)
    const written: Promise<unknown> = isLong(key)
      ? long.put(digest(key), { key, obj })
      : objects.put(key, obj)
    // With overlappingSync, `put` resolves once committed (visible) and `flushed` once synced.
    return written
      .then(() => root.flushed as Promise<unknown>)
      .then(
        () => {
          if (unflushed.get(key) === obj) unflushed.delete(key)
        },
        (error: unknown) => {
          if (unflushed.get(key) === obj) unflushed.delete(key)
          throw error
        },
      )
  }

  const store: StoreShape = {
    kind: "lmdb",
    get,
    put,
    size: () => entryCount(objects) + entryCount(long),
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
      (opened) => Effect.promise(() => opened.close()).pipe(Effect.orDie),
    ).pipe(Effect.map((opened) => opened.store)),
  )
