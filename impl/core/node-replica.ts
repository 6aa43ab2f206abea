/**
 * The replica side of the request path: answer reads, take in written and repaired objects
 * (mergeLocal), keep hints for replicas believed down and hand them back (hinted handoff),
 * purge and reclaim dead keys when told to.
 *
 * Owns: `handoffInFlight`, `nextHandoffAt`. Must not: mint events, or drop a hint before its
 * owner acknowledged it durably.
 */
import type { Out } from "./ready.ts"
import { absurd } from "effect/Function"
import * as Version from "./version.ts"
import type { PeerMessage, StoreView } from "./messages.ts"
import type { NodeId } from "./ids.ts"
import { believedUp, reconcile, type State } from "./node-state.ts"
import { mergeLocal, persist } from "./node-store.ts"
import { onReap } from "./node-reap.ts"

/** A purged object: the version vector without its (tombstone) values. */
export const purged = (obj: Version.Obj): Version.Obj => ({
  entries: obj.entries.map((e) => ({ actor: e.actor, counter: e.counter, values: [] })),
})

// ---------------------------------------------------------------------------------------------
// Timers and ticks

/**
 * Hinted handoff: every interval, deliver up to `handoffBatch` hints whose owners are believed
 * up. Hints are read from the durable store, so a holder that restarted still delivers them.
 * A hint is dropped only after its owner acknowledged it durably (HandoffAck).
 */
export const maybeHandoff = (state: State, now: number, store: StoreView, out: Out): void => {
  if (now < state.nextHandoffAt) return
  state.nextHandoffAt = now + state.config.handoffIntervalMs
  let sent = 0
  for (const h of store.hints(state.config.handoffBatch * 4)) {
    if (sent >= state.config.handoffBatch) break
    if (!believedUp(state, h.owner, now)) continue
    const id = `${h.owner}\u0000${h.key}`
    const since = state.handoffInFlight.get(id)
    if (since !== undefined && now - since < state.config.requestTimeoutMs) continue
    state.handoffInFlight.set(id, now)
    const message: PeerMessage = { _tag: "Handoff", key: h.key, obj: h.obj, at: now }
    out.sendAfterPersist({ _tag: "Send", to: h.owner, message })
    sent++
  }
}

export type ReplicaMessage = Extract<
  PeerMessage,
  {
    readonly _tag:
      | "ReadRequest"
      | "WriteRequest"
      | "Repair"
      | "HintedWrite"
      | "Handoff"
      | "HandoffAck"
      | "Purge"
      | "Reap"
  }
>

/**
 * The replica side of the request path: answer reads, take in written and repaired objects
 * (mergeLocal), keep hints for replicas believed down and hand them back, purge and reclaim.
 */
export const onReplicaMessage = (
  state: State,
  from: NodeId,
  message: ReplicaMessage,
  store: StoreView,
  out: Out,
): void => {
  switch (message._tag) {
    case "ReadRequest": {
      const obj = localWithHints(store, message.key)
      out.sendAfterPersist({
        _tag: "Send",
        to: from,
        message: { _tag: "ReadResponse", rid: message.rid, obj },
      })
      return
    }
    case "WriteRequest":
    case "Repair":
      mergeLocal(state, store, message.key, message.obj, out)
      if (message._tag === "WriteRequest") {
        out.sendAfterPersist({
          _tag: "Send",
          to: from,
          message: { _tag: "WriteAck", rid: message.rid },
        })
      }
      return
    case "HintedWrite": {
      const held = store.hint(message.owner, message.key) ?? Version.empty
      const merged = reconcile(state, message.key, Version.sync(held, message.obj))
      if (!Version.equals(merged, held)) {
        state.stats.hintsStored++
        out.write({ _tag: "PersistHint", owner: message.owner, key: message.key, obj: merged })
      }
      out.sendAfterPersist({
        _tag: "Send",
        to: from,
        message: { _tag: "WriteAck", rid: message.rid },
      })
      return
    }
    case "Handoff": {
      mergeLocal(state, store, message.key, message.obj, out)
      const ack: PeerMessage = { _tag: "HandoffAck", key: message.key, obj: message.obj }
      out.sendAfterPersist({ _tag: "Send", to: from, message: ack })
      return
    }
    case "HandoffAck":
      state.handoffInFlight.delete(`${from}\u0000${message.key}`)
      state.stats.hintsDelivered++
      out.write({ _tag: "DropHint", owner: from, key: message.key, obj: message.obj })
      return
    case "Purge": {
      const local = store.get(message.key)
      if (local !== undefined && Version.equals(local, message.obj)) {
        persist(state, store, message.key, purged(local), out)
      }
      return
    }
    case "Reap":
      return onReap(state, message.key, message.obj, store, out)
    default:
      return absurd(message)
  }
}

/** The local object of a key merged with any hints held for it (a substitute's answer). */
export const localWithHints = (store: StoreView, key: string): Version.Obj => {
  let obj = store.get(key) ?? Version.empty
  for (const h of store.hintsFor(key)) obj = Version.sync(obj, h.obj)
  return obj
}
