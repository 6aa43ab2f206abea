/**
 * The storage node machine: coordinator and replica of Dynamo-style quorum replication
 * (DeCandia et al., SOSP 2007, sections 4.5-4.7), with dotted-version-vector objects
 * (impl/core/version.ts), read repair and a heartbeat liveness view.
 *
 * One door: `step(state, event, store) -> commands`. The machine never touches a clock, a socket,
 * a disk or a random generator: time comes in with every event, the local store is a read-only
 * view, and everything the node wants done leaves as a command. Like etcd-raft's `Step`, it
 * updates its own state in place (the per-message path is hot); a state belongs to one driver.
 *
 * The contract with the driver (impl/sim and impl/node both run it through one executor,
 * impl/core/executor.ts):
 *  - commands are executed in order; every command after a `Persist` waits until that write
 *    is durable, so no acknowledgement ever leaves before the data it acknowledges (KV-1);
 *  - timers are never cancelled: a timer for a finished request is ignored;
 *  - messages may be lost, duplicated, delayed or reordered; the machine tolerates all four.
 *
 * Roles, per request:
 *  - GET: the node that received it coordinates: asks the key's N replicas, answers after R,
 *    keeps listening until all N answered or the deadline, then repairs stale replicas.
 *  - PUT/DEL: a replica coordinates, because only replicas mint version events. A node outside
 *    the preference list forwards to a replica it believes up, and tries the next one only once
 *    its failure detector judges that replica down. A coordinator of a forwarded write mints
 *    only once the forwarder granted it the write, and the forwarder grants each write once
 *    (KV-9): a copy that arrives late (a paused or partitioned replica working through its
 *    backlog) runs nowhere. A plain (context-less) write first reads a quorum to learn the
 *    context it supersedes.
 *
 * Here: the step, client requests (coordination, forwarding, sloppy quorum), the replica side
 * of every peer message, read repair and tombstone purge, hinted handoff, timers. The machine's
 * other parts share one state (node-state.ts: configuration, state, replies) and are stepped
 * from here: node-membership.ts (gossip, rings, operator intents), node-rebalance.ts (streaming
 * on join, leave and remove), node-ae.ts (Merkle anti-entropy) and node-chord.ts (Chord
 * routing in place of the ring). None of them imports this file.
 *
 * Invariants kept: KV-1..KV-9 (spec/invariants.md), and the node-side CHORD-7/8 (spec/chord.md).
 */
import { position } from "./hash.ts"
import * as Hlc from "./hlc.ts"
import type { NodeId } from "./ids.ts"
import {
  type ClientOp,
  type ClientRef,
  type ClientResult,
  type Command,
  type Event,
  type GetOp,
  type KeyOp,
  type PeerMessage,
  type PutOp,
  SCAN_COUNT_MAX,
  type ScanOp,
  type StoreView,
  type TimerKind,
} from "./messages.ts"
import * as AntiEntropy from "./anti-entropy.ts"
import * as Chord from "./chord.ts"
import * as Membership from "./membership.ts"
import * as Phi from "./phi.ts"
import * as Quorum from "./quorum.ts"
import * as Ring from "./ring.ts"
import * as Rng from "./rng.ts"
import * as Version from "./version.ts"
import * as Glob from "./glob.ts"
import {
  believedUp,
  fail,
  failQuorum,
  mergeLocal,
  reconcile,
  respond,
  type Config,
  type GetPending,
  type Origin,
  type Placement,
  type PutPending,
  type ScanPending,
  type State,
  type Target,
} from "./node-state.ts"
import { stepAntiEntropy, trackWrites } from "./node-ae.ts"
import {
  maybeGossip,
  maybeStop,
  onOperator,
  refreshRing,
  stepMembership,
} from "./node-membership.ts"
import { maybeRebalance, onStreamAck, onStreamDone, onStreamPush } from "./node-rebalance.ts"
import { endReapRound, maybeReap, onReap, onReapAnswer, stale, updateCalm } from "./node-reap.ts"
import {
  chordReport,
  chordStep,
  initChord,
  learnPeers,
  lookupThen,
  maybeJoinChord,
} from "./node-chord.ts"

// The machine's public face: its vocabulary lives in node-state.ts, its parts in node-*.ts.
export type { Config, Namespace, Policy, Routing, State, Stats, Target } from "./node-state.ts"
export { believedUp, defaults, peerAddressOf, policyOf } from "./node-state.ts"
export { members } from "./node-membership.ts"
export { chordReport } from "./node-chord.ts"

/**
 * The nodes that receive a key's copies. CP: the N preferred replicas. AP (sloppy quorum,
 * Dynamo section 4.6): each preferred replica believed down is replaced by the next healthy node
 * further clockwise, which holds the copy as a hint for it.
 */
export const targetsOf = (
  state: State,
  key: string,
  now: number,
  placement: Placement = undefined,
): ReadonlyArray<Target> => {
  if (placement !== undefined) return placement.map((node) => ({ node, hintFor: undefined }))
  const n = state.config.n
  const walk = Ring.preferenceList(state.ring, key, state.ring.nodes.length)
  const preferred = walk.slice(0, n)
  if (state.config.mode === "cp") return preferred.map((node) => ({ node, hintFor: undefined }))
  const spares = walk.slice(n).filter((node) => believedUp(state, node, now))
  return preferred.map((node) =>
    believedUp(state, node, now) || spares.length === 0
      ? { node, hintFor: undefined }
      : { node: spares.shift()!, hintFor: node },
  )
}

/**
 * Who a read asks: every preferred replica (believed up or not: belief lags reality, and a
 * replica that answers is the best witness) plus, in AP, the substitutes that may hold hints.
 * `waitFor`: the ones believed up.
 */
const readSet = (state: State, key: string, now: number, placement: Placement) => {
  const targets = targetsOf(state, key, now, placement)
  const preferred = placement ?? Ring.preferenceList(state.ring, key, state.config.n)
  const substitutes = new Set(
    targets.filter((t) => t.hintFor !== undefined).map((t) => t.node),
  ) as ReadonlySet<NodeId>
  const asked = [...preferred, ...substitutes]
  const waitFor = asked.filter((node) => believedUp(state, node, now))
  return { asked, substitutes, waitFor }
}

