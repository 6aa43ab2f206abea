/**
 * The storage node's one writer of its local store (impl/core/node.ts and its parts): every
 * Persist and Drop the node emits leaves through `mergeLocal`, `persist` or `drop`, and each of
 * them keeps the anti-entropy trees (node-ae.ts) in step with the store as it will be once the
 * step's commands have run. No part reads the commands back to learn what was written.
 *
 * The store view a step reads shows none of the step's own writes (the driver applies them
 * after the step returns), so the writes of the step so far are kept in `written`: a tree's
 * update names the object the key held before this write, which is the step's last write of
 * the key if it wrote it already. Node.step clears `written` once the step is done (`endStep`).
 *
 * Owns: `written`, and the upkeep on every write of `aeTrees` and of the tree being built
 * (`aeBuild`: only the keys its scan has passed). Must not: decide what is written
 * or when (its callers do), or let a write reach the store but through these functions; keep a
 * tree it found out of step with the store (it drops it: the next exchange rebuilds it).
 */
import type { Out } from "./ready.ts"
import type { StoreView } from "./messages.ts"
import * as Hlc from "./hlc.ts"
import * as Merkle from "./merkle.ts"
import * as Version from "./version.ts"
import { reconcile, type State } from "./node-state.ts"
import { antiEntropyHolds } from "./node-placement.ts"

/**
 * The replica's one way to take in an object from elsewhere — replication, read repair,
 * hinted handoff, streaming, anti-entropy, the reaper's repair: sync it into the stored object
 * (a join, VER-1, so a replica's object never regresses), apply the key's policy, observe its
 * timestamps (KV-LWW-1), and persist only if that changed anything. Returns whether it did.
 */
export const mergeLocal = (
  state: State,
  store: StoreView,
  key: string,
  obj: Version.Obj,
  out: Out,
): boolean => {
  // The step's own earlier writes first: a step that writes a key twice keeps both.
  const local = current(state, store, key) ?? Version.empty
  const merged = reconcile(state, key, Version.sync(local, obj))
  for (const d of Version.siblings(obj)) state.hlc = Hlc.observe(state.hlc, d.sibling.ts)
  if (Version.equals(merged, local)) return false
  persist(state, store, key, merged, out)
  return true
}

/** Store `obj` as the object of `key` (a coordinator's minted write, a purge). */
export const persist = (
  state: State,
  store: StoreView,
  key: string,
  obj: Version.Obj,
  out: Out,
): void => {
  out.write({ _tag: "Persist", key, obj })
  wrote(state, store, key, obj)
}

/** Delete `key` if its object is still `obj` when the write runs (a hand-over, a reclaim). */
export const drop = (
  state: State,
  store: StoreView,
  key: string,
  obj: Version.Obj,
  out: Out,
): void => {
  out.write({ _tag: "Drop", key, obj })
  const before = current(state, store, key)
  wrote(state, store, key, before !== undefined && Version.equals(before, obj) ? undefined : before)
}

/**
 * The object `key` will hold once the step's writes so far have run: what a coordinator that
 * mints over the local object must read (the store view shows a step's writes only after it).
 */
export const current = (state: State, store: StoreView, key: string): Version.Obj | undefined =>
  state.written.has(key) ? state.written.get(key) : store.get(key)

/**
 * Record that `key` goes to `after` (undefined: deleted) and update every kept tree that holds
 * the key. A tree that does not hold what the store holds (a bug elsewhere) is dropped, to be
 * rebuilt when next needed.
 */
const wrote = (
  state: State,
  store: StoreView,
  key: string,
  after: Version.Obj | undefined,
): void => {
  const before = current(state, store, key)
  state.written.set(key, after)
  const build = state.aeBuild
  if (state.aeTrees.size === 0 && build === undefined) return
  const holds = antiEntropyHolds(state, key)
  for (const [id, kept] of state.aeTrees) {
    if (!holds(kept.peer)) continue
    try {
      Merkle.update(kept.tree, key, before, after)
    } catch {
      state.aeTrees.delete(id)
    }
  }
  // A tree being built holds the keys its scan has passed; the scan picks up the others.
  if (build?.phase !== "Hash" || build.cursor === undefined || key > build.cursor) return
  if (!holds(build.peer)) return
  try {
    Merkle.update(build.tree!, key, before, after)
  } catch {
    state.aeBuild = undefined
  }
}

/** The step is done: the driver applies its writes, and the store view will show them. */
export const endStep = (state: State): void => {
  // Most steps write nothing; Map.clear allocates a fresh table in V8, so skip it then.
  if (state.written.size > 0) state.written.clear()
}
