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
 * it, the gate of a restarted node (`serving`), timers and ticks, the status report. The parts
 * share one state (node-state.ts: configuration, state, replies, mergeLocal) and none of them
 * imports this file:
 *  - node-placement.ts: who holds a key's copies (replicas, sloppy substitutes, read sets);
 *  - node-get.ts, node-put.ts: the GET and PUT/DEL coordinators (and the forwarder, KV-9);
 *  - node-replica.ts: the replica side of the request path, hints and hinted handoff;
 *  - node-scan.ts: cluster-wide SCAN pages;
 *  - node-membership.ts (gossip, rings, operator intents), node-rebalance.ts (streaming on
 *    join, leave and remove), node-ae.ts (Merkle anti-entropy), node-reap.ts (reclamation of
 *    dead keys) and node-chord.ts (Chord routing in place of the ring).
 *
 * Invariants kept: KV-1..KV-9 (spec/invariants.md), and the node-side CHORD-7/8 (spec/chord.md).
 */
import * as AntiEntropy from "./anti-entropy.ts"
import * as Chord from "./chord.ts"
import * as Membership from "./membership.ts"
import * as Phi from "./phi.ts"
import * as Quorum from "./quorum.ts"
import * as Ring from "./ring.ts"
import * as Rng from "./rng.ts"
import type * as Version from "./version.ts"
import type {
  ClientOp,
  ClientRef,
  Command,
  Event,
  KeyOp,
  PeerMessage,
  StoreView,
  TimerKind,
} from "./messages.ts"
import { position } from "./hash.ts"
import type { NodeId } from "./ids.ts"
import { believedUp, fail, failQuorum, type Config, type Origin, type State } from "./node-state.ts"
import { stepAntiEntropy, trackWrites } from "./node-ae.ts"
import {
  maybeGossip,
  maybeStop,
  onOperator,
  refreshRing,
  stepMembership,
} from "./node-membership.ts"
import { maybeRebalance, onStreamAck, onStreamDone, onStreamPush } from "./node-rebalance.ts"
import { endReapRound, maybeReap, onReapAnswer, stale, updateCalm } from "./node-reap.ts"
import {
  chordReport,
  chordStep,
  initChord,
  learnPeers,
  lookupThen,
  maybeJoinChord,
} from "./node-chord.ts"
import { seesMajority } from "./node-placement.ts"
import { onScanResponse, scanLocal, startScan } from "./node-scan.ts"
import { finishGet, onGetRead, startGet } from "./node-get.ts"
import {
  forward,
  maybeFinishPut,
  onClaim,
  onGrant,
  onPutRead,
  sendForward,
  startPut,
} from "./node-put.ts"
import { maybeHandoff, onReplicaMessage } from "./node-replica.ts"

// The machine's public face: its vocabulary lives in node-state.ts, its parts in node-*.ts.
export type { Config, Namespace, Policy, Routing, State, Stats, Target } from "./node-state.ts"
export { believedUp, defaults, peerAddressOf, policyOf } from "./node-state.ts"
export { members } from "./node-membership.ts"
export { chordReport } from "./node-chord.ts"
export { targetsOf } from "./node-placement.ts"

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
  // This run's incarnation is above every one its own saved entry names: that entry may carry a
  // generation adopted from peers after the data directory was emptied (the store's counter
  // started again at 1), and a generation at or below it would look like a restored copy
  // (StaleStore) and reuse request ids (KV-6).
  const generation = Math.max(config.generation, (savedSelf?.generation ?? 0) + 1)
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
      generation,
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
    nextRid: (generation % 2 ** 21) * 2 ** 31 + 1,
    ridGeneration: generation,
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
 * A node restarted on a saved store serves nothing from it (answers no read, sends no data)
 * until a peer told it what it knows of this node and that was not newer than this run: a
 * store restored from an older copy is found out first (StaleStore) and never spreads. A node
 * joining the cluster serves nothing until some peer's gossip reached it: until then its ring
 * is the bootstrap members', and a read it coordinated would ask nodes that may have handed
 * the key over and dropped it (REBAL-1 found an acknowledged write read back as nil).
 */
const serving = (state: State): boolean =>
  state.chord !== undefined ||
  state.peers.length === 0 ||
  (Membership.confirmed(state.membership) &&
    (!state.config.joining || Membership.heard(state.membership)))

const failStarting = (state: State, origin: Origin, out: Array<Command>): void =>
  fail(
    state,
    origin,
    "Unavailable",
    "this node is starting and waits to hear from a peer before it serves; retry",
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
          return fail(state, origin, "NotReplica", "forwarded to a node that is not a replica", out)
        }
        return startPut(state, now, origin, message.op, placement, store, out, placement)
      }
      const replicas = Ring.preferenceList(state.ring, message.op.key, state.config.n)
      if (!replicas.includes(state.config.self)) {
        // Our rings disagree (membership changing): refuse rather than mint a stray event.
        return fail(state, origin, "NotReplica", "forwarded to a node that is not a replica", out)
      }
      return startPut(state, now, origin, message.op, replicas, store, out)
    }
    case "CoordinateResponse": {
      const p = state.pending.get(message.rid)
      if (p?._tag !== "Forward") return
      // Once granted, only the grantee speaks for the write (another answer is a refused copy).
      if (p.granted !== undefined && p.granted.node !== from) return
      // Refused before anything was done (it is no replica in its view) and nobody holds the
      // grant: the next replica may run the write (KV-9 holds: no copy can run elsewhere).
      if (
        message.result._tag === "Failed" &&
        message.result.reason === "NotReplica" &&
        p.granted === undefined &&
        p.attempt + 1 < p.candidates.length
      ) {
        p.attempt++
        return sendForward(state, now, message.rid, out)
      }
      state.pending.delete(message.rid)
      if (message.result._tag === "Failed") state.stats.failures++
      out.push({ _tag: "Reply", client: p.client, result: message.result })
      return
    }
    case "ScanRequest": {
      if (!serving(state)) {
        // Nothing to list yet: what a starting node holds, its replicas hold too (a SCAN
        // tolerates N-1 members with nothing to say, as it tolerates N-1 down).
        const empty: PeerMessage = { _tag: "ScanResponse", rid: message.rid, keys: [], upTo: null }
        out.push({ _tag: "Send", to: from, message: empty })
        return
      }
      const answer = scanLocal(state.config.scanExamineMax, store, message, now)
      const reply: PeerMessage = { _tag: "ScanResponse", rid: message.rid, ...answer }
      out.push({ _tag: "Send", to: from, message: reply })
      return
    }
    case "ScanResponse":
      return onScanResponse(state, message.rid, from, message, out)
    case "CoordinateClaim":
      return onClaim(state, from, message.rid, message.put, out)
    case "CoordinateGrant":
      return onGrant(state, now, from, message.rid, message.granted, store, out)
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
  if (p === undefined) return
  switch (p._tag) {
    case "Reap":
      return onReapAnswer(state, now, rid, p, from, obj, store, out)
    case "Put":
      return onPutRead(state, now, rid, p, from, obj, store, out)
    case "Get":
      return onGetRead(state, now, rid, p, from, obj, store, out)
  }
}

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
