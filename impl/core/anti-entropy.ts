/**
 * The anti-entropy machine of one node: every interval it compares the Merkle tree of one of its
 * key ranges with one peer's (impl/core/merkle.ts) and repairs the keys that differ, so replicas
 * converge even for keys no client reads (Dynamo, DeCandia et al. SOSP 2007, section 4.7).
 *
 * One door: `step(state, event, view) -> [state, commands]`. Like impl/core/node.ts it updates
 * its state in place and never touches a clock, a socket or the store: time comes with every
 * event, the store and its trees are a read-only `View`, and all effects leave as commands.
 *
 * One exchange, initiator A and responder B, for range R:
 *   A: TreeLevelRequest(level 0 .. depth) ⇄ B: TreeLevelResponse   (descend where hashes differ)
 *   A: KeysRequest{buckets, A's digests}  → B: KeysResponse{B's objects of the differing keys}
 *   A: Repair{key, sync(a, b)} locally    → B: KeysPush{sync(a, b)}, which B turns into Repair.
 * Who pushes what: A pulls B's objects and computes sync(a, b) for each differing key; A keeps
 * it where it differs from a (Repair) and sends it where it differs from b (KeysPush). Both end
 * with sync(a, b) — or more, if either wrote meanwhile: Repair means "sync into the store", and
 * sync is a least upper bound (VER-1), so a repair never loses a newer write. B keeps no state
 * per exchange: it answers from its tree, so a lost, repeated or stray request costs nothing.
 *
 * Bounds. A node runs at most one exchange as initiator at a time; an exchange follows at most
 * K = `maxKeys` differing nodes per level and moves at most K keys each way. One token bucket
 * (impl/core/budget.ts, in keys per second) pays for both roles: starting an exchange costs K
 * tokens and serving keys one token per key, so the keys a node initiates or serves over any
 * t ms total at most ratePerSec · t / 1000 + burst (BUDGET-1). An exchange not finished within
 * `exchangeTimeoutMs` is abandoned; the next tick starts afresh (nothing to undo: every repair
 * is a sync).
 *
 * The driver's contract:
 *  - commands run in order; `Repair{key, obj}` means: sync obj into the stored object of key,
 *    persist it if it changed, and update the range trees (`Merkle.update`) before the next
 *    event is stepped (the view must show the store as it is);
 *  - `SetTimer{rid, at}` delivers TimerFired{rid} at `at` or later; timers are never cancelled;
 *  - messages may be lost, duplicated, delayed or reordered.
 *
 * Deliberately not here: choosing ranges and peers from the ring (the caller hands in
 * `targets`, e.g. for every range this node replicates, the other replicas of its preference
 * list), building or persisting trees, tombstone purge, hinted handoff.
 *
 * Owns: its `State` (targets, the round-robin cursor, the one exchange it initiated, its responder
 * budget and statistics), changed in place. Must not: write the store or any tree (it answers
 * with commands the node applies through node-store.ts), read a clock (`now` comes with each
 * event), or keep more than one initiated exchange in flight.
 *
 * Invariants kept: AE-3 (replicas converge within a bounded number of rounds after a heal),
 * AE-6 (any event sequence, including malformed and stray messages, is handled without a throw
 * and keeps at most one exchange in flight), BUDGET-1.
 */
import { absurd } from "effect/Function"
import * as Budget from "./budget.ts"
import type { NodeId } from "./ids.ts"
import * as Merkle from "./merkle.ts"
import * as Version from "./version.ts"
import type { Obj } from "./version.ts"

// ---------------------------------------------------------------------------------------------
// Vocabulary

/** The merged objects of an exchange, for the responder to sync into its store. */
export interface KeysPush {
  readonly _tag: "KeysPush"
  readonly rid: number
  readonly range: Merkle.Range
  readonly entries: ReadonlyArray<{ readonly key: string; readonly obj: Obj }>
}

export type RefusalReason = "NoTree" | "BadRequest" | "Busy"