/** CP mode: can this node see a majority of the cluster (itself included)? */
const seesMajority = (state: State, now: number): boolean => {
  const all = state.peers.length + 1
  const up = 1 + state.peers.filter((p) => believedUp(state, p, now)).length
  return up * 2 > all
}

export const init = (config: Config, now: number): State => {
  if (config.routing === "chord" && config.mode === "cp") {
    throw new Error("CP mode needs ring routing: Chord routing has no membership to count")
  }
  // Chord routing keeps no membership: the bootstrap members play no part.
  const bootMembers = config.routing === "chord" ? [] : config.members
  const known: Array<Membership.Entry> = bootMembers.map((m) => ({
    id: m.id,
    peerAddress: config.addresses.get(m.id) ?? m.id,
    clientAddress: "",
    weight: m.weight,
    status: "up",
    generation: 0,
    version: 0,
    heartbeat: 0,
  }))
  const saved = config.savedMembers ?? []
  const savedSelf = saved.find((e) => e.id === config.self)
  const self = bootMembers.find((m) => m.id === config.self)
  const membership = Membership.init(
    {
      self: {
        id: config.self,
        peerAddress: config.peerAddress || config.self,
        clientAddress: config.clientAddress,
        weight: self?.weight ?? 1,
      },
      seeds: known
        .filter((e) => e.id !== config.self)
        .map((e) => ({ id: e.id, peerAddress: e.peerAddress })),
      generation: config.generation,
      restarted: config.savedMembers !== undefined && config.unsafeReclaim !== "no-stale-store",
      status:
        savedSelf !== undefined && savedSelf.status !== "removed"
          ? savedSelf.status
          : config.joining
            ? "joining"
            : self !== undefined
              ? "up"
              : undefined,
      // Saved entries are newer than the bootstrap ones; merge keeps the newest of each.
      // A saved tombstone of this very node is kept: a removed node stays removed.
      knownMembers: [
        ...known,
        ...saved.filter((e) => e.id !== config.self || e.status === "removed"),
      ],
      randomSeed: position(config.self),
    },
    now,
  )
  const detector = Phi.make({
    minStdDevMs: Math.max(50, config.heartbeatMs / 2),
    firstHeartbeatEstimateMs: config.heartbeatMs,
    maxSampleIntervalMs: config.heartbeatMs * 4,
  })
  const state: State = {
    config,
    ring: Ring.make([], config.tokensPerNode),
    futureRing: Ring.make([], config.tokensPerNode),
    ringSignature: "",
    peers: [],
    membership,
    nextGossipAt: now,
    detector,
    // Request ids must not repeat across restarts: a late answer to a request of the previous
    // incarnation would otherwise count toward a new request's quorum (a read of one key
    // returning another's object, or a write acknowledged by a replica that never saw it).
    nextRid: (config.generation % 2 ** 21) * 2 ** 31 + 1,
    hlc: 0,
    pending: new Map(),
    nextHeartbeatAt: now,
    rebalance: {
      cursor: undefined,
      settled: undefined,
      pushes: new Map(),
      doneFrom: new Set(),
      passes: 0,
      strays: 0,
    },
    ae: AntiEntropy.init(
      {
        self: config.self,
        intervalMs: config.aeIntervalMs,
        exchangeTimeoutMs: config.requestTimeoutMs * 2,
        maxKeys: config.aeMaxKeys,
        ratePerSec: config.aeRatePerSec,
        burst: Math.max(config.aeMaxKeys, config.aeRatePerSec),
      },
      [],
      now,
    ),
    aeTrees: new Map(),
    now,
    stats: {
      gets: 0,
      puts: 0,
      forwarded: 0,
      readRepairs: 0,
      purges: 0,
      hintsStored: 0,
      hintsDelivered: 0,
      streamed: 0,
      dropped: 0,
      aeRepairs: 0,
      failures: 0,
      claimsRefused: 0,
      reaped: 0,
      stale: 0,
    },
    handoffInFlight: new Map(),
    nextHandoffAt: now,
    reap: {
      cursor: undefined,
      nextAt: now,
      candidates: new Map(),
      rounds: 0,
      pass: { keys: 0, dead: 0 },
      last: undefined,
    },
    calmSince: undefined,
    chord: config.routing === "chord" ? initChord(config) : undefined,
  }
  refreshRing(state, now)
  // The placement this node boots with is settled (no streaming until membership changes),
  // unless a change is pending in it: a member joining or leaving waits for a pass of every
  // owner (StreamDone), and this node may be one it has not heard from yet (it crashed during
  // the change). Then a pass runs, pushing only to the owners gained since the current ring.
  state.rebalance.settledRing = state.ring
  const pending = state.ring.nodes.join() !== state.futureRing.nodes.join()
  if (!pending) state.rebalance.settled = state.ringSignature
  // Monitor every peer from boot: one that never heartbeats is suspected in bounded time.
  for (const peer of state.peers) Phi.heartbeat(state.detector, peer, now)
  return state
}

export const step = (
  state: State,
  event: Event,
  store: StoreView,
): readonly [State, ReadonlyArray<Command>] => {
  const out: Array<Command> = []
  state.now = event.now
  switch (event._tag) {
    case "ClientRequested":
      onClientRequested(state, event.now, event.client, event.op, store, out)
      break
    case "MessageReceived":
      onMessage(state, event.now, event.from, event.message, store, out)
      break
    case "OperatorRequested":
      onOperator(state, event.now, event.client, event.op, store, out)
      break
    case "TimerFired":
      onTimer(state, event.now, event.rid, event.kind, store, out)
      break
    case "TickElapsed":
      onTick(state, event.now, store, out)
      break
  }
  if (state.chord !== undefined && state.chord.routed.length > 0) {
    runRouted(state, event.now, store, out)
  }
  // Keep the Merkle trees in step with the writes this step emits.
  trackWrites(state, store, out)
  return [state, out]
}

// ---------------------------------------------------------------------------------------------
// Client requests

/** Chord routing: run the requests whose key's replicas a lookup found (impl/core/node-chord.ts). */
const runRouted = (state: State, now: number, store: StoreView, out: Array<Command>): void => {
  for (const { origin, op, replicas } of state.chord!.routed.splice(0)) {
    const placement = replicas.map((p) => p.id)
    if (op._tag === "Get") startGet(state, now, origin, op, store, out, placement)
    else if (placement.includes(state.config.self)) {
      startPut(state, now, origin, op, placement, store, out, placement)
    } else if (origin._tag === "Client") {
      forward(state, now, origin.client, op, placement, replicas, out)
    }
  }
}

