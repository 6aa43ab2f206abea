/**
 * Reclamation of dead keys (RECLAIM-1..3, spec/invariants.md): a tombstone or an expired value,
 * once every replica holds it and its grace has passed, is deleted everywhere — value, clock and
 * key — so that the store holds live keys plus the dead ones younger than the grace.
 *
 * Owns: the reaper's state (`state.reap`: the scan cursor, the candidates, pass counts), this
 * node's `calmSince`, and the rule that drops stale object-carrying messages (`stale`).
 * Must not: mint events (it never writes a tombstone; an expired value dies by its own expiry),
 * or delete anything its replicas were not all seen holding, twice.
 *
 * Why deleting the clock cannot bring a deleted value back. A dead object `t` of key k is
 * reclaimed by the key's first replica (the driver) only after:
 *  1. a first round saw every replica of k (current owners, which must equal the pending ones)
 *     holding `t`, completed at time Q (the candidate's `since`). From then on every replica
 *     holds `t` or more, so a copy of an older value `v` that `t` supersedes was sent by a
 *     replica before Q;
 *  2. every member gossips `calm` (holds no hint and no key it must hand over) since c_m, and
 *     has said so at a heartbeat stamped at or after H = max(Q, max c_m) + A + S, where S is
 *     maxClockSkew and A = maxMessageAge + 2S: a node outside the preference list holds a copy
 *     of k only as a hint or as a key to hand over, so every copy of `v` was sent before
 *     max(Q, max c_m) (in the sender's clock, within S of ours);
 *  3. every object-carrying message is stamped with the time its content was last held, and
 *     a receiver drops it once it looks older than maxMessageAge + S (`stale`), so that its
 *     true age on arrival is at most A: after H no copy of `v` can land anywhere;
 *  4. a second round, at or after H, still sees every replica holding exactly `t`.
 * Then `Reap` deletes k on each replica whose object still equals `t`. A write after that is a
 * new write: its coordinator mints a dot above every dot of its own for k (RECLAIM-2, the
 * counter follows the hybrid clock), so nothing of the old clock is needed to order it.
 *
 * The cost of the rule: a member that is down (its heartbeats stop) or holds hints holds
 * reclamation back cluster-wide; remove dead members (`dht remove`). Chord routing keeps only
 * the read-time purge (values dropped, clock kept): it has no cluster-wide membership to be calm.
 */
import type { Out } from "./ready.ts"
import * as Hlc from "./hlc.ts"
import type { NodeId } from "./ids.ts"
import * as Membership from "./membership.ts"
import type { PeerMessage, StoreView } from "./messages.ts"
import * as Ring from "./ring.ts"
import * as Version from "./version.ts"
import { believedUp, reconcile, type Reap, type ReapPending, type State } from "./node-state.ts"
import { drop, mergeLocal } from "./node-store.ts"

/** The reaper of a node that starts: no pass yet, the first one due at once. */
export const initReap = (now: number): Reap => ({
  cursor: undefined,
  nextAt: now,
  candidates: new Map(),
  rounds: 0,
  pass: { keys: 0, dead: 0 },
  last: undefined,
})

/** Messages that carry objects to be stored: these carry `at` and may be stale. */
const CARRIES_OBJECTS: ReadonlySet<PeerMessage["_tag"]> = new Set([
  "WriteRequest",
  "HintedWrite",
  "Handoff",
  "AntiEntropy",
  "StreamPush",
  "Repair",
  "Reap",
])

/**
 * Drop an object-carrying message older than `maxMessageAgeMs`, or sent by a member that was
 * removed (a removed node never rejoins, so nothing it still holds may come back).
 */
export const stale = (state: State, now: number, from: NodeId, message: PeerMessage): boolean => {
  if (!CARRIES_OBJECTS.has(message._tag)) return false
  const at = (message as { readonly at?: number | undefined }).at
  const bound = state.config.maxMessageAgeMs + state.config.maxClockSkewMs
  const checked = state.config.unsafeReclaim !== "no-message-age"
  if (checked && at !== undefined && now - at > bound) return true
  return Membership.view(state.membership).get(from)?.status === "removed"
}

