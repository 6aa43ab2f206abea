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
 * Here: the composition — `init`, the `step` that dispatches every event to the part that owns
 * it, the gate of a restarted node (`serving`), the tick, the status report. The parts share one
 * state (node-state.ts; the settings are node-config.ts's) and none of them imports this file:
 *  - node-placement.ts: who holds a key's copies (replicas, sloppy substitutes, read sets), and
 *    the routing mode: the ring, or Chord routing (node-chord.ts), asked through it alone;
 *  - node-get.ts, node-put.ts: the GET and PUT/DEL coordinators; node-forward.ts: the
 *    forwarder of a write to a replica (KV-9);
 *  - node-replica.ts: the replica side of the request path, hints and hinted handoff;
 *  - node-store.ts: every write to the local store (merges, persists, drops), which keeps the
 *    anti-entropy trees in step as it emits it;
 *  - node-scan.ts: cluster-wide SCAN pages;
 *  - node-membership.ts (gossip, rings, operator intents), node-rebalance.ts (streaming on
 *    join, leave and remove), node-ae.ts (Merkle anti-entropy), node-reap.ts (reclamation of
 *    dead keys) and node-chord.ts (Chord routing in place of the ring).
 *
 * Owns: the node's `State` as a whole (node-state.ts), handing each part its slice.
 *
 * Must not: decide anything a part owns (who replicates a key, which routing mode runs, what a
 * request answers): it only routes each event to its part, in a fixed order.
 *
 * Invariants kept: KV-1..KV-9 (spec/invariants.md), and the node-side CHORD-7/8 (spec/chord.md).
 */
import { BadRequest, Minority, Overloaded, Starting } from "./failure.ts"
import { Out, type Ready } from "./ready.ts"
import { absurd } from "effect/Function"
import * as Membership from "./membership.ts"
import * as Phi from "./phi.ts"
import * as Ring from "./ring.ts"
import type * as Version from "./version.ts"
import type {
  ClientOp,
  ClientRef,
  Event,
  KeyOp,
  PeerMessage,
  StoreView,
  TimerKind,
} from "./messages.ts"
import type { NodeId } from "./ids.ts"
import type { Config } from "./node-config.ts"
import { believedUp, fail, initStats, type Origin, type State } from "./node-state.ts"
import { initAntiEntropy, stepAntiEntropy, tickAntiEntropy } from "./node-ae.ts"
import { endStep } from "./node-store.ts"
import {
  initMembership,
  maybeGossip,
  maybeStop,
  memberStatuses,
  onOperator,
  refreshRing,
  stepMembership,
} from "./node-membership.ts"
import {
  initRebalance,
  maybeRebalance,
  onStreamAck,
  onStreamDone,
  onStreamPush,
  settleBootPlacement,
  streamingProgress,
} from "./node-rebalance.ts"
import {
  endReapRound,
  initReap,
  maybeReap,
  onReapAnswer,
  reclaimReport,
  stale,
  updateCalm,
} from "./node-reap.ts"
import {
  chordReport,
  initRouting,
  keepsMembership,
  lookupsPending,
  onChordMessage,
  onChordOperator,
  onChordTimer,
  preferred,
  route,
  seesMajority,
  takeRouted,
  tickChord,
  type Route,
} from "./node-placement.ts"
import { onScanDeadline, onScanRequest, onScanResponse, startScan } from "./node-scan.ts"
import { startGet, stepGet } from "./node-get.ts"
import { onCoordinateRequest, onGrant, onWriteAck, startPut, stepPut } from "./node-put.ts"
import {
  forward,
  onClaim,
  onCoordinateResponse,
  onForwardDeadline,
  onForwardTimer,
} from "./node-forward.ts"
import { maybeHandoff, onReplicaMessage } from "./node-replica.ts"

// The machine's public face: its vocabulary lives in node-config.ts and node-state.ts, its
// parts in node-*.ts.
export type { Config, Namespace, Policy, Routing } from "./node-config.ts"
export { defaults, policyOf } from "./node-config.ts"
export type { State, Stats, Target } from "./node-state.ts"
export { believedUp } from "./node-state.ts"
export { members, type MemberStatus } from "./node-membership.ts"
export { chordReport, peerAddressOf, targetsOf } from "./node-placement.ts"
export { reclaimReport } from "./node-reap.ts"
export { streamingProgress } from "./node-rebalance.ts"

export const init = (config: Config, now: number): State => {
  const chord = initRouting(config)
  const { membership, generation } = initMembership(config, now)
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
    nextRid: (generation % 2 ** 21) * 2 ** 31 + 1,
    ridGeneration: generation,
    hlc: 0,
    pending: new Map(),
    nextHeartbeatAt: now,
    rebalance: initRebalance(),
    ae: initAntiEntropy(config, now),
    aeTrees: new Map(),
    aeBuild: undefined,
    written: new Map(),
    now,
    stats: initStats(),
    handoffInFlight: new Map(),
    nextHandoffAt: now,
    reap: initReap(now),
    calmSince: undefined,
    chord,
  }
  refreshRing(state, now)
  settleBootPlacement(state)
  // Monitor every peer from boot: one that never heartbeats is suspected in bounded time.
  for (const peer of state.peers) Phi.heartbeat(state.detector, peer, now)
  return state
}

