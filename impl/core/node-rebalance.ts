/**
 * Rebalancing on the ring: after every change of placement (join, leave, remove) each node
 * streams the keys it holds to the owners they gain, rate-limited, and drops the ones it no
 * longer owns once every new owner acknowledged them; a joining member becomes "up" once every
 * owner has pushed to it.
 *
 * Owns: `rebalance` (the pass: cursor, settled placement, pushes, StreamDone bookkeeping) and
 * `stats.streamed`/`stats.dropped`. Must not: drop a key before every new owner acknowledged it
 * durably, or run passes under Chord routing (node-placement.ts decides; there the only pushes
 * are node-chord.ts's hand-backs of swept keys, which share `rebalance.pushes` and its acks).
 */
import type { Out } from "./ready.ts"
import type { NodeId } from "./ids.ts"
import type { StoreView } from "./messages.ts"
import * as Membership from "./membership.ts"
import * as Ring from "./ring.ts"
import * as Version from "./version.ts"
import { believedUp, PUSH_GIVE_UP_REQUESTS, type Rebalance, type State } from "./node-state.ts"
import { stepMembership } from "./node-membership.ts"
import { drop, mergeLocal } from "./node-store.ts"
import { keepsMembership } from "./node-placement.ts"

// ---------------------------------------------------------------------------------------------
// Rebalancing: join, leave and remove stream data to the new owners (rate-limited)

/** No pass yet: `settleBootPlacement` decides, once the boot rings are known, if one is due. */
export const initRebalance = (): Rebalance => ({
  cursor: undefined,
  settled: undefined,
  pushes: new Map(),
  doneFrom: new Set(),
  passes: 0,
  strays: 0,
})

/**
 * The placement a node boots with is settled (no streaming until membership changes), unless a
 * change is pending in it: a member joining or leaving waits for a pass of every owner
 * (StreamDone), and this node may be one it has not heard from yet (it crashed during the
 * change). Then a pass runs, pushing only to the owners gained since the current ring.
 */
export const settleBootPlacement = (state: State): void => {
  state.rebalance.settledRing = state.ring
  const pending = state.ring.nodes.join() !== state.futureRing.nodes.join()
  if (!pending) state.rebalance.settled = state.ringSignature
}

const doneFromOf = (state: State): Map<string, Set<NodeId>> => {
  const r = state.rebalance as { doneFrom: unknown }
  if (!(r.doneFrom instanceof Map)) r.doneFrom = new Map()
  return r.doneFrom as Map<string, Set<NodeId>>
}

/**
 * One step of the rebalancing pass, every stream interval: scan up to `streamBatch` local keys
 * and push each to the owners it gains under the new placement (those not owning it under the
 * last settled one); a key this node no longer owns goes to every new owner. The pass completes
 * when the scan is done and every push is acknowledged; then joining members are told
 * (StreamDone), and a leaving node removes itself.
 */
export const maybeRebalance = (state: State, now: number, store: StoreView, out: Out): void => {
  const r = state.rebalance
  if (r.nextAt !== undefined && now < r.nextAt) return
  r.nextAt = now + state.config.streamIntervalMs
  if (state.ring.tokens.length === 0 && state.futureRing.tokens.length === 0) return
  if (r.strays > 0 && r.settled === state.ringSignature && now >= (r.retryAt ?? 0)) {
    // Keys kept for a new owner that was down: push them again.
    r.settled = undefined
    r.passSignature = undefined
  }
  if (r.passSignature !== state.ringSignature) {
    if (r.settled === state.ringSignature) return
    r.passSignature = state.ringSignature
    r.cursor = undefined
    r.passes++
    r.strays = 0
    // The new pass re-pushes whatever the new placement needs; pushes of the old one may wait
    // on owners that no longer are (a removed node) and must not hold this pass back.
    r.pushes.clear()
  }
  // Resend pushes that went unacknowledged (lost, or the owner was down). A new owner that is
  // still down after the give-up time is not waited for (a member that died without being
  // removed must not block a join or a leave for ever): anti-entropy brings it the key from
  // the other owners once it is back, and this node keeps its own copy.
  for (const [key, push] of r.pushes) {
    if (now - push.sentAt < state.config.requestTimeoutMs) continue
    push.sentAt = now
    for (const to of push.waiting) {
      if (believedUp(state, to, now)) {
        const message = { _tag: "StreamPush", key, obj: push.obj, at: now } as const
        out.sendAfterPersist({ _tag: "Send", to, message })
      } else if (now - push.since >= PUSH_GIVE_UP_REQUESTS * state.config.requestTimeoutMs) {
        push.waiting.delete(to)
        if (push.drop) r.strays++
        push.drop = false
      }
    }
    if (push.waiting.size === 0) r.pushes.delete(key)
  }
  if (r.cursor !== null && r.pushes.size < state.config.streamBatch * 4) {
    const page = store.scan(r.cursor, state.config.streamBatch)
    for (const [key, obj] of page) pushKey(state, now, key, obj, out)
    r.cursor = page.length < state.config.streamBatch ? null : page[page.length - 1]![0]
  }
  if (r.cursor === null && r.pushes.size === 0) finishPass(state, now, out)
}