/** A node with no hint and nothing left to hand over is calm; gossip carries since when. */
export const updateCalm = (state: State, now: number, store: StoreView): void => {
  const r = state.rebalance
  const busy =
    store.hints(1).length > 0 ||
    r.pushes.size > 0 ||
    r.strays > 0 ||
    r.settled !== state.ringSignature
  if (busy) state.calmSince = undefined
  else if (state.calmSince === undefined) state.calmSince = now
  state.membership.calmSince = state.calmSince
}

/**
 * Condition 2 above, for a candidate whose first round completed at `since`: every member
 * (removed ones excepted) is calm and has said so at or after H, and H has passed here.
 */
export const calmAfter = (state: State, now: number, since: number): boolean => {
  if (state.config.unsafeReclaim === "no-calm") return true
  const margin = state.config.maxMessageAgeMs + 3 * state.config.maxClockSkewMs
  const members = [...Membership.view(state.membership).values()].filter(
    (e) => e.status !== "removed",
  )
  let latest = since
  for (const e of members) {
    const calm = e.id === state.config.self ? state.calmSince : e.calm
    if (calm === undefined) return false
    latest = Math.max(latest, calm)
  }
  const h = latest + margin
  if (now < h) return false
  return members.every((e) => e.id === state.config.self || (e.at !== undefined && e.at >= h))
}

/** The key's replicas, if this node is the one to reclaim it (its first replica believed up). */
const driven = (state: State, now: number, key: string): ReadonlyArray<NodeId> | undefined => {
  const n = state.config.n
  const replicas = Ring.preferenceList(state.ring, key, n)
  const future = Ring.preferenceList(state.futureRing, key, n)
  // A key whose placement is changing is left alone until it settles.
  if (future.length !== replicas.length || !future.every((m) => replicas.includes(m))) return
  if (replicas.find((m) => believedUp(state, m, now)) !== state.config.self) return
  return replicas
}

/**
 * Every `reapIntervalMs`: examine the next `reapBatch` stored keys (the pass wraps around), and
 * start a round for each dead key past its grace that this node drives; then start the second
 * round of every candidate whose wait is over.
 */
export const maybeReap = (state: State, now: number, store: StoreView, out: Out) => {
  const r = state.reap
  if (now < r.nextAt) return
  r.nextAt = now + state.config.reapIntervalMs
  const batch = state.config.reapBatch
  const page = store.scan(r.cursor, batch)
  for (const [key, obj] of page) {
    r.pass.keys++
    const died = Version.deadSince(obj, now, Hlc.wallMs)
    if (died === undefined) continue
    r.pass.dead++
    if (died + state.config.tombstoneGraceMs > now || r.rounds >= batch) continue
    if (r.candidates.has(key) || r.candidates.size >= batch * 8) continue
    const replicas = driven(state, now, key)
    if (replicas !== undefined) startRound(state, now, key, replicas, false, store, out)
  }
  if (page.length < batch) {
    r.last = { keys: r.pass.keys, dead: r.pass.dead, at: now }
    r.pass = { keys: 0, dead: 0 }
    r.cursor = undefined
  } else {
    r.cursor = page[page.length - 1]![0]
  }
  for (const [key, c] of r.candidates) {
    if (r.rounds >= batch) break
    const local = store.get(key)
    if (local === undefined || !Version.equals(local, c.obj)) {
      r.candidates.delete(key)
      continue
    }
    if (!calmAfter(state, now, c.since)) continue
    const replicas = driven(state, now, key)
    if (replicas === undefined) r.candidates.delete(key)
    else startRound(state, now, key, replicas, true, store, out)
  }
}

