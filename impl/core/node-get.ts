/**
 * The GET coordinator: ask the key's replicas, answer after R, keep listening until all N
 * answered or the deadline, then read-repair the stale ones and purge a fully replicated
 * tombstone past its grace.
 *
 * Owns: the Get requests in `state.pending`. Must not: mint events (only a write's coordinator
 * does), or repair a sloppy substitute (it holds hints, not the key).
 */
import type { Out } from "./ready.ts"
import * as Hlc from "./hlc.ts"
import * as Quorum from "./quorum.ts"
import * as Version from "./version.ts"
import type { GetOp, PeerMessage, StoreView } from "./messages.ts"
import type { NodeId } from "./ids.ts"
import {
  failQuorum,
  reconcile,
  respond,
  type GetPending,
  type Origin,
  type Placement,
  type State,
} from "./node-state.ts"
import { counts, readSet, tooFewReplicas } from "./node-placement.ts"
import { localWithHints, purged } from "./node-replica.ts"
import { mergeLocal, persist } from "./node-store.ts"

export const startGet = (
  state: State,
  now: number,
  origin: Origin,
  op: GetOp,
  store: StoreView,
  out: Out,
  placement: Placement = undefined,
): void => {
  state.stats.gets++
  const { asked: replicas, substitutes } = readSet(state, op.key, now, placement)
  const need = op.r ?? state.config.r
  if (tooFewReplicas(state, origin, "R", need, replicas.length - substitutes.size, out)) return
  const rid = state.nextRid++
  const p: GetPending = {
    _tag: "Get",
    origin,
    key: op.key,
    tally: Quorum.make(need, replicas),
    responses: new Map(),
    replied: false,
    substitutes,
    since: now,
  }
  state.pending.set(rid, p)
  out.setTimer({ _tag: "SetTimer", rid, kind: "Deadline", at: now + state.config.requestTimeoutMs })
  for (const replica of replicas) {
    if (replica === state.config.self) continue
    const message: PeerMessage = { _tag: "ReadRequest", rid, key: op.key }
    out.sendNow({ _tag: "Send", to: replica, message })
  }
  if (replicas.includes(state.config.self)) {
    const local = localWithHints(store, op.key)
    onGetRead(state, now, rid, p, state.config.self, local, store, out)
  }
}

/** One replica's answer to a GET: reply at R, repair once all N answered. */
export const onGetRead = (
  state: State,
  now: number,
  rid: number,
  p: GetPending,
  from: NodeId,
  obj: Version.Obj,
  store: StoreView,
  out: Out,
): void => {
  if (p.responses.has(from) || !p.tally.asked.includes(from)) return
  p.responses.set(from, obj)
  p.tally = Quorum.addOk(p.tally, from, counts(p.substitutes, from, obj))
  if (!p.replied && Quorum.enough(p.tally)) {
    p.replied = true
    respond(state, p.origin, { _tag: "GetOk", obj: mergedOf(state, p) }, out)
  }
  if (!Quorum.complete(p.tally)) return
  if (!p.replied) {
    // Everyone answered, yet too few answers count (empty substitutes): fail now, not later.
    p.replied = true
    failQuorum(state, p.origin, "R", p.tally, out)
  }
  finishGet(state, now, rid, p, store, out)
}

export const mergedOf = (state: State, p: GetPending): Version.Obj => {
  let merged = Version.empty
  for (const obj of p.responses.values()) merged = Version.sync(merged, obj)
  return reconcile(state, p.key, merged)
}

/**
 * The read's deadline: a read that has not met R by now fails (the answers already in are
 * still used to repair the replicas that answered).
 */
export const onGetDeadline = (
  state: State,
  now: number,
  rid: number,
  p: GetPending,
  store: StoreView,
  out: Out,
): void => {
  if (!p.replied) {
    failQuorum(state, p.origin, "R", p.tally, out)
    p.replied = true
  }
  finishGet(state, now, rid, p, store, out)
}

/**
 * Read repair: every replica that answered with less than the merged object gets it. When every
 * replica answered with the same tombstone older than the grace period, purge it (KV-7).
 */
export const finishGet = (
  state: State,
  now: number,
  rid: number,
  p: GetPending,
  store: StoreView,
  out: Out,
): void => {
  state.pending.delete(rid)
  const merged = mergedOf(state, p)
  if (Quorum.complete(p.tally) && maybePurge(state, now, p, merged, store, out)) return
  for (const [node, obj] of p.responses) {
    if (Version.equals(obj, merged) || p.substitutes.has(node)) continue
    state.stats.readRepairs++
    if (node === state.config.self) {
      // Merge into the current local object: a write may have landed since this read began.
      mergeLocal(state, store, p.key, merged, out)
    } else {
      // Stamped with the read's start: the answers it merged were held no earlier (RECLAIM-1).
      const message: PeerMessage = { _tag: "Repair", key: p.key, obj: merged, at: p.since }
      out.sendAfterPersist({ _tag: "Send", to: node, message })
    }
  }
}

/**
 * Purge a tombstone every replica holds identically and that is older than the grace period.
 * The tombstone value goes; the version vector (at most one entry per coordinating replica)
 * stays, so that a stale copy arriving later is still dominated (no zombie, CAUSAL-3) and a
 * coordinator never mints a dot it minted before (dropping the vector too would reuse dots).
 */
export const maybePurge = (
  state: State,
  now: number,
  p: GetPending,
  merged: Version.Obj,
  store: StoreView,
  out: Out,
): boolean => {
  // An expired value is a tombstone from its expiry on (EXP-3): purged by the same rule.
  if (!Version.isDeletedAt(merged, now) || p.substitutes.size > 0) return false
  for (const obj of p.responses.values()) if (!Version.equals(obj, merged)) return false
  const died = Math.max(
    ...Version.siblings(merged).map((d) => Version.diedAt(d.sibling, Hlc.wallMs)),
  )
  if (died + state.config.tombstoneGraceMs > now) return false
  state.stats.purges++
  for (const node of p.responses.keys()) {
    if (node !== state.config.self) {
      out.sendAfterPersist({
        _tag: "Send",
        to: node,
        message: { _tag: "Purge", key: p.key, obj: merged },
      })
    } else if (Version.equals(store.get(p.key) ?? Version.empty, merged)) {
      // Only if nothing newer landed here since the read began.
      persist(state, store, p.key, purged(merged), out)
    }
  }
  return true
}