const pushKey = (state: State, now: number, key: string, obj: Version.Obj, out: Out): void => {
  const n = state.config.n
  const self = state.config.self
  const desired = Ring.preferenceList(state.futureRing, key, n)
  const current = Ring.preferenceList(state.ring, key, n)
  const owned = desired.includes(self) || current.includes(self)
  const before = state.rebalance.settledRing
  const had = before === undefined ? [] : Ring.preferenceList(before, key, n)
  const targets = desired.filter((d) => d !== self && (!owned || !had.includes(d)))
  if (targets.length === 0) return
  state.rebalance.pushes.set(key, {
    obj,
    waiting: new Set(targets),
    since: now,
    sentAt: now,
    // A key this node no longer owns goes once every new owner has it. Its own events need
    // not stay: a later write coordinated here mints dots above them (RECLAIM-2).
    drop: !owned,
  })
  for (const to of targets)
    out.sendAfterPersist({ _tag: "Send", to, message: { _tag: "StreamPush", key, obj, at: now } })
  state.stats.streamed++
}

const finishPass = (state: State, now: number, out: Out): void => {
  const r = state.rebalance
  r.settled = r.passSignature
  r.settledRing = state.futureRing
  if (r.strays > 0) r.retryAt = now + PUSH_GIVE_UP_REQUESTS * state.config.requestTimeoutMs
  const signature = r.passSignature!
  for (const e of Membership.view(state.membership).values()) {
    if (e.status === "joining" && e.id !== state.config.self) {
      out.sendAfterPersist({ _tag: "Send", to: e.id, message: { _tag: "StreamDone", signature } })
    }
  }
  const self = Membership.selfEntry(state.membership)
  if (self?.status === "leaving") {
    stepMembership(state, now, { _tag: "RemoveRequested", now, node: state.config.self }, out)
  }
  maybeMarkUp(state, now, out)
}

export const onStreamPush = (
  state: State,
  from: NodeId,
  message: { readonly key: string; readonly obj: Version.Obj },
  store: StoreView,
  out: Out,
): void => {
  mergeLocal(state, store, message.key, message.obj, out)
  out.sendAfterPersist({ _tag: "Send", to: from, message: { _tag: "StreamAck", key: message.key } })
}

export const onStreamAck = (
  state: State,
  now: number,
  from: NodeId,
  key: string,
  store: StoreView,
  out: Out,
): void => {
  const push = state.rebalance.pushes.get(key)
  if (push === undefined) return
  push.waiting.delete(from)
  if (push.waiting.size > 0) return
  state.rebalance.pushes.delete(key)
  const stored = store.get(key)
  if (push.drop && stored !== undefined && Version.equals(stored, push.obj)) {
    state.stats.dropped++
    drop(state, store, key, push.obj, out)
  }
  if (
    keepsMembership(state) &&
    state.rebalance.cursor === null &&
    state.rebalance.pushes.size === 0
  )
    finishPass(state, now, out)
}

export const onStreamDone = (
  state: State,
  now: number,
  from: NodeId,
  signature: string,
  out: Out,
): void => {
  const done = doneFromOf(state)
  const set = done.get(signature) ?? new Set<NodeId>()
  set.add(from)
  done.set(signature, set)
  maybeMarkUp(state, now, out)
}

/**
 * A joining node becomes "up" once its own pass is done and every current owner it believes up
 * has pushed what it holds for the current placement.
 */
const maybeMarkUp = (state: State, now: number, out: Out): void => {
  if (Membership.selfEntry(state.membership)?.status !== "joining") return
  if (state.rebalance.settled !== state.ringSignature) return
  const done = doneFromOf(state).get(state.ringSignature) ?? new Set<NodeId>()
  const sources = state.ring.nodes.filter(
    (id) => id !== state.config.self && believedUp(state, id, now),
  )
  if (sources.length === 0 || !sources.every((id) => done.has(id))) return
  stepMembership(state, now, { _tag: "MarkUp", now }, out)
}

/** Progress of rebalancing, for `dht status`. */
export const streamingProgress = (state: State) => ({
  pass: state.rebalance.passes,
  settled: state.rebalance.settled === state.ringSignature,
  pending: state.rebalance.pushes.size,
  scanning: state.rebalance.cursor !== null,
})