/** The responder cannot take part: the initiator abandons the exchange. */
export interface ExchangeRefused {
  readonly _tag: "ExchangeRefused"
  readonly rid: number
  readonly reason: RefusalReason
  readonly detail: string
}

export type Message = Merkle.DiffMessage | KeysPush | ExchangeRefused

/** One (peer, range) pair this node keeps in sync; both sides must hold a tree of the range. */
export interface Target {
  readonly peer: NodeId
  readonly range: Merkle.Range
}

export type Event =
  /** Time passed: start the next exchange if one is due, none is running and budget allows. */
  | { readonly _tag: "TickElapsed"; readonly now: number }
  | {
      readonly _tag: "MessageReceived"
      readonly now: number
      readonly from: NodeId
      readonly message: Message
    }
  /** The timer of exchange `rid` fired: abandon it if it is still running. */
  | { readonly _tag: "TimerFired"; readonly now: number; readonly rid: number }
  /** The ring changed: these are now the (peer, range) pairs to visit, round-robin. */
  | {
      readonly _tag: "TargetsChanged"
      readonly now: number
      readonly targets: ReadonlyArray<Target>
    }

export type Command =
  | { readonly _tag: "Send"; readonly to: NodeId; readonly message: Message }
  /** Sync `obj` into the local object of `key` (persist if it changed; update the trees). */
  | { readonly _tag: "Repair"; readonly key: string; readonly obj: Obj }
  /** Deliver TimerFired{rid} at `at` (or later). */
  | { readonly _tag: "SetTimer"; readonly rid: number; readonly at: number }

/** The machine's read-only view of the local store and of the tree of each range it keeps. */
export interface View {
  readonly get: (key: string) => Obj | undefined
  /**
   * The local tree of `range`. `shape` given (a peer's request): a tree of exactly that shape, so
   * that both sides compare like with like whatever their key counts; absent (this node starts
   * an exchange): a shape of the view's choosing. Undefined: this node does not keep the range.
   * "Building": it does, and the tree is being built (a page of keys per step); ask later.
   */
  readonly tree: (range: Merkle.Range, shape?: Merkle.Shape) => Merkle.Tree | "Building" | undefined
}

// ---------------------------------------------------------------------------------------------
// State

export interface Config {
  readonly self: NodeId
  /** Start an exchange at most this often. */
  readonly intervalMs: number
  /** An exchange still running this long after it started is abandoned. */
  readonly exchangeTimeoutMs: number
  /** K: differing nodes followed per level and keys moved per exchange, >= 1. */
  readonly maxKeys: number
  /** Budget in keys per second, shared by the initiator and responder roles. */
  readonly ratePerSec: number
  /** Budget burst, >= maxKeys (or no exchange could ever start). */
  readonly burst: number
}

export const defaults = {
  intervalMs: 1000,
  exchangeTimeoutMs: 5000,
  maxKeys: 256,
  ratePerSec: 1024,
  burst: 1024,
} as const

type Expect =
  | { readonly _tag: "Level"; readonly request: Merkle.TreeLevelRequest }
  | { readonly _tag: "Keys"; readonly request: Merkle.KeysRequest }

interface Exchange {
  readonly rid: number
  readonly peer: NodeId
  readonly range: Merkle.Range
  readonly startedAt: number
  expect: Expect
}

export interface Stats {
  /** Exchanges started as initiator. */
  started: number
  /** Finished: the trees agreed (nothing to do). */
  inSync: number
  /** Finished: keys were compared and repaired. */
  repaired: number
  /** Abandoned after exchangeTimeoutMs. */
  timedOut: number
  /** Abandoned because the peer refused. */
  refused: number
  /** Ticks on which the budget denied a due exchange. */
  budgetDenied: number
  /** Tree nodes compared as initiator. */
  nodesCompared: number
  /** Repair commands emitted (as initiator or on a push). */
  keysRepaired: number
  /** Keys pushed to peers. */
  keysPushed: number
  /** Keys served to initiators. */
  keysServed: number
}