export const step = (state: State, event: Event, store: StoreView): readonly [State, Ready] => {
  const out = new Out()
  state.now = event.now
  switch (event._tag) {
    case "ClientRequested":
      onClientRequested(state, event.now, event.client, event.op, store, out)
      break
    case "MessageReceived":
      onMessage(state, event.now, event.from, event.message, store, out)
      break
    case "OperatorRequested":
      if (keepsMembership(state)) onOperator(state, event.now, event.client, event.op, out)
      else onChordOperator(state, event.now, event.client, event.op, store, out)
      break
    case "TimerFired":
      onTimer(state, event.now, event.rid, event.kind, store, out)
      break
    case "TickElapsed":
      onTick(state, event.now, store, out)
      break
    default:
      absurd(event)
  }
  // Requests whose key's replicas a Chord lookup found in this step run now.
  const routed = takeRouted(state)
  if (routed !== undefined) {
    for (const r of routed) runKeyOp(state, event.now, r.origin, r.op, r.route, store, out)
  }
  // The driver applies this step's writes now (the trees are in step with them already).
  endStep(state)
  return [state, out]
}

// ---------------------------------------------------------------------------------------------
// Client requests

/**
 * A node restarted on a saved store serves nothing from it (answers no read, sends no data)
 * until a peer told it what it knows of this node and that was not newer than this run: a
 * store restored from an older copy is found out first (StaleStore) and never spreads. A node
 * that restarted or joins also serves nothing until its view caught up with a peer's whole
 * view (`Membership.synced`): until then its ring is what it saved before it went down, or the
 * bootstrap members', and a read it coordinated would ask nodes that may have handed the key
 * over and dropped it, or miss the replicas a join made owners while it was down (REBAL-1
 * found both: an acknowledged write read back as nil).
 */
export const serving = (state: State): boolean =>
  !keepsMembership(state) ||
  state.peers.length === 0 ||
  (Membership.confirmed(state.membership) && Membership.synced(state.membership))

const failStarting = (state: State, origin: Origin, out: Out): void =>
  fail(state, origin, new Starting(), out)

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
  out: Out,
): void => {
  const origin: Origin = { _tag: "Client", client }
  if (!serving(state)) return failStarting(state, origin, out)
  if (op._tag === "Scan") return startScan(state, now, origin, op, store, out)
  const invalid = validate(state, op)
  if (invalid !== undefined) return fail(state, origin, new BadRequest({ detail: invalid }), out)
  if (state.pending.size + lookupsPending(state) >= state.config.maxPending) {
    return fail(state, origin, new Overloaded({ limit: state.config.maxPending }), out)
  }
  const r = route(state, now, origin, op, store, out)
  if (r !== undefined) runKeyOp(state, now, origin, op, r, store, out)
}

/**
 * Run a client's key request once its replicas are known: a GET here; a write here if this node
 * is a replica, else forwarded to one (KV-9).
 */
const runKeyOp = (
  state: State,
  now: number,
  origin: Origin,
  op: KeyOp,
  r: Route,
  store: StoreView,
  out: Out,
): void => {
  if (op._tag === "Get") return startGet(state, now, origin, op, store, out, r.placement)
  if (state.config.mode === "cp" && !seesMajority(state, now)) {
    const up = 1 + state.peers.filter((p) => believedUp(state, p, now)).length
    return fail(state, origin, new Minority({ sees: up, members: state.peers.length + 1 }), out)
  }
  const replicas = preferred(state, op.key, r.placement)
  if (replicas.includes(state.config.self)) {
    return startPut(state, now, origin, op, replicas, store, out, r.placement)
  }
  if (origin._tag === "Client") forward(state, now, origin.client, op, replicas, r.peers, out)
}

// ---------------------------------------------------------------------------------------------
// Peer messages, timers, ticks