const startRound = (
  state: State,
  now: number,
  key: string,
  replicas: ReadonlyArray<NodeId>,
  confirm: boolean,
  store: StoreView,
  out: Out,
): void => {
  const rid = state.nextRid++
  const p: ReapPending = { _tag: "Reap", key, asked: replicas, answers: new Map(), confirm }
  state.pending.set(rid, p)
  state.reap.rounds++
  out.setTimer({ _tag: "SetTimer", rid, kind: "Deadline", at: now + state.config.requestTimeoutMs })
  for (const node of replicas) {
    if (node !== state.config.self) {
      out.sendNow({ _tag: "Send", to: node, message: { _tag: "ReadRequest", rid, key } })
    }
  }
  onReapAnswer(state, now, rid, p, state.config.self, store.get(key) ?? Version.empty, store, out)
}

export const endReapRound = (state: State, rid: number): void => {
  if (state.pending.delete(rid)) state.reap.rounds--
}

/** One replica's object for a round; once all answered, decide. */
export const onReapAnswer = (
  state: State,
  now: number,
  rid: number,
  p: ReapPending,
  from: NodeId,
  obj: Version.Obj,
  store: StoreView,
  out: Out,
): void => {
  if (!p.asked.includes(from) || p.answers.has(from)) return
  p.answers.set(from, obj)
  if (p.answers.size < p.asked.length) return
  endReapRound(state, rid)
  const r = state.reap
  let merged = Version.empty
  for (const o of p.answers.values()) merged = Version.sync(merged, o)
  merged = reconcile(state, p.key, merged)
  const died = Version.deadSince(merged, now, Hlc.wallMs)
  if (died === undefined || died + state.config.tombstoneGraceMs > now) {
    r.candidates.delete(p.key)
    return
  }
  if (![...p.answers.values()].every((o) => Version.equals(o, merged))) {
    // A replica lags: bring it the dead object (a join, never a loss) and start over later.
    r.candidates.delete(p.key)
    for (const [node, o] of p.answers) {
      if (Version.equals(o, merged)) continue
      if (node === state.config.self) {
        mergeLocal(state, store, p.key, merged, out)
      } else {
        const message: PeerMessage = { _tag: "Repair", key: p.key, obj: merged, at: now }
        out.sendAfterPersist({ _tag: "Send", to: node, message })
      }
    }
    return
  }
  const c = r.candidates.get(p.key)
  if (!p.confirm || c === undefined || !Version.equals(c.obj, merged)) {
    // First round (or the object changed since): every replica holds `merged` as of now.
    r.candidates.set(p.key, { obj: merged, since: now })
    return
  }
  if (!calmAfter(state, now, c.since)) return
  r.candidates.delete(p.key)
  state.stats.reaped++
  for (const node of p.asked) {
    if (node === state.config.self) {
      drop(state, store, p.key, merged, out)
    } else {
      out.sendAfterPersist({
        _tag: "Send",
        to: node,
        message: { _tag: "Reap", key: p.key, obj: merged, at: now },
      })
    }
  }
}

/** A replica reclaims the key if its object is still the one every replica was seen holding. */
export const onReap = (
  state: State,
  key: string,
  obj: Version.Obj,
  store: StoreView,
  out: Out,
): void => {
  const local = store.get(key)
  if (local === undefined || !Version.equals(local, obj)) return
  state.stats.reaped++
  drop(state, store, key, obj, out)
}

/**
 * Reclamation (RECLAIM-1), for INFO and `dht status`: keys reclaimed here, the reaper's last
 * complete pass over the store (keys it saw, of which dead: tombstones and expired values not
 * yet reclaimed), candidates waiting for their second round, and whether this node is calm.
 */
export const reclaimReport = (state: State) => ({
  reaped: state.stats.reaped,
  lastPass:
    state.reap.last === undefined
      ? null
      : { keys: state.reap.last.keys, dead: state.reap.last.dead, at: state.reap.last.at },
  candidates: state.reap.candidates.size,
  calm: state.calmSince !== undefined,
})