// ---------------------------------------------------------------------------------------------
// SCAN (SCAN-1)

/**
 * This node's answer to a page request: its next live keys after `after` matching `match`, up
 * to `count`, examining at most `examineMax` objects. `upTo` is the last key examined (the
 * node has nothing else up to it) or null when its store is exhausted.
 */
const scanLocal = (
  examineMax: number,
  store: StoreView,
  op: {
    readonly after?: string | undefined
    readonly count: number
    readonly match?: string | undefined
  },
  now: number,
): { keys: Array<string>; upTo: string | null } => {
  const keys: Array<string> = []
  let cursor = op.after
  let examined = 0
  for (;;) {
    const batch = store.scan(cursor, Math.min(256, examineMax - examined))
    for (const [key, obj] of batch) {
      examined++
      cursor = key
      if (Version.readAt(obj, now) === undefined) continue
      if (op.match !== undefined && !Glob.matches(op.match, key)) continue
      keys.push(key)
      if (keys.length >= op.count) return { keys, upTo: key }
    }
    if (batch.length === 0) return { keys, upTo: null }
    if (examined >= examineMax) return { keys, upTo: cursor ?? null }
  }
}

/**
 * A page of a cluster-wide SCAN: every member (joining and leaving ones included) lists its
 * next live keys after the cursor; the page is the first `count` keys of the union that every
 * answer covers. Keys come in byte order and the cursor is the last key returned, so a key
 * present for the whole scan is returned exactly once, whatever joins, leaves or handoffs move
 * it between nodes. Members believed down are not waited for while fewer than N are down:
 * every key keeps a replica among the others.
 */
const startScan = (
  state: State,
  now: number,
  origin: Origin,
  op: ScanOp,
  store: StoreView,
  out: Array<Command>,
): void => {
  if (state.chord !== undefined) {
    return fail(
      state,
      origin,
      "BadRequest",
      "SCAN needs ring routing (Chord nodes keep no member list)",
      out,
    )
  }
  const count = Math.max(1, Math.min(op.count, SCAN_COUNT_MAX))
  const members = [state.config.self, ...state.peers]
  const down = members.filter((m) => m !== state.config.self && !believedUp(state, m, now))
  if (down.length >= state.config.n) {
    return fail(
      state,
      origin,
      "QuorumNotMet",
      `quorum not met: SCAN needs all but at most N-1=${state.config.n - 1} members, ` +
        `${down.length} are down (${down.join(", ")})`,
      out,
    )
  }
  const rid = state.nextRid++
  const asked = members.filter((m) => !down.includes(m))
  const p: ScanPending = { _tag: "Scan", origin, count, asked, answers: new Map() }
  state.pending.set(rid, p)
  out.push({ _tag: "SetTimer", rid, kind: "Deadline", at: now + state.config.requestTimeoutMs })
  const request = { after: op.after, count, match: op.match }
  for (const m of asked) {
    if (m === state.config.self) continue
    const message: PeerMessage = {
      _tag: "ScanRequest",
      rid,
      count,
      ...(op.after === undefined ? {} : { after: op.after }),
      ...(op.match === undefined ? {} : { match: op.match }),
    }
    out.push({ _tag: "Send", to: m, message })
  }
  const local = scanLocal(state.config.scanExamineMax, store, request, now)
  onScanResponse(state, rid, state.config.self, local, out)
}

const onScanResponse = (
  state: State,
  rid: number,
  from: NodeId,
  answer: { readonly keys: ReadonlyArray<string>; readonly upTo: string | null },
  out: Array<Command>,
): void => {
  const p = state.pending.get(rid)
  if (p?._tag !== "Scan" || !p.asked.includes(from) || p.answers.has(from)) return
  p.answers.set(from, answer)
  if (p.answers.size < p.asked.length) return
  state.pending.delete(rid)
  // Every answer covers the keys up to its `upTo`: the page may only hold keys up to the
  // smallest of them (null: that member has nothing more at all).
  let frontier: string | null = null
  for (const a of p.answers.values()) {
    if (a.upTo !== null && (frontier === null || a.upTo < frontier)) frontier = a.upTo
  }
  const union = new Set<string>()
  for (const a of p.answers.values()) {
    for (const k of a.keys) if (frontier === null || k <= frontier) union.add(k)
  }
  const keys = [...union].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)).slice(0, p.count)
  const next = keys.length >= p.count ? keys[keys.length - 1]! : frontier
  respond(state, p.origin, { _tag: "ScanOk", keys, next }, out)
}

/**
 * A node restarted on a saved store serves nothing from it (answers no read, sends no data)
 * until a peer told it what it knows of this node and that was not newer than this run: a
 * store restored from an older copy is found out first (StaleStore) and never spreads.
 */
const serving = (state: State): boolean =>
  state.chord !== undefined || state.peers.length === 0 || Membership.confirmed(state.membership)

const failStarting = (state: State, origin: Origin, out: Array<Command>): void =>
  fail(
    state,
    origin,
    "Unavailable",
    "this node restarted and waits to hear from a peer before it serves its store; retry",
    out,
  )

const validate = (state: State, op: KeyOp): string | undefined => {
  const n = state.config.n
  const q = op._tag === "Get" ? op.r : op.w
  if (q !== undefined && (!Number.isInteger(q) || q < 1 || q > n)) {
    return `${op._tag === "Get" ? "R" : "W"} must be an integer from 1 to N=${n}, got ${q}`
  }
  return undefined
}