export interface State {
  readonly config: Config
  targets: ReadonlyArray<Target>
  /** Next target to visit (round-robin). */
  cursor: number
  /** No exchange starts before this time. */
  nextStartAt: number
  nextRid: number
  /** The exchange this node initiated and is running, if any (at most one). */
  active: Exchange | undefined
  budget: Budget.Budget
  readonly stats: Stats
}

export const init = (config: Config, targets: ReadonlyArray<Target>, now: number): State => {
  if (!(Number.isInteger(config.maxKeys) && config.maxKeys >= 1)) {
    throw new Error(`anti-entropy: maxKeys must be an integer >= 1, got ${config.maxKeys}`)
  }
  if (!(config.burst >= config.maxKeys)) {
    throw new Error(`anti-entropy: burst ${config.burst} < maxKeys ${config.maxKeys}`)
  }
  return {
    config,
    targets,
    cursor: 0,
    nextStartAt: now,
    nextRid: 1,
    active: undefined,
    budget: Budget.make(config.ratePerSec, config.burst, now),
    stats: {
      started: 0,
      inSync: 0,
      repaired: 0,
      timedOut: 0,
      refused: 0,
      budgetDenied: 0,
      nodesCompared: 0,
      keysRepaired: 0,
      keysPushed: 0,
      keysServed: 0,
    },
  }
}

export const step = (
  state: State,
  event: Event,
  view: View,
): readonly [State, ReadonlyArray<Command>] => {
  const out: Array<Command> = []
  switch (event._tag) {
    case "TickElapsed":
      maybeStart(state, event.now, view, out)
      break
    case "MessageReceived":
      onMessage(state, event.now, event.from, event.message, view, out)
      break
    case "TimerFired":
      if (state.active?.rid === event.rid) {
        state.active = undefined
        state.stats.timedOut++
      }
      break
    case "TargetsChanged":
      state.targets = event.targets
      state.cursor = 0
      break
    default:
      absurd(event)
  }
  return [state, out]
}

/** Sync `incoming` into `local`: the object to store, or undefined if nothing changes. */
export const merge = (local: Obj | undefined, incoming: Obj): Obj | undefined => {
  const base = local ?? Version.empty
  const merged = Version.sync(base, incoming)
  return Version.equals(merged, base) ? undefined : merged
}

// ---------------------------------------------------------------------------------------------
// Initiator

const maybeStart = (state: State, now: number, view: View, out: Array<Command>): void => {
  // Guards: one exchange at a time; not before it is due; something to visit.
  if (state.active !== undefined || now < state.nextStartAt || state.targets.length === 0) return
  const target = state.targets[state.cursor % state.targets.length]!
  const tree = view.tree(target.range)
  if (tree === undefined) {
    // We no longer keep this range (the ring moved): skip it, try the next on the next tick.
    state.cursor = (state.cursor + 1) % state.targets.length
    return
  }
  // The view is building a tree (this one, or a peer's): start once it is done.
  if (tree === "Building") return
  // Reserve the worst case (K keys) up front, so the budget bounds keys moved, not exchanges.
  const taken = Budget.take(state.budget, state.config.maxKeys, now)
  state.budget = taken.budget
  if (!taken.granted) {
    state.stats.budgetDenied++
    state.nextStartAt = taken.retryAtMs
    return
  }
  state.cursor = (state.cursor + 1) % state.targets.length
  const rid = state.nextRid++
  const request = Merkle.startDiff(tree, rid)
  state.active = {
    rid,
    peer: target.peer,
    range: target.range,
    startedAt: now,
    expect: { _tag: "Level", request },
  }
  state.nextStartAt = now + state.config.intervalMs
  state.stats.started++
  out.push({ _tag: "SetTimer", rid, at: now + state.config.exchangeTimeoutMs })
  out.push({ _tag: "Send", to: target.peer, message: request })
}

const finish = (state: State, outcome: "inSync" | "repaired" | "refused"): void => {
  state.active = undefined
  state.stats[outcome]++
}