const onMessage = (
  state: State,
  now: number,
  from: NodeId,
  message: PeerMessage,
  store: StoreView,
  out: Out,
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
    case "ReadRequest":
      if (!serving(state)) return
      return onReplicaMessage(state, from, message, store, out)
    case "WriteRequest":
    case "Repair":
    case "HintedWrite":
    case "Handoff":
    case "HandoffAck":
    case "Purge":
    case "Reap":
      return onReplicaMessage(state, from, message, store, out)
    case "ReadResponse":
      return onReadResponse(state, now, message.rid, from, message.obj, store, out)
    case "WriteAck":
      return onWriteAck(state, now, message.rid, from, store, out)
    case "Chord":
      return onChordMessage(state, now, from, message.message, store, out)
    case "CoordinateRequest": {
      const origin: Origin = { _tag: "Peer", node: from, rid: message.rid }
      if (!serving(state)) return failStarting(state, origin, out)
      return onCoordinateRequest(state, now, origin, message, store, out)
    }
    case "CoordinateResponse":
      return onCoordinateResponse(state, now, from, message, out)
    case "ScanRequest":
      return onScanRequest(state, now, from, message, serving(state), store, out)
    case "ScanResponse":
      return onScanResponse(state, message.rid, from, message, out)
    case "CoordinateClaim":
      return onClaim(state, from, message.rid, message.put, out)
    case "CoordinateGrant":
      return onGrant(state, now, from, message.rid, message.granted, store, out)
    default:
      return absurd(message)
  }
}

const onReadResponse = (
  state: State,
  now: number,
  rid: number,
  from: NodeId,
  obj: Version.Obj,
  store: StoreView,
  out: Out,
): void => {
  const p = state.pending.get(rid)
  if (p === undefined) return
  switch (p._tag) {
    case "Reap":
      return onReapAnswer(state, now, rid, p, from, obj, store, out)
    case "Put":
      return stepPut(state, now, rid, p, { _tag: "Read", from, obj }, store, out)
    case "Get":
      return stepGet(state, now, rid, p, { _tag: "Read", from, obj }, store, out)
    case "Forward":
    case "Scan":
      return // they read nothing: a stray answer whose rid now names another request
    default:
      return absurd(p)
  }
}

const onTimer = (
  state: State,
  now: number,
  rid: number,
  kind: TimerKind,
  store: StoreView,
  out: Out,
): void => {
  if (kind === "AntiEntropy") {
    return stepAntiEntropy(state, { _tag: "TimerFired", now, rid }, store, out)
  }
  if (kind === "ChordStabilize" || kind === "ChordRpc") {
    return onChordTimer(state, now, rid, kind, store, out)
  }
  const p = state.pending.get(rid)
  if (p === undefined) return
  if (kind === "Forward") {
    if (p._tag === "Forward") onForwardTimer(state, now, rid, p, out)
    return
  }
  // A request's deadline.
  switch (p._tag) {
    case "Reap":
      // A replica did not answer: no verdict; the next pass asks again.
      return endReapRound(state, rid)
    case "Scan":
      return onScanDeadline(state, rid, p, out)
    case "Forward":
      return onForwardDeadline(state, rid, p, out)
    case "Get":
      return stepGet(state, now, rid, p, { _tag: "Deadline" }, store, out)
    case "Put":
      return stepPut(state, now, rid, p, { _tag: "Deadline" }, store, out)
    default:
      return absurd(p)
  }
}

const onTick = (state: State, now: number, store: StoreView, out: Out): void => {
  maybeStop(state, now, out)
  if (keepsMembership(state)) {
    const ok = serving(state)
    if (ok) maybeHandoff(state, now, store, out)
    updateCalm(state, now, store)
    maybeGossip(state, now, out)
    if (ok) maybeRebalance(state, now, store, out)
    if (ok) maybeReap(state, now, store, out)
  } else {
    tickChord(state, now, store, out)
  }
  if (serving(state)) tickAntiEntropy(state, now, store, out)
  if (now < state.nextHeartbeatAt) return
  state.nextHeartbeatAt = now + state.config.heartbeatMs
  for (const peer of state.peers) {
    const message: PeerMessage = { _tag: "Heartbeat" }
    out.sendNow({ _tag: "Send", to: peer, message })
  }
}

/** The cluster as this node sees it, for `dht status` and DHT.STATUS. */
export const statusReport = (state: State, now: number) => ({
  self: state.config.self,
  mode: state.config.mode,
  routing: state.config.routing,
  chord: chordReport(state),
  n: state.config.n,
  r: state.config.r,
  w: state.config.w,
  members: memberStatuses(state, now),
  streaming: {
    ...streamingProgress(state),
    streamed: state.stats.streamed,
    dropped: state.stats.dropped,
  },
  reclaim: reclaimReport(state),
  stats: { ...state.stats },
})