const onClientRequested = (
  state: State,
  now: number,
  client: ClientRef,
  op: ClientOp,
  store: StoreView,
  out: Array<Command>,
): void => {
  const origin: Origin = { _tag: "Client", client }
  if (!serving(state)) return failStarting(state, origin, out)
  if (op._tag === "Scan") return startScan(state, now, origin, op, store, out)
  const invalid = validate(state, op)
  if (invalid !== undefined) return fail(state, origin, "BadRequest", invalid, out)
  if (state.pending.size + (state.chord?.parked.size ?? 0) >= state.config.maxPending) {
    return fail(state, origin, "Overloaded", "too many requests in flight; retry later", out)
  }
  if (state.chord !== undefined) return lookupThen(state, now, origin, op, store, out)
  if (op._tag === "Get") return startGet(state, now, origin, op, store, out)
  if (state.config.mode === "cp" && !seesMajority(state, now)) {
    const up = 1 + state.peers.filter((p) => believedUp(state, p, now)).length
    return fail(
      state,
      origin,
      "Unavailable",
      `CP mode: this node sees ${up} of ${state.peers.length + 1} members; ` +
        "writes need a majority (partitioned minority)",
      out,
    )
  }
  const replicas = Ring.preferenceList(state.ring, op.key, state.config.n)
  if (replicas.includes(state.config.self)) {
    return startPut(state, now, origin, op, replicas, store, out)
  }
  forward(state, now, client, op, replicas, undefined, out)
}

/** Hand a write to a replica to coordinate; the ones believed up first, in preference order. */
const forward = (
  state: State,
  now: number,
  client: ClientRef,
  op: PutOp,
  replicas: ReadonlyArray<NodeId>,
  chordReplicas: ReadonlyArray<Chord.Peer> | undefined,
  out: Array<Command>,
): void => {
  const up = replicas.filter((r) => believedUp(state, r, now))
  const candidates = [...up, ...replicas.filter((r) => !up.includes(r))]
  const rid = state.nextRid++
  state.pending.set(rid, {
    _tag: "Forward",
    client,
    op,
    candidates,
    replicas: chordReplicas,
    attempt: 0,
    granted: undefined,
  })
  state.stats.forwarded++
  // Outlast the coordinator's own deadline, so that its clear answer (e.g. a quorum error)
  // arrives before we give up on it, and long enough for the failure detector to judge a silent
  // coordinator down (about 6 s with the defaults) and for the next replica to answer.
  const deadline = now + state.config.forwardDeadlineMs
  out.push({ _tag: "SetTimer", rid, kind: "Deadline", at: deadline })
  sendForward(state, now, rid, out)
}

const sendForward = (state: State, now: number, rid: number, out: Array<Command>): void => {
  const p = state.pending.get(rid)
  if (p?._tag !== "Forward") return
  const to = p.candidates[p.attempt % p.candidates.length]!
  const message: PeerMessage =
    p.replicas === undefined
      ? { _tag: "CoordinateRequest", rid, op: p.op }
      : { _tag: "CoordinateRequest", rid, op: p.op, replicas: p.replicas }
  out.push({ _tag: "Send", to, message })
  out.push({ _tag: "SetTimer", rid, kind: "Forward", at: now + state.config.forwardTimeoutMs })
}

/**
 * A key with fewer known replicas than the quorum asks for (a Chord ring still forming, whose
 * lookup returned a short successor list) fails the request: the quorum is never lowered.
 */
const tooFewReplicas = (
  state: State,
  origin: Origin,
  which: "R" | "W",
  need: number,
  have: number,
  out: Array<Command>,
): boolean => {
  if (have >= need) return false
  fail(
    state,
    origin,
    "QuorumNotMet",
    `quorum not met: ${have} replica(s) known for this key, fewer than ${which}=${need} ` +
      "(the ring is still forming?); retry",
    out,
  )
  return true
}

const startGet = (
  state: State,
  now: number,
  origin: Origin,
  op: GetOp,
  store: StoreView,
  out: Array<Command>,
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
  out.push({ _tag: "SetTimer", rid, kind: "Deadline", at: now + state.config.requestTimeoutMs })
  for (const replica of replicas) {
    if (replica === state.config.self) continue
    const message: PeerMessage = { _tag: "ReadRequest", rid, key: op.key }
    out.push({ _tag: "Send", to: replica, message })
  }
  if (replicas.includes(state.config.self)) {
    const local = localWithHints(store, op.key)
    onReadResponse(state, now, rid, state.config.self, local, store, out)
  }
}

const startPut = (
  state: State,
  now: number,
  origin: Origin,
  op: PutOp,
  replicas: ReadonlyArray<NodeId>,
  store: StoreView,
  out: Array<Command>,
  placement: Placement = undefined,
): void => {
  state.stats.puts++
  const w = op.w ?? state.config.w
  if (tooFewReplicas(state, origin, "W", w, replicas.length, out)) return
  const rid = state.nextRid++
  const local = store.get(op.key) ?? Version.empty
  // The read phase of a plain write asks where copies are (sloppy substitutes included).
  const { asked, substitutes, waitFor } = readSet(state, op.key, now, placement)
  if (!asked.includes(state.config.self)) asked.push(state.config.self)
  const p: PutPending = {
    _tag: "Put",
    origin,
    op,
    replicas: asked,
    substitutes,
    waitFor,
    targets: [],
    w,
    phase: "Reading",
    tally: Quorum.make(Math.min(state.config.r, asked.length - substitutes.size), asked),
    responses: new Map([[state.config.self, local]]),
    written: local,
    existed: false,
    placement,
    readDone: false,
    claim: origin._tag === "Peer" && !state.config.unsafeFailover ? "Waiting" : "Granted",
  }
  p.tally = Quorum.addOk(p.tally, state.config.self)
  state.pending.set(rid, p)
  out.push({ _tag: "SetTimer", rid, kind: "Deadline", at: now + state.config.requestTimeoutMs })
  if (origin._tag === "Peer" && p.claim === "Waiting") {
    // Ask the forwarder for the right to run this write, in parallel with the read phase.
    const claim: PeerMessage = { _tag: "CoordinateClaim", rid: origin.rid, put: rid }
    out.push({ _tag: "Send", to: origin.node, message: claim })
  }
  // A plain write learns the context it supersedes; a conditional or read-modify-write one
  // learns what it is conditioned on. Both read a quorum first.
  const reads =
    op.context === null ||
    op.cond !== undefined ||
    op.keep !== undefined ||
    op.incr !== undefined ||
    op.append === true
  if (reads && !Quorum.enough(p.tally)) {
    for (const replica of asked) {
      if (replica === state.config.self) continue
      const message: PeerMessage = { _tag: "ReadRequest", rid, key: op.key }
      out.push({ _tag: "Send", to: replica, message })
    }
    return
  }
  p.readDone = true
  maybeBeginWrite(state, now, rid, p, store, out)
}