/** The running exchange, if `from` and `rid` are its peer and id. */
const activeFor = (state: State, from: NodeId, rid: number): Exchange | undefined => {
  const x = state.active
  return x !== undefined && x.peer === from && x.rid === rid ? x : undefined
}

const onLevelResponse = (
  state: State,
  from: NodeId,
  response: Merkle.TreeLevelResponse,
  view: View,
  out: Array<Command>,
): void => {
  const x = activeFor(state, from, response.rid)
  // Stale, duplicated or foreign answers do not fit what we wait for: ignore them.
  if (x?.expect._tag !== "Level" || !Merkle.answers(x.expect.request, response)) return
  const tree = view.tree(x.range, x.expect.request.shape)
  // The tree went (the ring moved, or it was found out of step and is being rebuilt): give up.
  if (tree === undefined || tree === "Building") return finish(state, "refused")
  const next = Merkle.compareLevel(tree, x.expect.request, response, state.config.maxKeys)
  state.stats.nodesCompared += next.compared
  switch (next._tag) {
    case "InSync":
      return finish(state, "inSync")
    case "Descend":
      x.expect = { _tag: "Level", request: next.request }
      out.push({ _tag: "Send", to: x.peer, message: next.request })
      return
    case "FetchKeys":
      x.expect = { _tag: "Keys", request: next.request }
      out.push({ _tag: "Send", to: x.peer, message: next.request })
      return
    default:
      return absurd(next)
  }
}

const onKeysResponse = (
  state: State,
  from: NodeId,
  response: Merkle.KeysResponse,
  view: View,
  out: Array<Command>,
): void => {
  const x = activeFor(state, from, response.rid)
  if (x?.expect._tag !== "Keys") return
  const tree = view.tree(x.range, x.expect.request.shape)
  // The tree went (the ring moved, or it was found out of step and is being rebuilt): give up.
  if (tree === undefined || tree === "Building") return finish(state, "refused")
  const { repairs, pushes } = Merkle.reconcile(tree, view.get, x.expect.request, response)
  for (const r of repairs) out.push({ _tag: "Repair", key: r.key, obj: r.obj })
  if (pushes.length > 0) {
    out.push({
      _tag: "Send",
      to: x.peer,
      message: { _tag: "KeysPush", rid: x.rid, range: x.range, entries: pushes },
    })
  }
  state.stats.keysRepaired += repairs.length
  state.stats.keysPushed += pushes.length
  finish(state, "repaired")
}

// ---------------------------------------------------------------------------------------------
// Responder (stateless: every answer is a function of the request and the local tree)

const refuse = (
  to: NodeId,
  rid: number,
  reason: RefusalReason,
  detail: string,
  out: Array<Command>,
): void => {
  out.push({ _tag: "Send", to, message: { _tag: "ExchangeRefused", rid, reason, detail } })
}

/** What a push names instead of a shape: it applies to the range's tree, whatever its shape. */
const ANY_SHAPE: unique symbol = Symbol("any shape")

/** Why a responder cannot answer from a tree: the refusal it sends. */
interface NoTree {
  readonly reason: RefusalReason
  readonly detail: string
}

/**
 * The local tree a request names, in the shape it names, or why there is none. `shape` is
 * `ANY_SHAPE` for a push (which names none); a request without a shape is a bad one.
 */
const treeFor = (view: View, range: unknown, shape: unknown): Merkle.Tree | NoTree => {
  const r = range as Merkle.Range | undefined
  if (typeof r !== "object" || r === null || !Merkle.validRange(r)) {
    return { reason: "NoTree", detail: "bad range" }
  }
  const s = shape === ANY_SHAPE ? undefined : (shape as Merkle.Shape | undefined)
  if (shape !== ANY_SHAPE && (typeof s !== "object" || s === null || !Merkle.validShape(s))) {
    return { reason: "NoTree", detail: "bad shape" }
  }
  const tree = view.tree(r, s)
  if (tree === "Building") return { reason: "Busy", detail: "the tree is being built" }
  return tree ?? { reason: "NoTree", detail: "no tree for this range" }
}