/**
 * A write's event is minted once its read phase is over and, for a forwarded write, once its
 * forwarder granted this coordinator the write (KV-9): a copy of the request that arrives late
 * (a paused or partitioned coordinator working through its backlog, a duplicated message, a
 * failover the forwarder already made) finds the grant gone to another and runs nowhere.
 */
const maybeBeginWrite = (
  state: State,
  now: number,
  rid: number,
  p: PutPending,
  store: StoreView,
  out: Array<Command>,
): void => {
  if (p.phase === "Reading" && p.readDone && p.claim === "Granted") {
    beginWrite(state, now, rid, p, store, out)
  }
}

/**
 * Mint the write's event on the coordinator, persist it, replicate it. The event is minted over
 * the *current* local object (not the one read when the request arrived): another write may
 * have been coordinated here meanwhile, and its dot must be neither reused nor overwritten.
 */
const beginWrite = (
  state: State,
  now: number,
  rid: number,
  p: PutPending,
  store: StoreView,
  out: Array<Command>,
): void => {
  let read = Version.empty
  for (const obj of p.responses.values()) read = Version.sync(read, obj)
  const seen = Version.sync(store.get(p.op.key) ?? Version.empty, read)
  // A plain write supersedes everything its coordinator knows when it mints the event: what its
  // read quorum held and every write coordinated here since. Plain writes through one
  // coordinator therefore never pile up as siblings (a hot key under redis-benchmark would
  // otherwise carry one sibling per write in flight); only writes coordinated on different
  // replicas at the same moment can still be concurrent.
  const clock = p.op.context ?? Version.context(seen)
  // Conditions and read-modify-writes are decided here, over everything this coordinator
  // knows at the moment it mints (EXP-2, COND-1).
  const current = Version.readAt(seen, now)
  // The value a plain GET would read here: for a counter, the join of every live counter
  // sibling, not the resolved sibling's own total.
  p.previous =
    current === undefined
      ? undefined
      : {
          value: Version.readValueAt(seen, now)!,
          ...(current.sibling.exp === undefined ? {} : { exp: current.sibling.exp }),
        }
  if (skips(p.op, seen, current !== undefined)) {
    state.pending.delete(rid)
    const result: ClientResult = p.previous
      ? { _tag: "PutSkipped", previous: p.previous }
      : { _tag: "PutSkipped" }
    return respond(state, p.origin, result, out)
  }
  // Stamp the write above everything it saw, whatever this node's wall clock says (KV-LWW-1).
  for (const d of Version.siblings(seen)) state.hlc = Hlc.observe(state.hlc, d.sibling.ts)
  p.existed = Version.siblings(seen).some(
    (d) => !Version.dead(d.sibling, now) && Version.descends(clock, [[d.actor, d.counter]]),
  )
  let sibling: Version.Sibling
  if (p.op.incr !== undefined) {
    const counted = incremented(state, seen, current, p.op.incr, now)
    if (typeof counted === "string") {
      state.pending.delete(rid)
      return fail(state, p.origin, "BadRequest", counted, out)
    }
    state.hlc = Hlc.tick(state.hlc, now)
    p.total = Version.counterTotal(counted)
    // INCR keeps the key's expiry, as Redis does.
    const exp = current?.sibling.exp
    sibling = {
      value: p.total,
      ts: state.hlc,
      counter: counted,
      ...(exp === undefined ? {} : { exp }),
    }
  } else {
    state.hlc = Hlc.tick(state.hlc, now)
    const value =
      p.op.keep === "value"
        ? p.previous!.value
        : p.op.append === true
          ? (p.previous?.value ?? "") + (p.op.value ?? "")
          : p.op.value
    // KEEPTTL and APPEND keep the live value's expiry, as Redis does.
    const exp = p.op.keep === "ttl" || p.op.append === true ? p.previous?.exp : p.op.exp
    sibling =
      exp === undefined || value === null ? { value, ts: state.hlc } : { value, ts: state.hlc, exp }
  }
  // The dot's counter follows the write's hybrid timestamp whenever it may (RECLAIM-2).
  const minted = Version.update(seen, clock, sibling, state.config.self, sibling.ts)
  p.written = reconcile(state, p.op.key, minted)
  p.phase = "Writing"
  // Pending owners (joining nodes, or the heirs of a leaving one) get every write too, and
  // must acknowledge it on top of W (Cassandra's pending ranges): once they own the key, no
  // acknowledged write may be missing from them.
  const pendingOwners =
    p.placement !== undefined
      ? []
      : Ring.preferenceList(state.futureRing, p.op.key, state.config.n).filter(
          (node) => !Ring.preferenceList(state.ring, p.op.key, state.config.n).includes(node),
        )
  p.targets = [
    ...targetsOf(state, p.op.key, now, p.placement),
    ...pendingOwners.map((node) => ({ node, hintFor: undefined })),
  ]
  const nodes = p.targets.map((t) => t.node)
  if (!nodes.includes(state.config.self)) nodes.push(state.config.self)
  const need = Math.min(p.w + pendingOwners.length, nodes.length)
  p.tally = Quorum.addOk(Quorum.make(need, nodes), state.config.self)
  out.push({ _tag: "Persist", key: p.op.key, obj: p.written })
  for (const t of p.targets) {
    if (t.node === state.config.self) continue
    const message: PeerMessage =
      t.hintFor === undefined
        ? { _tag: "WriteRequest", rid, key: p.op.key, obj: p.written, at: now }
        : { _tag: "HintedWrite", rid, key: p.op.key, obj: p.written, owner: t.hintFor, at: now }
    out.push({ _tag: "Send", to: t.node, message })
  }
  maybeFinishPut(state, rid, p, out)
}

const INT64_MIN = -(2n ** 63n)
const INT64_MAX = 2n ** 63n - 1n

/**
 * The counter an increment writes (CTR-1): the join of every live counter sibling, or a new
 * counter over the live integer value (0 when none), plus `by` on this coordinator's entry. A
 * string that is not an integer (a float, for INCRBYFLOAT) fails with Redis's error.
 */
const incremented = (
  state: State,
  seen: Version.Obj,
  current: Version.Dotted | undefined,
  incr: NonNullable<PutOp["incr"]>,
  now: number,
): Version.Counter | string => {
  let counter: Version.Counter
  if (current?.sibling.counter !== undefined) {
    counter = Version.liveCounterAt(seen, now)!
    if (counter.float && !incr.float) return "value is not an integer or out of range"
  } else {
    const text = current?.sibling.value ?? "0"
    const valid = incr.float
      ? /^\s*[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?\s*$/i.test(text) && Number.isFinite(Number(text))
      : /^-?(0|[1-9]\d*)$/.test(text) && BigInt(text) >= INT64_MIN && BigInt(text) <= INT64_MAX
    if (!valid) {
      return incr.float ? "value is not a valid float" : "value is not an integer or out of range"
    }
    counter = {
      base: incr.float ? String(Number(text)) : text,
      baseTs: current?.sibling.ts ?? 0,
      p: [],
      n: [],
      float: incr.float,
    }
  }
  const next = Version.increment(counter, state.config.self, incr.by, incr.float)
  const total = Version.counterTotal(next)
  if (next.float) {
    if (!Number.isFinite(Number(total))) return "increment would produce NaN or Infinity"
  } else if (BigInt(total) < INT64_MIN || BigInt(total) > INT64_MAX) {
    return "increment or decrement would overflow"
  }
  return next
}

/** A conditional or read-modify-write whose condition does not hold writes nothing. */
const skips = (op: PutOp, seen: Version.Obj, live: boolean): boolean => {
  if (op.keep === "value" && !live) return true
  switch (op.cond) {
    case undefined:
      return false
    case "nx":
      return live
    case "xx":
      return !live
    case "context":
      return !sameClock(Version.context(seen), op.context ?? Version.emptyClock)
  }
}

const sameClock = (a: Version.Clock, b: Version.Clock): boolean =>
  Version.descends(a, b) && Version.descends(b, a)

const maybeFinishPut = (state: State, rid: number, p: PutPending, out: Array<Command>): void => {
  if (p.phase !== "Writing" || !Quorum.enough(p.tally)) return
  state.pending.delete(rid)
  respond(
    state,
    p.origin,
    {
      _tag: "PutOk",
      context: Version.context(p.written),
      dot: [
        state.config.self,
        Version.context(p.written).find(([a]) => a === state.config.self)![1],
      ],
      existed: p.existed,
      ...(p.previous === undefined ? {} : { previous: p.previous }),
      ...(p.total === undefined ? {} : { total: p.total }),
    },
    out,
  )
}

// ---------------------------------------------------------------------------------------------
// Peer messages

const onMessage = (
  state: State,
  now: number,
  from: NodeId,
  message: PeerMessage,
  store: StoreView,
  out: Array<Command>,
): void => {
  if (stale(state, now, from, message)) {
    state.stats.stale++
    return
  }
  switch (message._tag) {
    case "Heartbeat":
      Phi.heartbeat(state.detector, from, now)
      return
    case "AntiEntropy":
      if (!serving(state)) return
      return stepAntiEntropy(
        state,
        { _tag: "MessageReceived", now, from, message: message.message },
        store,
        out,
      )
    case "Gossip":
      return stepMembership(
        state,
        now,
        { _tag: "MessageReceived", now, from, message: message.message },
        out,
      )
    case "StreamPush":
      return onStreamPush(state, from, message, store, out)
    case "StreamAck":
      return onStreamAck(state, now, from, message.key, store, out)
    case "StreamDone":
      return onStreamDone(state, now, from, message.signature, out)
    case "ReadRequest": {
      if (!serving(state)) return
      const obj = localWithHints(store, message.key)
      out.push({ _tag: "Send", to: from, message: { _tag: "ReadResponse", rid: message.rid, obj } })
      return
    }
    case "ReadResponse":
      return onReadResponse(state, now, message.rid, from, message.obj, store, out)
    case "WriteRequest":
    case "Repair": {
      mergeLocal(state, store, message.key, message.obj, out)
      if (message._tag === "WriteRequest") {
        out.push({ _tag: "Send", to: from, message: { _tag: "WriteAck", rid: message.rid } })
      }
      return
    }
    case "HintedWrite": {
      const held = store.hint(message.owner, message.key) ?? Version.empty
      const merged = reconcile(state, message.key, Version.sync(held, message.obj))
      if (!Version.equals(merged, held)) {
        state.stats.hintsStored++
        out.push({ _tag: "PersistHint", owner: message.owner, key: message.key, obj: merged })
      }
      out.push({ _tag: "Send", to: from, message: { _tag: "WriteAck", rid: message.rid } })
      return
    }
    case "Handoff": {
      mergeLocal(state, store, message.key, message.obj, out)
      const ack: PeerMessage = { _tag: "HandoffAck", key: message.key, obj: message.obj }
      out.push({ _tag: "Send", to: from, message: ack })
      return
    }
    case "HandoffAck": {
      state.handoffInFlight.delete(`${from}\u0000${message.key}`)
      state.stats.hintsDelivered++
      out.push({ _tag: "DropHint", owner: from, key: message.key, obj: message.obj })
      return
    }
    case "Purge": {
      const local = store.get(message.key)
      if (local !== undefined && Version.equals(local, message.obj)) {
        out.push({ _tag: "Persist", key: message.key, obj: purged(local) })
      }
      return
    }
    case "Reap":
      return onReap(state, message.key, message.obj, store, out)
    case "WriteAck": {
      const p = state.pending.get(message.rid)
      if (p?._tag !== "Put" || p.phase !== "Writing") return
      p.tally = Quorum.addOk(p.tally, from)
      return maybeFinishPut(state, message.rid, p, out)
    }
    case "Chord":
      if (state.chord === undefined) return
      learnPeers(state.chord, Chord.peersIn(message.message))
      return chordStep(
        state,
        now,
        { _tag: "MessageReceived", now, from, message: message.message },
        store,
        out,
      )
    case "CoordinateRequest": {
      const origin: Origin = { _tag: "Peer", node: from, rid: message.rid }
      if (!serving(state)) return failStarting(state, origin, out)
      if (state.chord !== undefined) {
        if (message.replicas === undefined) {
          return fail(state, origin, "BadRequest", "Chord routing: no replicas named", out)
        }
        learnPeers(state.chord, message.replicas)
        const placement = message.replicas.map((p) => p.id)
        if (!placement.includes(state.config.self)) {
          return fail(state, origin, "Timeout", "forwarded to a node that is not a replica", out)
        }
        return startPut(state, now, origin, message.op, placement, store, out, placement)
      }
      const replicas = Ring.preferenceList(state.ring, message.op.key, state.config.n)
      if (!replicas.includes(state.config.self)) {
        // Our rings disagree (membership changing): refuse rather than mint a stray event.
        return fail(state, origin, "Timeout", "forwarded to a node that is not a replica", out)
      }
      return startPut(state, now, origin, message.op, replicas, store, out)
    }
    case "CoordinateResponse": {
      const p = state.pending.get(message.rid)
      if (p?._tag !== "Forward") return
      // Once granted, only the grantee speaks for the write (another answer is a refused copy).
      if (p.granted !== undefined && p.granted.node !== from) return
      state.pending.delete(message.rid)
      if (message.result._tag === "Failed") state.stats.failures++
      out.push({ _tag: "Reply", client: p.client, result: message.result })
      return
    }
    case "ScanRequest": {
      if (!serving(state)) return
      const answer = scanLocal(state.config.scanExamineMax, store, message, now)
      const reply: PeerMessage = { _tag: "ScanResponse", rid: message.rid, ...answer }
      out.push({ _tag: "Send", to: from, message: reply })
      return
    }
    case "ScanResponse":
      return onScanResponse(state, message.rid, from, message, out)
    case "CoordinateClaim": {
      // Grant a forwarded write to its first claimant only; refuse every other claim, and every
      // claim for a request this node no longer has (answered, timed out, or of an earlier
      // incarnation: request ids never repeat, KV-6).
      const p = state.pending.get(message.rid)
      const granted =
        p?._tag === "Forward" &&
        // Only a replica this write was sent to may run it.
        p.candidates.slice(0, p.attempt + 1).includes(from) &&
        (p.granted === undefined || (p.granted.node === from && p.granted.put === message.put))
      if (granted) p.granted = { node: from, put: message.put }
      else state.stats.claimsRefused++
      const answer: PeerMessage = { _tag: "CoordinateGrant", rid: message.put, granted }
      out.push({ _tag: "Send", to: from, message: answer })
      return
    }
    case "CoordinateGrant": {
      const p = state.pending.get(message.rid)
      if (p?._tag !== "Put" || p.claim !== "Waiting" || p.origin._tag !== "Peer") return
      if (p.origin.node !== from) return
      if (!message.granted) {
        // Another replica runs this write (or the forwarder gave up on it): drop this copy
        // without a word; the forwarder listens to its grantee only.
        state.pending.delete(message.rid)
        return
      }
      p.claim = "Granted"
      return maybeBeginWrite(state, now, message.rid, p, store, out)
    }
  }
}

const onReadResponse = (
  state: State,
  now: number,
  rid: number,
  from: NodeId,
  obj: Version.Obj,
  store: StoreView,
  out: Array<Command>,
): void => {
  const p = state.pending.get(rid)
  if (p === undefined || p._tag === "Forward" || p._tag === "Scan") return
  if (p._tag === "Reap") return onReapAnswer(state, now, rid, p, from, obj, store, out)
  if (p._tag === "Put") {
    if (p.phase !== "Reading" || p.responses.has(from)) return
    p.responses.set(from, obj)
    p.tally = Quorum.addOk(p.tally, from, counts(p.substitutes, from, obj))
    // AP: once everyone asked has answered, write with the best context known rather than
    // refuse (at worst the write becomes a sibling, never a loss). CP: refuse.
    const apDone = state.config.mode === "ap" && p.waitFor.every((n) => p.responses.has(n))
    if (Quorum.enough(p.tally) || apDone) {
      p.readDone = true
      maybeBeginWrite(state, now, rid, p, store, out)
    } else if (Quorum.complete(p.tally)) {
      state.pending.delete(rid)
      failQuorum(state, p.origin, "R", p.tally, out)
    }
    return
  }
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

/** A substitute that holds nothing for the key knows nothing about it: not a quorum member. */
const counts = (substitutes: ReadonlySet<NodeId>, from: NodeId, obj: Version.Obj): boolean =>
  !substitutes.has(from) || obj.entries.length > 0

const mergedOf = (state: State, p: GetPending): Version.Obj => {
  let merged = Version.empty
  for (const obj of p.responses.values()) merged = Version.sync(merged, obj)
  return reconcile(state, p.key, merged)
}

/**
 * Read repair: every replica that answered with less than the merged object gets it. When every
 * replica answered with the same tombstone older than the grace period, purge it (KV-7).
 */
const finishGet = (
  state: State,
  now: number,
  rid: number,
  p: GetPending,
  store: StoreView,
  out: Array<Command>,
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
      out.push({ _tag: "Send", to: node, message })
    }
  }
}