const isTree = (t: Merkle.Tree | NoTree): t is Merkle.Tree => "levels" in t

const onLevelRequest = (
  from: NodeId,
  request: Merkle.TreeLevelRequest,
  view: View,
  out: Array<Command>,
): void => {
  const tree = treeFor(view, request.range, request.shape)
  if (!isTree(tree)) return refuse(from, request.rid, tree.reason, tree.detail, out)
  const answer = Merkle.answerLevel(tree, request)
  if (answer._tag === "Invalid") return refuse(from, request.rid, "BadRequest", answer.reason, out)
  out.push({ _tag: "Send", to: from, message: answer.message })
}

const onKeysRequest = (
  state: State,
  now: number,
  from: NodeId,
  request: Merkle.KeysRequest,
  view: View,
  out: Array<Command>,
): void => {
  const tree = treeFor(view, request.range, request.shape)
  if (!isTree(tree)) return refuse(from, request.rid, tree.reason, tree.detail, out)
  const answer = Merkle.answerKeys(tree, view.get, request, state.config.maxKeys)
  if (answer._tag === "Invalid") return refuse(from, request.rid, "BadRequest", answer.reason, out)
  // Serve what the budget allows (a partial answer is still a prefix in (bucket, key) order).
  const all = answer.message.entries
  const affordable = Math.min(all.length, Math.floor(Budget.available(state.budget, now)))
  if (all.length > 0 && affordable === 0) {
    return refuse(from, request.rid, "Busy", "anti-entropy budget spent", out)
  }
  state.budget = Budget.take(state.budget, affordable, now).budget
  state.stats.keysServed += affordable
  const entries = affordable === all.length ? all : all.slice(0, affordable)
  out.push({ _tag: "Send", to: from, message: { ...answer.message, entries } })
}

const onKeysPush = (state: State, push: KeysPush, view: View, out: Array<Command>): void => {
  const tree = treeFor(view, push.range, ANY_SHAPE)
  // A push for a range we do not keep, or a malformed one, is dropped; the next exchange
  // redoes the work. One whose tree is being built is taken: the range is ours.
  if ((!isTree(tree) && tree.reason !== "Busy") || !Array.isArray(push.entries)) return
  const range = push.range
  for (const entry of push.entries.slice(0, state.config.maxKeys)) {
    if (typeof entry?.key !== "string" || !isObj(entry.obj)) continue
    if (!Merkle.contains(range, entry.key)) continue
    out.push({ _tag: "Repair", key: entry.key, obj: entry.obj })
    state.stats.keysRepaired++
  }
}

/** Shallow shape check; the wire schema validates fully before a message reaches the machine. */
const isObj = (x: unknown): x is Obj =>
  typeof x === "object" && x !== null && Array.isArray((x as Obj).entries)

// ---------------------------------------------------------------------------------------------
// Dispatch

const onMessage = (
  state: State,
  now: number,
  from: NodeId,
  message: Message,
  view: View,
  out: Array<Command>,
): void => {
  if (typeof message !== "object" || message === null) return
  switch (message._tag) {
    case "TreeLevelRequest":
      return onLevelRequest(from, message, view, out)
    case "TreeLevelResponse":
      return onLevelResponse(state, from, message, view, out)
    case "KeysRequest":
      return onKeysRequest(state, now, from, message, view, out)
    case "KeysResponse":
      return onKeysResponse(state, from, message, view, out)
    case "KeysPush":
      return onKeysPush(state, message, view, out)
    case "ExchangeRefused":
      if (activeFor(state, from, message.rid) !== undefined) finish(state, "refused")
      return
    default: {
      // Exhaustive at compile time; at run time a malformed message lands here and is ignored
      // (AE-6: no input throws), so no absurd().
      const unknown: never = message
      return unknown
    }
  }
}