/**
 * Purge a tombstone every replica holds identically and that is older than the grace period.
 * The tombstone value goes; the version vector (at most one entry per coordinating replica)
 * stays, so that a stale copy arriving later is still dominated (no zombie, CAUSAL-3) and a
 * coordinator never mints a dot it minted before (dropping the vector too would reuse dots).
 */
const maybePurge = (
  state: State,
  now: number,
  p: GetPending,
  merged: Version.Obj,
  store: StoreView,
  out: Array<Command>,
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
      out.push({ _tag: "Send", to: node, message: { _tag: "Purge", key: p.key, obj: merged } })
    } else if (Version.equals(store.get(p.key) ?? Version.empty, merged)) {
      // Only if nothing newer landed here since the read began.
      out.push({ _tag: "Persist", key: p.key, obj: purged(merged) })
    }
  }
  return true
}

/** A purged object: the version vector without its (tombstone) values. */
const purged = (obj: Version.Obj): Version.Obj => ({
  entries: obj.entries.map((e) => ({ actor: e.actor, counter: e.counter, values: [] })),
})

// ---------------------------------------------------------------------------------------------
// Timers and ticks

const onTimer = (
  state: State,
  now: number,
  rid: number,
  kind: TimerKind,
  store: StoreView,
  out: Array<Command>,
): void => {
  if (kind === "AntiEntropy") {
    return stepAntiEntropy(state, { _tag: "TimerFired", now, xid: rid }, store, out)
  }
  if (kind === "ChordStabilize" || kind === "ChordRpc") {
    const c = state.chord
    if (c === undefined) return
    const event: Chord.ChordEvent =
      kind === "ChordStabilize"
        ? { _tag: "StabilizeTicked", now, random: Rng.uniform(c.random) }
        : { _tag: "RpcTimedOut", now, rpc: rid }
    return chordStep(state, now, event, store, out)
  }
  const p = state.pending.get(rid)
  if (p === undefined) return
  if (kind === "Forward") {
    if (p._tag !== "Forward") return
    const current = p.candidates[p.attempt % p.candidates.length]!
    // A grantee may run the write however late: nobody else may (KV-9), so wait for it. A
    // replica believed up is waited for too: slow is not dead, and a second copy is wasted work.
    if (p.granted !== undefined || believedUp(state, current, now)) {
      out.push({ _tag: "SetTimer", rid, kind: "Forward", at: now + state.config.forwardTimeoutMs })
      return
    }
    p.attempt++
    if (p.attempt < p.candidates.length) sendForward(state, now, rid, out)
    return
  }
  switch (p._tag) {
    case "Reap":
      // A replica did not answer: no verdict; the next pass asks again.
      return endReapRound(state, rid)
    case "Scan": {
      state.pending.delete(rid)
      const silent = p.asked.filter((m) => !p.answers.has(m))
      return fail(
        state,
        p.origin,
        "QuorumNotMet",
        `quorum not met: SCAN heard from ${p.answers.size} of ${p.asked.length} members ` +
          `(no answer from ${silent.join(", ")})`,
        out,
      )
    }
    case "Forward":
      state.pending.delete(rid)
      state.stats.failures++
      out.push({
        _tag: "Reply",
        client: p.client,
        result: {
          _tag: "Failed",
          reason: "Timeout",
          message:
            `no replica of the key answered within ${state.config.forwardDeadlineMs} ms ` +
            `(tried ${p.candidates.join(", ")})`,
        },
      })
      return
    case "Get":
      if (!p.replied) {
        failQuorum(state, p.origin, "R", p.tally, out)
        p.replied = true
      }
      return finishGet(state, now, rid, p, store, out)
    case "Put":
      state.pending.delete(rid)
      if (p.claim === "Waiting") {
        return fail(
          state,
          p.origin,
          "Timeout",
          "the forwarder never granted this replica the write (it went to another replica)",
          out,
        )
      }
      return failQuorum(state, p.origin, p.phase === "Reading" ? "R" : "W", p.tally, out)
  }
}

const onTick = (state: State, now: number, store: StoreView, out: Array<Command>): void => {
  maybeStop(state, now, out)
  if (state.chord === undefined) {
    const ok = serving(state)
    if (ok) maybeHandoff(state, now, store, out)
    updateCalm(state, now, store)
    maybeGossip(state, now, out)
    if (ok) maybeRebalance(state, now, store, out)
    if (ok) maybeReap(state, now, store, out)
  } else {
    maybeJoinChord(state, now, store, out)
  }
  if (serving(state)) stepAntiEntropy(state, { _tag: "TickElapsed", now }, store, out)
  if (now < state.nextHeartbeatAt) return
  state.nextHeartbeatAt = now + state.config.heartbeatMs
  for (const peer of state.peers) {
    const message: PeerMessage = { _tag: "Heartbeat" }
    out.push({ _tag: "Send", to: peer, message })
  }
}

/**
 * Hinted handoff: every interval, deliver up to `handoffBatch` hints whose owners are believed
 * up. Hints are read from the durable store, so a holder that restarted still delivers them.
 * A hint is dropped only after its owner acknowledged it durably (HandoffAck).
 */
const maybeHandoff = (state: State, now: number, store: StoreView, out: Array<Command>): void => {
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
    out.push({ _tag: "Send", to: h.owner, message })
    sent++
  }
}

/** The local object of a key merged with any hints held for it (a substitute's answer). */
const localWithHints = (store: StoreView, key: string): Version.Obj => {
  let obj = store.get(key) ?? Version.empty
  for (const h of store.hintsFor(key)) obj = Version.sync(obj, h.obj)
  return obj
}

export interface MemberStatus {
  readonly id: NodeId
  readonly status: Membership.Status
  /** Believed up by this node (phi below the threshold). */
  readonly reachable: boolean
  readonly peerAddress: string
  readonly clientAddress: string
  readonly weight: number
  /** Tokens on the current ring (0 when not on it). */
  readonly tokens: number
  /** Fraction of the ring it owns as primary. */
  readonly owned: number
  /** Fraction of the keyspace it holds as one of the N replicas. */
  readonly replicated: number
}

/** The cluster as this node sees it, for `dht status` and DHT.STATUS. */
export const statusReport = (state: State, now: number) => {
  const owned = Ring.ownership(state.ring)
  const replicated = Ring.replicaOwnership(state.ring, state.config.n)
  const tokens = new Map<NodeId, number>()
  for (const o of state.ring.owners) {
    const id = state.ring.nodes[o]!
    tokens.set(id, (tokens.get(id) ?? 0) + 1)
  }
  const members: ReadonlyArray<MemberStatus> = [...Membership.view(state.membership).values()]
    .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
    .map((e) => ({
      id: e.id,
      status: e.status,
      reachable: e.status !== "removed" && believedUp(state, e.id, now),
      peerAddress: e.peerAddress,
      clientAddress: e.clientAddress,
      weight: e.weight,
      tokens: tokens.get(e.id) ?? 0,
      owned: owned.get(e.id) ?? 0,
      replicated: replicated.get(e.id) ?? 0,
    }))
  return {
    self: state.config.self,
    mode: state.config.mode,
    routing: state.config.routing,
    chord: chordReport(state),
    n: state.config.n,
    r: state.config.r,
    w: state.config.w,
    members,
    streaming: {
      ...streamingProgress(state),
      streamed: state.stats.streamed,
      dropped: state.stats.dropped,
    },
    reclaim: reclaimReport(state),
    stats: { ...state.stats },
  }
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

/** Progress of rebalancing, for `dht status`. */
export const streamingProgress = (state: State) => ({
  pass: state.rebalance.passes,
  settled: state.rebalance.settled === state.ringSignature,
  pending: state.rebalance.pushes.size,
  scanning: state.rebalance.cursor !== null,
})
