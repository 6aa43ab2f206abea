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
 * The contract with the driver (impl/sim and impl/node obey it):
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
 *    its failure detector judges that replica down (a slow replica is waited for: a duplicate
 *    of a plain write would supersede writes acknowledged after it). A plain (context-less) write first
 *    reads a quorum to learn the context it supersedes.
 *
 * Deliberately not here (later layers): gossip membership and failure detection beyond
 * heartbeats, sloppy quorum and hinted handoff, anti-entropy, tombstone purge.
 *
 * Invariants kept: KV-1..KV-5 (spec/invariants.md).
 */
import { position } from "./hash.ts"
import * as Hlc from "./hlc.ts"
import type { NodeId } from "./ids.ts"
import type {
  ClientOp,
  ClientRef,
  ClientResult,
  Command,
  Event,
  FailureReason,
  GetOp,
  OperatorOp,
  PeerMessage,
  PutOp,
  StoreView,
  TimerKind,
} from "./messages.ts"
import * as AntiEntropy from "./anti-entropy.ts"
import * as Chord from "./chord.ts"
import * as Membership from "./membership.ts"
import * as Merkle from "./merkle.ts"
import * as Phi from "./phi.ts"
import * as Quorum from "./quorum.ts"
import * as Ring from "./ring.ts"
import * as Rng from "./rng.ts"
import * as Version from "./version.ts"

export interface Config {
  readonly self: NodeId
  /**
   * The cluster this node starts in (bootstrap members, all "up"), this node included unless it
   * is `joining`. Membership then changes by gossip (impl/core/membership.ts).
   */
  readonly members: ReadonlyArray<Ring.Member>
  /** Start as a joining member: stream data in, then become "up". */
  readonly joining: boolean
  /**
   * The membership view this node saved before it stopped (a driver persists it): restarting
   * with it, a node keeps what it knew (members that joined later, removals, its own status)
   * instead of falling back to the bootstrap members.
   */
  readonly savedMembers?: ReadonlyArray<Membership.Entry> | undefined
  /** Incarnation of this process: strictly larger on every restart (a driver persists it). */
  readonly generation: number
  /** Peer and client addresses of this node, as gossip advertises them. */
  readonly peerAddress: string
  readonly clientAddress: string
  /** How to reach the bootstrap members (id -> peer address); ids alone in the simulator. */
  readonly addresses: ReadonlyMap<NodeId, string>
  readonly gossipIntervalMs: number
  readonly tokensPerNode: number
  readonly n: number
  readonly r: number
  readonly w: number
  /** A request that has not met its quorum by then fails with a quorum error. */
  readonly requestTimeoutMs: number
  /**
   * A forwarded write whose coordinator is silent this long is sent to the next replica — if the
   * failure detector now believes the silent one down; otherwise it keeps waiting.
   */
  readonly forwardTimeoutMs: number
  /** A forwarded write with no answer by then fails (it may still take effect). */
  readonly forwardDeadlineMs: number
  /** Direct heartbeats to every member, the evidence of the routing failure detector. */
  readonly heartbeatMs: number
  /** Phi-accrual threshold: above it a peer is believed down (routed around, never removed). */
  readonly phiThreshold: number
  /** Bound on requests in flight at this node; past it requests fail with Overloaded. */
  readonly maxPending: number
  /**
   * Conflict policy per key prefix (longest prefix wins; default "siblings"). "lww" keeps only
   * the sibling with the latest hybrid timestamp: concurrent writes are lost by design.
   */
  readonly namespaces: ReadonlyArray<Namespace>
  /**
   * A tombstone is purged only when every replica was seen holding it and its timestamp is
   * older than this (hybrid-clock milliseconds). Must exceed the hint window (hinted handoff).
   */
  readonly tombstoneGraceMs: number
  /**
   * "ap" (default): sloppy quorum — a write whose preferred replica is down goes to the next
   * healthy node with a hint. "cp": strict quorums only, and a node that cannot see a majority
   * of the cluster refuses writes.
   */
  readonly mode: "ap" | "cp"
  /** Hinted handoff budget: at most this many hints delivered per interval. */
  readonly handoffBatch: number
  readonly handoffIntervalMs: number
  /** Streaming budget (join, leave, remove): keys pushed per interval. */
  readonly streamBatch: number
  readonly streamIntervalMs: number
  /** Anti-entropy: one Merkle exchange per interval, at most `aeMaxKeys` keys, `aeRatePerSec`. */
  readonly aeIntervalMs: number
  readonly aeMaxKeys: number
  readonly aeRatePerSec: number
  /**
   * "ring" (default): one-hop routing on the gossiped membership. "chord": the node keeps only
   * its Chord state (impl/core/chord.ts: successor list, predecessor, fingers) and no membership;
   * a request first looks up its key's successor in O(log N) hops, and the key's N replicas are
   * the first N nodes of the owner's successor list. See "Chord routing" below.
   */
  readonly routing: Routing
  /** Chord routing: the Chord machine's settings. */
  readonly chord: Chord.ChordConfig
  /** Chord routing: members to join through, tried in turn until one answers. */
  readonly chordSeeds: ReadonlyArray<Chord.Peer>
  /**
   * Chord routing: this node may create the ring. It still tries each seed once first and
   * creates a ring only if none answers, so that a restarted creator rejoins the ring it made
   * instead of starting a second one.
   */
  readonly chordCreate: boolean
}

export type Routing = "ring" | "chord"

export type Policy = "siblings" | "lww"

export interface Namespace {
  readonly prefix: string
  readonly policy: Policy
}

export const defaults = {
  tokensPerNode: Ring.DEFAULT_TOKENS_PER_NODE,
  n: 3,
  r: 2,
  w: 2,
  requestTimeoutMs: 2000,
  forwardTimeoutMs: 500,
  forwardDeadlineMs: 10_000,
  heartbeatMs: 250,
  phiThreshold: Phi.DEFAULT_THRESHOLD,
  joining: false,
  generation: 1,
  peerAddress: "",
  clientAddress: "",
  addresses: new Map() as ReadonlyMap<NodeId, string>,
  gossipIntervalMs: 500,
  streamBatch: 256,
  streamIntervalMs: 100,
  aeIntervalMs: 1000,
  aeMaxKeys: 256,
  aeRatePerSec: 1024,
  maxPending: 100_000,
  namespaces: [] as ReadonlyArray<Namespace>,
  tombstoneGraceMs: 600_000,
  mode: "ap" as "ap" | "cp",
  handoffBatch: 64,
  handoffIntervalMs: 1000,
  routing: "ring" as Routing,
  /**
   * Chord on real nodes: the successor list outlasts N replicas, stabilization runs every
   * second (the paper's 30 s suits its simulations, not a cluster that should heal in seconds),
   * and a lookup gives up after a few timeouts so that the client hears back in bounded time.
   */
  chord: {
    ...Chord.defaultConfig,
    successorListLength: 8,
    stabilizeIntervalMs: 1000,
    rpcTimeoutMs: 500,
    lookupTimeoutsMax: 4,
    pendingLookupsMax: 4096,
    suspectTtlMs: 10_000,
    // A lost message is not a death: three silent RPCs in a row are (the transport does not
    // retransmit, and a sibling's stabilize may race a restart).
    timeoutsBeforeDead: 3,
  } as Chord.ChordConfig,
  chordSeeds: [] as ReadonlyArray<Chord.Peer>,
  chordCreate: false,
}

type Origin =
  | { readonly _tag: "Client"; readonly client: ClientRef }
  | { readonly _tag: "Peer"; readonly node: NodeId; readonly rid: number }

interface GetPending {
  readonly _tag: "Get"
  readonly origin: Origin
  readonly key: string
  tally: Quorum.Tally
  readonly responses: Map<NodeId, Version.Obj>
  replied: boolean
  /** Sloppy substitutes asked: they answer from their hints and are never read-repaired. */
  readonly substitutes: ReadonlySet<NodeId>
}

/**
 * Where a request's copies live when the node has no ring to compute it from (Chord routing):
 * the key's N replicas, as a lookup found them. Undefined: the ring decides.
 */
type Placement = ReadonlyArray<NodeId> | undefined

interface PutPending {
  readonly _tag: "Put"
  readonly origin: Origin
  readonly op: PutOp
  /** The preferred replicas (the read phase asks them). */
  readonly replicas: ReadonlyArray<NodeId>
  /** Where the copies go (sloppy substitutes included), fixed when the write phase begins. */
  targets: ReadonlyArray<Target>
  readonly w: number
  /** Reading: learning the context a plain write supersedes. Writing: waiting for W acks. */
  phase: "Reading" | "Writing"
  tally: Quorum.Tally
  readonly responses: Map<NodeId, Version.Obj>
  /** Sloppy substitutes asked in the read phase (an empty answer from one does not count). */
  readonly substitutes: ReadonlySet<NodeId>
  /** AP: the nodes believed up when the read phase began; once all answered, write anyway. */
  readonly waitFor: ReadonlyArray<NodeId>
  written: Version.Obj
  /** The write superseded a live value (for DEL's count). */
  existed: boolean
  readonly placement: Placement
}

interface ForwardPending {
  readonly _tag: "Forward"
  readonly client: ClientRef
  readonly op: PutOp
  readonly candidates: ReadonlyArray<NodeId>
  /** Chord routing: the key's replicas as the lookup found them (the coordinator needs them). */
  readonly replicas: ReadonlyArray<Chord.Peer> | undefined
  attempt: number
}

type Pending = GetPending | PutPending | ForwardPending

export interface Stats {
  gets: number
  puts: number
  forwarded: number
  readRepairs: number
  purges: number
  hintsStored: number
  hintsDelivered: number
  /** Keys pushed to a new owner by rebalancing, and keys dropped after hand-over. */
  streamed: number
  dropped: number
  /** Keys repaired by anti-entropy. */
  aeRepairs: number
  failures: number
}

export interface State {
  readonly config: Config
  /** Current owners: members "up" or "leaving". Reads and coordination use it. */
  ring: Ring.Ring
  /** Owners once pending changes settle: "up" and "joining". Writes also go here. */
  futureRing: Ring.Ring
  /** Signature of (ring, futureRing), to notice membership changes. */
  ringSignature: string
  /** Every other member (any status but removed): heartbeat and majority accounting. */
  peers: ReadonlyArray<NodeId>
  readonly membership: Membership.State
  nextGossipAt: number
  /** When this node learnt it was removed (it shuts down a few gossip rounds later). */
  removedAt?: number
  /** Routing failure detector, fed by direct heartbeats. */
  readonly detector: Phi.State
  nextRid: number
  /** Last hybrid logical timestamp issued or seen. */
  hlc: number
  readonly pending: Map<number, Pending>
  nextHeartbeatAt: number
  readonly rebalance: Rebalance
  /** Anti-entropy with every replica peer (Merkle exchanges, impl/core/anti-entropy.ts). */
  readonly ae: AntiEntropy.State
  /** Bumped on every store write this node emits; cached trees older than it are rebuilt. */
  storeVersion: number
  readonly aeTrees: Map<
    string,
    { readonly tree: Merkle.Tree; readonly version: number; readonly builtAt: number }
  >
  /** Time of the event being stepped (trees are rebuilt at most every few seconds). */
  now: number
  readonly stats: Stats
  /** Hints sent to their owners and not yet acknowledged: "owner\0key" -> time sent. */
  readonly handoffInFlight: Map<string, number>
  nextHandoffAt: number
  /** Chord routing only: the node's Chord state and what drives it. */
  readonly chord: ChordRouting | undefined
}

export interface ChordRouting {
  ring: Chord.ChordState
  /** Where the peers Chord told us about listen (ids only in the simulator). */
  readonly addresses: Map<NodeId, string>
  /** Client requests waiting for the lookup of their key, by lookup request id. */
  readonly parked: Map<number, { readonly origin: Origin; readonly op: ClientOp }>
  readonly random: Rng.Rng
  /** The first StabilizeTicked was delivered (every tick then schedules the next). */
  started: boolean
  /** When to try to join again (while Idle), and which seed next. */
  nextJoinAt: number
  nextSeed: number
  /** Signature of (predecessor, successors): heartbeats and anti-entropy follow it. */
  neighbourhood: string
  /**
   * The placement sweep: keys written while the ring was changing may sit on nodes that are
   * not (or no longer) their replicas, where anti-entropy among replicas never looks. Each
   * node walks its keys outside its own arc, looks each up, and hands the ones it does not
   * replicate to their replicas (dropping them once all acknowledged, unless it coordinated
   * them). `cursor`: the last key visited; `checking`: sweep lookups in flight, by request id.
   */
  sweepCursor: string | undefined
  nextSweepAt: number
  readonly checking: Map<number, { readonly key: string; readonly obj: Version.Obj }>
  readonly stats: { lookups: number; lookupFailures: number; hops: number; maxHops: number }
}

/** Where one copy of a key goes: a preferred replica, or a substitute holding a hint for one. */
export interface Target {
  readonly node: NodeId
  readonly hintFor: NodeId | undefined
}

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
    storeVersion: 0,
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
    },
    handoffInFlight: new Map(),
    nextHandoffAt: now,
    chord: config.routing === "chord" ? initChord(config) : undefined,
  }
  refreshRing(state, now)
  // The placement this node boots with is settled: no streaming until membership changes.
  state.rebalance.settled = state.ringSignature
  // Monitor every peer from boot: one that never heartbeats is suspected in bounded time.
  for (const peer of state.peers) Phi.heartbeat(state.detector, peer, now)
  return state
}

/** The conflict policy of a key: its longest matching namespace prefix, else "siblings". */
export const policyOf = (config: Config, key: string): Policy => {
  let best: Namespace | undefined
  for (const ns of config.namespaces) {
    if (
      key.startsWith(ns.prefix) &&
      (best === undefined || ns.prefix.length > best.prefix.length)
    ) {
      best = ns
    }
  }
  return best?.policy ?? "siblings"
}

/** Apply the key's policy to an object: lww keeps the latest sibling only. */
const reconcile = (state: State, key: string, obj: Version.Obj): Version.Obj =>
  policyOf(state.config, key) === "lww" ? Version.pruneLww(obj) : obj

/** Is `node` believed up at `now`? Self always is. */
export const believedUp = (state: State, node: NodeId, now: number): boolean =>
  node === state.config.self ||
  Phi.isAvailable(state.detector, node, now, state.config.phiThreshold)

export const step = (
  state: State,
  event: Event,
  store: StoreView,
): readonly [State, ReadonlyArray<Command>] => {
  const out: Array<Command> = []
  const stepped = out
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
  // Cached Merkle trees describe the store as it was: any write this step emits outdates them.
  if (stepped.some((c) => c._tag === "Persist" || c._tag === "Drop")) state.storeVersion++
  return [state, out]
}

// ---------------------------------------------------------------------------------------------
// Client requests

const validate = (state: State, op: ClientOp): string | undefined => {
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
  })
  state.stats.forwarded++
  // Outlast the coordinator's own deadline, so that its clear answer (e.g. a quorum error)
  // arrives before we give up on it.
  // Long enough for the failure detector to judge a silent coordinator down (about 6 s with
  // the defaults) and for the next replica to answer.
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
  const rid = state.nextRid++
  const need = Math.min(op.r ?? state.config.r, replicas.length - substitutes.size)
  const p: GetPending = {
    _tag: "Get",
    origin,
    key: op.key,
    tally: Quorum.make(need, replicas),
    responses: new Map(),
    replied: false,
    substitutes,
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
  const rid = state.nextRid++
  const w = Math.min(op.w ?? state.config.w, replicas.length)
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
  }
  p.tally = Quorum.addOk(p.tally, state.config.self)
  state.pending.set(rid, p)
  out.push({ _tag: "SetTimer", rid, kind: "Deadline", at: now + state.config.requestTimeoutMs })
  if (op.context === null && !Quorum.enough(p.tally)) {
    for (const replica of asked) {
      if (replica === state.config.self) continue
      const message: PeerMessage = { _tag: "ReadRequest", rid, key: op.key }
      out.push({ _tag: "Send", to: replica, message })
    }
    return
  }
  beginWrite(state, now, rid, p, store, out)
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
  // Stamp the write above everything it saw, whatever this node's wall clock says (KV-LWW-1).
  for (const d of Version.siblings(seen)) state.hlc = Hlc.observe(state.hlc, d.sibling.ts)
  p.existed = Version.siblings(seen).some(
    (d) => d.sibling.value !== null && Version.descends(clock, [[d.actor, d.counter]]),
  )
  state.hlc = Hlc.tick(state.hlc, now)
  const sibling: Version.Sibling = { value: p.op.value, ts: state.hlc }
  p.written = reconcile(state, p.op.key, Version.update(seen, clock, sibling, state.config.self))
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
        ? { _tag: "WriteRequest", rid, key: p.op.key, obj: p.written }
        : { _tag: "HintedWrite", rid, key: p.op.key, obj: p.written, owner: t.hintFor }
    out.push({ _tag: "Send", to: t.node, message })
  }
  maybeFinishPut(state, rid, p, out)
}

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
  switch (message._tag) {
    case "Heartbeat":
      Phi.heartbeat(state.detector, from, now)
      return
    case "AntiEntropy":
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
      const obj = localWithHints(store, message.key)
      out.push({ _tag: "Send", to: from, message: { _tag: "ReadResponse", rid: message.rid, obj } })
      return
    }
    case "ReadResponse":
      return onReadResponse(state, now, message.rid, from, message.obj, store, out)
    case "WriteRequest":
    case "Repair": {
      const local = store.get(message.key) ?? Version.empty
      const merged = reconcile(state, message.key, Version.sync(local, message.obj))
      for (const d of Version.siblings(message.obj))
        state.hlc = Hlc.observe(state.hlc, d.sibling.ts)
      if (!Version.equals(merged, local)) {
        out.push({ _tag: "Persist", key: message.key, obj: merged })
      }
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
      const local = store.get(message.key) ?? Version.empty
      const merged = reconcile(state, message.key, Version.sync(local, message.obj))
      if (!Version.equals(merged, local)) {
        out.push({ _tag: "Persist", key: message.key, obj: merged })
      }
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
      state.pending.delete(message.rid)
      if (message.result._tag === "Failed") state.stats.failures++
      out.push({ _tag: "Reply", client: p.client, result: message.result })
      return
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
  if (p === undefined || p._tag === "Forward") return
  if (p._tag === "Put") {
    if (p.phase !== "Reading" || p.responses.has(from)) return
    p.responses.set(from, obj)
    p.tally = Quorum.addOk(p.tally, from, counts(p.substitutes, from, obj))
    // AP: once everyone asked has answered, write with the best context known rather than
    // refuse (at worst the write becomes a sibling, never a loss). CP: refuse.
    const apDone = state.config.mode === "ap" && p.waitFor.every((n) => p.responses.has(n))
    if (Quorum.enough(p.tally) || apDone) beginWrite(state, now, rid, p, store, out)
    else if (Quorum.complete(p.tally)) {
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
      const local = store.get(p.key) ?? Version.empty
      const repaired = reconcile(state, p.key, Version.sync(local, merged))
      if (!Version.equals(repaired, local)) out.push({ _tag: "Persist", key: p.key, obj: repaired })
    } else {
      out.push({ _tag: "Send", to: node, message: { _tag: "Repair", key: p.key, obj: merged } })
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
  if (!Version.isDeleted(merged) || p.substitutes.size > 0) return false
  for (const obj of p.responses.values()) if (!Version.equals(obj, merged)) return false
  const newest = Math.max(...Version.siblings(merged).map((d) => d.sibling.ts))
  if (Hlc.wallMs(newest) + state.config.tombstoneGraceMs > now) return false
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
    if (believedUp(state, current, now)) {
      // Slow is not dead: sending the write to another replica too would run it twice, and a
      // late duplicate of a plain write would supersede writes acknowledged after it.
      out.push({ _tag: "SetTimer", rid, kind: "Forward", at: now + state.config.forwardTimeoutMs })
      return
    }
    p.attempt++
    if (p.attempt < p.candidates.length) sendForward(state, now, rid, out)
    return
  }
  switch (p._tag) {
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
      return failQuorum(state, p.origin, p.phase === "Reading" ? "R" : "W", p.tally, out)
  }
}

const onTick = (state: State, now: number, store: StoreView, out: Array<Command>): void => {
  maybeStop(state, now, out)
  if (state.chord === undefined) {
    maybeHandoff(state, now, store, out)
    maybeGossip(state, now, out)
    maybeRebalance(state, now, store, out)
  } else {
    maybeJoinChord(state, now, store, out)
  }
  stepAntiEntropy(state, { _tag: "TickElapsed", now }, store, out)
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
    out.push({ _tag: "Send", to: h.owner, message: { _tag: "Handoff", key: h.key, obj: h.obj } })
    sent++
  }
}

/** The local object of a key merged with any hints held for it (a substitute's answer). */
const localWithHints = (store: StoreView, key: string): Version.Obj => {
  let obj = store.get(key) ?? Version.empty
  for (const h of store.hintsFor(key)) obj = Version.sync(obj, h.obj)
  return obj
}

// ---------------------------------------------------------------------------------------------
// Membership (impl/core/membership.ts): gossip, operator intents, the rings they imply

const ringSignatureOf = (ring: ReadonlyArray<Ring.Member>, future: ReadonlyArray<Ring.Member>) =>
  `${ring.map((m) => `${m.id}*${m.weight}`).join(",")}|${future.map((m) => `${m.id}*${m.weight}`).join(",")}`

/** Recompute the rings when membership changed; a new placement starts a rebalancing pass. */
const refreshRing = (state: State, now: number): void => {
  const current = Membership.ringMembers(state.membership)
  const future = [
    ...Membership.ringMembers(state.membership),
    ...Membership.pendingMembers(state.membership),
  ]
    .filter((m) => Membership.view(state.membership).get(m.id)?.status !== "leaving")
    .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
  const signature = ringSignatureOf(current, future)
  if (signature === state.ringSignature) return
  state.ringSignature = signature
  state.ring = Ring.make(current, state.config.tokensPerNode)
  state.futureRing = Ring.make(future, state.config.tokensPerNode)
  const before = new Set(state.peers)
  state.peers = [...Membership.view(state.membership).values()]
    .filter((e) => e.status !== "removed" && e.id !== state.config.self)
    .map((e) => e.id)
    .sort()
  // A new peer is monitored from now on, so that a silent one is suspected in bounded time.
  for (const p of state.peers) if (!before.has(p)) Phi.heartbeat(state.detector, p, now)
  // Anti-entropy visits every other owner on the current ring, one pair tree each.
  const targets = state.ring.nodes
    .filter((id) => id !== state.config.self)
    .map((peer) => ({ peer, range: pairRange(state.config.self, peer) }))
  AntiEntropy.step(
    state.ae,
    { _tag: "TargetsChanged", now, targets },
    { get: () => undefined, tree: () => undefined },
  )
  state.aeTrees.clear()
}

const stepMembership = (
  state: State,
  now: number,
  event: Membership.Event,
  out: Array<Command>,
): void => {
  const wasRemoved = Membership.isRemoved(state.membership)
  const [, commands] = Membership.step(state.membership, event)
  for (const c of commands) {
    out.push({
      _tag: "Send",
      to: c.to,
      address: c.address,
      message: { _tag: "Gossip", message: c.message },
    })
  }
  refreshRing(state, now)
  // An operator intent (join, leave, remove, mark-up) changes one entry: tell every peer at
  // once rather than wait for gossip, so that a crash of this node right after cannot lose it.
  if (event._tag !== "TickElapsed" && event._tag !== "MessageReceived") {
    const id = event._tag === "RemoveRequested" ? event.node : state.config.self
    const entry = Membership.view(state.membership).get(id)
    if (entry !== undefined) {
      for (const peer of state.peers) {
        const message: PeerMessage = {
          _tag: "Gossip",
          message: { _tag: "GossipAck", entries: [entry] },
        }
        out.push({ _tag: "Send", to: peer, message, address: peerAddressOf(state, peer) })
      }
    }
  }
  if (!wasRemoved && Membership.isRemoved(state.membership)) {
    // Tell every peer at once (a removal that only lives here dies with this process), then
    // keep gossiping for a few rounds before the driver is told to shut down.
    const tombstone = Membership.selfEntry(state.membership)!
    for (const peer of state.peers) {
      out.push({
        _tag: "Send",
        to: peer,
        message: { _tag: "Gossip", message: { _tag: "GossipAck", entries: [tombstone] } },
      })
    }
    state.removedAt = now
  }
}

/** A removed node tells the driver to stop a few gossip rounds after it learnt it. */
const maybeStop = (state: State, now: number, out: Array<Command>): void => {
  if (state.removedAt !== undefined && now >= state.removedAt + 4 * state.config.gossipIntervalMs) {
    state.removedAt = Number.POSITIVE_INFINITY
    out.push({ _tag: "Removed" })
  }
}

const maybeGossip = (state: State, now: number, out: Array<Command>): void => {
  if (now < state.nextGossipAt) return
  state.nextGossipAt = now + state.config.gossipIntervalMs
  stepMembership(state, now, { _tag: "TickElapsed", now }, out)
}

/** The statuses of members as this node sees them (for `dht status`). */
export const members = (state: State): ReadonlyArray<Membership.Entry> =>
  [...Membership.view(state.membership).values()].sort((a, b) => (a.id < b.id ? -1 : 1))

/** Where to reach a member (its advertised peer address), if known. */
export const peerAddressOf = (state: State, id: NodeId): string | undefined =>
  state.chord?.addresses.get(id) ??
  Membership.view(state.membership).get(id)?.peerAddress ??
  state.config.addresses.get(id)

/**
 * Operator intents. Impossible requests get a clear error and change nothing: removing the
 * last member, removing or leaving so that fewer than N members would remain.
 */
const onOperator = (
  state: State,
  now: number,
  client: ClientRef,
  op: OperatorOp,
  store: StoreView,
  out: Array<Command>,
): void => {
  const origin: Origin = { _tag: "Client", client }
  if (state.chord !== undefined) return onChordOperator(state, now, origin, op, store, out)
  const self = Membership.selfEntry(state.membership)
  const active = [...Membership.view(state.membership).values()].filter(
    (e) => e.status === "up" || e.status === "joining",
  )
  const ok = (message: string) => respond(state, origin, { _tag: "Done", message }, out)
  switch (op._tag) {
    case "Join":
      if (self !== undefined) return ok(`already a member (${self.status})`)
      stepMembership(state, now, { _tag: "JoinRequested", now }, out)
      return ok("joining: streaming the ranges this node will own, then up")
    case "Leave":
      if (self?.status !== "up") {
        return fail(
          state,
          origin,
          "BadRequest",
          `cannot leave: this node is ${self?.status ?? "not a member"}`,
          out,
        )
      }
      if (active.length - 1 < state.config.n) {
        return fail(
          state,
          origin,
          "BadRequest",
          `cannot leave: ${active.length - 1} members would remain, fewer than N=${state.config.n}`,
          out,
        )
      }
      stepMembership(state, now, { _tag: "LeaveRequested", now }, out)
      return ok("leaving: streaming this node's data to the new owners, then removed")
    case "Remove": {
      const target = Membership.view(state.membership).get(op.node)
      if (target === undefined)
        return fail(state, origin, "BadRequest", `no member ${op.node}`, out)
      if (target.status === "removed") return ok(`${op.node} is already removed`)
      if (active.length <= 1)
        return fail(state, origin, "BadRequest", "cannot remove the last member", out)
      if (active.length - 1 < state.config.n) {
        return fail(
          state,
          origin,
          "BadRequest",
          `cannot remove ${op.node}: ${active.length - 1} members would remain, fewer than N=${state.config.n}`,
          out,
        )
      }
      stepMembership(state, now, { _tag: "RemoveRequested", now, node: op.node }, out)
      return ok(`${op.node} removed; its ranges are re-replicated from the surviving replicas`)
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Chord routing (config.routing "chord"): the Chord machine (impl/core/chord.ts) replaces the
// ring. A client request waits for the lookup of its key's successor; the key's replicas are
// the first N nodes of the owner's successor list, and the request then runs exactly as under
// ring routing (quorums, read repair, forwarding of writes to a replica). Data follows the ring
// by anti-entropy: each node keeps its own arc (predecessor, self] in sync with its first N-1
// successors, so a joiner pulls its arc and the survivors of a failure re-replicate theirs.
// No membership, gossip, sloppy quorum or rebalancing passes in this mode.

const initChord = (config: Config): ChordRouting => {
  const addresses = new Map<NodeId, string>()
  for (const seed of config.chordSeeds) if (seed.address) addresses.set(seed.id, seed.address)
  const self: Chord.Peer = {
    id: config.self,
    pos: position(config.self),
    ...(config.peerAddress ? { address: config.peerAddress } : {}),
    ...(config.clientAddress ? { client: config.clientAddress } : {}),
  }
  return {
    ring: Chord.init(config.chord, self),
    addresses,
    parked: new Map(),
    random: { rng: (position(config.self) ^ config.generation) | 0 },
    started: false,
    nextJoinAt: 0,
    nextSeed: 0,
    neighbourhood: "",
    sweepCursor: undefined,
    nextSweepAt: 0,
    checking: new Map(),
    stats: { lookups: 0, lookupFailures: 0, hops: 0, maxHops: 0 },
  }
}

/** Most addresses remembered before the book is trimmed to the peers the state refers to. */
const ADDRESS_BOOK_MAX = 4096

const learnPeers = (c: ChordRouting, peers: ReadonlyArray<Chord.Peer>): void => {
  for (const p of peers) if (p.address !== undefined) c.addresses.set(p.id, p.address)
  if (c.addresses.size <= ADDRESS_BOOK_MAX) return
  const keep = new Map<NodeId, string>()
  for (const p of Chord.knownPeers(c.ring)) {
    const address = c.addresses.get(p.id)
    if (address !== undefined) keep.set(p.id, address)
  }
  c.addresses.clear()
  for (const [id, address] of keep) c.addresses.set(id, address)
}

/** The first N distinct nodes of a successor list, owner first: a key's replicas. */
export const replicasFrom = (successors: ReadonlyArray<Chord.Peer>, n: number) => {
  const out: Array<Chord.Peer> = []
  for (const p of successors) {
    if (out.length >= n) break
    if (!out.some((q) => q.id === p.id)) out.push(p)
  }
  return out
}

const lookupThen = (
  state: State,
  now: number,
  origin: Origin,
  op: ClientOp,
  store: StoreView,
  out: Array<Command>,
): void => {
  const c = state.chord!
  const requestId = state.nextRid++
  c.parked.set(requestId, { origin, op })
  const target = position(op.key)
  chordStep(state, now, { _tag: "LookupRequested", now, requestId, target }, store, out)
}

const chordStep = (
  state: State,
  now: number,
  event: Chord.ChordEvent,
  store: StoreView,
  out: Array<Command>,
): void => {
  const c = state.chord!
  const [next, commands] = Chord.step(c.ring, event)
  c.ring = next
  for (const cmd of commands) {
    switch (cmd._tag) {
      case "Send":
        out.push({ _tag: "Send", to: cmd.to, message: { _tag: "Chord", message: cmd.message } })
        break
      case "ScheduleTimer":
        out.push(
          cmd.timer._tag === "Stabilize"
            ? { _tag: "SetTimer", rid: 0, kind: "ChordStabilize", at: cmd.at }
            : { _tag: "SetTimer", rid: cmd.timer.rpc, kind: "ChordRpc", at: cmd.at },
        )
        break
      case "LookupCompleted": {
        const sweep = c.checking.get(cmd.requestId)
        if (sweep !== undefined) {
          c.checking.delete(cmd.requestId)
          learnPeers(c, cmd.successors)
          const replicas = replicasFrom(cmd.successors, state.config.n).map((p) => p.id)
          handBack(state, now, sweep.key, sweep.obj, replicas, out)
          break
        }
        const parked = c.parked.get(cmd.requestId)
        if (parked === undefined) break
        c.parked.delete(cmd.requestId)
        c.stats.lookups++
        c.stats.hops += cmd.hops
        c.stats.maxHops = Math.max(c.stats.maxHops, cmd.hops)
        learnPeers(c, cmd.successors)
        const replicas = replicasFrom(cmd.successors, state.config.n)
        const placement = replicas.map((p) => p.id)
        const { origin, op } = parked
        // A successor list shorter than the quorum (the ring still forming) must not lower it.
        const need = op._tag === "Get" ? (op.r ?? state.config.r) : (op.w ?? state.config.w)
        if (placement.length < need) {
          fail(
            state,
            origin,
            "QuorumNotMet",
            `quorum not met: the lookup found ${placement.length} replica(s) for this key, ` +
              `fewer than ${op._tag === "Get" ? "R" : "W"}=${need} (the ring is still forming); retry`,
            out,
          )
          break
        }
        if (op._tag === "Get") startGet(state, now, origin, op, store, out, placement)
        else if (placement.includes(state.config.self)) {
          startPut(state, now, origin, op, placement, store, out, placement)
        } else if (origin._tag === "Client") {
          forward(state, now, origin.client, op, placement, replicas, out)
        }
        break
      }
      case "LookupFailed": {
        c.checking.delete(cmd.requestId) // a sweep lookup: the next pass tries again
        const parked = c.parked.get(cmd.requestId)
        if (parked === undefined) break
        c.parked.delete(cmd.requestId)
        c.stats.lookupFailures++
        const why =
          cmd.reason === "NotJoined"
            ? "this node has not joined the Chord ring yet"
            : `the lookup of the key's successor failed (${cmd.reason}, ` +
              `${cmd.hops} hops, ${cmd.timeouts} timeouts)`
        fail(state, parked.origin, "Unavailable", `${why}; retry`, out)
        break
      }
      case "JoinFailed":
        c.nextJoinAt = now + state.config.chord.stabilizeIntervalMs
        break
      case "JoinCompleted":
        break
      case "HandOver":
        handOver(cmd, store, out)
        break
    }
  }
  refreshNeighbourhood(state, now)
}

/**
 * Start Chord: create a ring (a `chordCreate` node none of whose seeds answers, or a node with
 * no seeds) or join
 * through a seed; after a failed attempt, again a stabilize interval later.
 */
const maybeJoinChord = (state: State, now: number, store: StoreView, out: Array<Command>) => {
  const c = state.chord!
  if (c.ring.status === "Idle" && now >= c.nextJoinAt) {
    // A join that neither completes nor fails (its lookup still running) is not repeated.
    c.nextJoinAt = now + 4 * state.config.chord.stabilizeIntervalMs
    const seeds = state.config.chordSeeds.filter((p) => p.id !== state.config.self)
    const attempt = c.nextSeed++
    const create = seeds.length === 0 || (state.config.chordCreate && attempt >= seeds.length)
    // A creator asks each seed once, in order. Others ask the first seed (the introducer,
    // usually the creator) every other attempt, and the rest in turn in between, in case the
    // introducer is gone.
    const turn = state.config.chordCreate
      ? attempt
      : attempt % 2 === 0 || seeds.length === 1
        ? 0
        : 1 + ((attempt >> 1) % (seeds.length - 1))
    const via = create ? null : seeds[turn]!
    chordStep(state, now, { _tag: "JoinRequested", now, via }, store, out)
  }
  if (!c.started) {
    c.started = true
    const random = Rng.uniform(c.random)
    chordStep(state, now, { _tag: "StabilizeTicked", now, random }, store, out)
  }
  maybeSweep(state, now, store, out)
}

/** Keys the placement sweep looks up per stabilize interval (a lookup costs O(log N) hops). */
const SWEEP_KEYS_PER_ROUND = 32

const maybeSweep = (state: State, now: number, store: StoreView, out: Array<Command>): void => {
  const c = state.chord!
  const pred = c.ring.predecessor
  if (c.ring.status !== "Active" || pred === null || now < c.nextSweepAt) return
  if (c.checking.size > 0) return // the previous round's lookups are still running
  c.nextSweepAt = now + state.config.chord.stabilizeIntervalMs
  // A hand-back some replica never acknowledged (it died) is forgotten: the key is swept again.
  for (const [key, push] of state.rebalance.pushes) {
    if (now - push.sentAt > 10 * state.config.requestTimeoutMs) state.rebalance.pushes.delete(key)
  }
  const batch = store.scan(c.sweepCursor, SWEEP_KEYS_PER_ROUND)
  c.sweepCursor = batch.length < SWEEP_KEYS_PER_ROUND ? undefined : batch[batch.length - 1]![0]
  const own: Merkle.Range = { start: pred.pos, end: c.ring.self.pos }
  for (const [key, obj] of batch) {
    if (Merkle.contains(own, key) || state.rebalance.pushes.has(key)) continue
    const requestId = state.nextRid++
    c.checking.set(requestId, { key, obj })
    const target = position(key)
    chordStep(state, now, { _tag: "LookupRequested", now, requestId, target }, store, out)
  }
}

/**
 * A swept key this node does not replicate goes to its replicas (StreamPush, acknowledged);
 * once all acknowledged, it is dropped here if unchanged (onStreamAck), unless this node
 * coordinated it: forgetting its own events would let it reuse a dot.
 */
const handBack = (
  state: State,
  now: number,
  key: string,
  obj: Version.Obj,
  replicas: ReadonlyArray<NodeId>,
  out: Array<Command>,
): void => {
  const self = state.config.self
  if (replicas.includes(self) || replicas.length === 0) return
  const coordinated = obj.entries.some((e) => e.actor === self)
  state.rebalance.pushes.set(key, {
    obj,
    waiting: new Set(replicas),
    sentAt: now,
    drop: !coordinated,
  })
  for (const to of replicas)
    out.push({ _tag: "Send", to, message: { _tag: "StreamPush", key, obj } })
  state.stats.streamed++
}

/**
 * Heartbeats go to the Chord neighbourhood (successors and predecessor), and anti-entropy
 * keeps this node's arc (predecessor, self] in sync with its first N-1 successors.
 */
const refreshNeighbourhood = (state: State, now: number): void => {
  const c = state.chord!
  const self = state.config.self
  const pred = c.ring.predecessor
  const successors = c.ring.successors.filter((p) => p.id !== self)
  const signature = `${pred?.id ?? ""}|${successors.map((p) => p.id).join(",")}`
  if (signature === c.neighbourhood) return
  c.neighbourhood = signature
  const before = new Set(state.peers)
  const peers = new Set(successors.map((p) => p.id))
  if (pred !== null && pred.id !== self) peers.add(pred.id)
  state.peers = [...peers].sort()
  for (const p of state.peers) if (!before.has(p)) Phi.heartbeat(state.detector, p, now)
  for (const p of before) if (!peers.has(p)) Phi.remove(state.detector, p)
  const arc: Merkle.Range = { start: pred?.pos ?? c.ring.self.pos, end: c.ring.self.pos }
  const targets =
    pred === null || pred.id === self
      ? []
      : successors.slice(0, state.config.n - 1).map((p) => ({ peer: p.id, range: arc }))
  AntiEntropy.step(
    state.ae,
    { _tag: "TargetsChanged", now, targets },
    { get: () => undefined, tree: () => undefined },
  )
}

/**
 * A graceful leave (section 5.3): the keys of this node's arc go to its successor at once, as
 * repairs (the successor already holds most of them as a replica; anti-entropy re-replicates
 * the arc from there). The node then stops, once the repairs are on their way.
 */
const handOver = (
  cmd: Extract<Chord.ChordCommand, { _tag: "HandOver" }>,
  store: StoreView,
  out: Array<Command>,
): void => {
  const range: Merkle.Range = { start: cmd.from ?? cmd.through, end: cmd.through }
  for (const [key, obj] of store.scan(undefined, Number.MAX_SAFE_INTEGER)) {
    if (cmd.from !== null && !Merkle.contains(range, key)) continue
    out.push({ _tag: "Send", to: cmd.to.id, message: { _tag: "Repair", key, obj } })
  }
}

/** Operator intents under Chord routing: a node joins at start-up and leaves gracefully. */
const onChordOperator = (
  state: State,
  now: number,
  origin: Origin,
  op: OperatorOp,
  store: StoreView,
  out: Array<Command>,
): void => {
  const status = state.chord!.ring.status
  const ok = (message: string) => respond(state, origin, { _tag: "Done", message }, out)
  switch (op._tag) {
    case "Join":
      return ok(`Chord routing: this node joins through its seeds at start-up (${status})`)
    case "Leave":
      if (status !== "Active") {
        return fail(state, origin, "BadRequest", `cannot leave: this node is ${status}`, out)
      }
      chordStep(state, now, { _tag: "LeaveRequested", now }, store, out)
      state.removedAt = now
      return ok("leaving: this node's arc goes to its successor, then the node stops")
    case "Remove":
      return fail(
        state,
        origin,
        "BadRequest",
        "Chord routing keeps no membership to remove a node from: stabilization routes around " +
          "a dead node by itself",
        out,
      )
  }
}

/** What `dht status` shows of a Chord node: its routing state and lookup statistics. */
export const chordReport = (state: State) => {
  const c = state.chord
  if (c === undefined) return undefined
  const r = c.ring
  const fingers = new Set(r.fingers.filter((f) => f !== null).map((f) => f!.id))
  const known = new Set([...r.successors.map((p) => p.id), ...fingers])
  if (r.predecessor !== null) known.add(r.predecessor.id)
  known.delete(state.config.self)
  return {
    status: r.status,
    position: r.self.pos,
    predecessor: r.predecessor?.id ?? null,
    successors: r.successors.map((p) => p.id),
    /** The first successor's client address (operators walk the ring with it). */
    next: r.successors[0]?.client ?? null,
    distinctFingers: fingers.size,
    /** Distinct peers in the routing table (successors, predecessor, fingers): O(log N). */
    knownPeers: known.size,
    lookups: c.stats.lookups,
    lookupFailures: c.stats.lookupFailures,
    meanHops: c.stats.lookups === 0 ? 0 : c.stats.hops / c.stats.lookups,
    maxHops: c.stats.maxHops,
  }
}

// ---------------------------------------------------------------------------------------------
// Anti-entropy (Dynamo section 4.7): Merkle exchanges with every replica peer

/**
 * The keys two nodes both replicate form one Merkle tree per pair. Its range is the whole ring
 * (start = end) starting at a position derived from the pair, so that both sides name it alike.
 */
const pairRange = (a: NodeId, b: NodeId): Merkle.Range => {
  const start = position(a < b ? `${a}\u0000${b}` : `${b}\u0000${a}`)
  return { start, end: start }
}

/**
 * The tree of the keys this node shares with the range's peer, rebuilt from the store when a
 * write happened since it was built (O(keys); an incremental tree is the next step).
 */
const TREE_REBUILD_MS = 5_000

const treeFor = (state: State, store: StoreView, range: Merkle.Range): Merkle.Tree | undefined => {
  const peer = state.ae.targets.find((t) => Merkle.sameRange(t.range, range))?.peer
  // Chord routing: a range is a node's own arc (predecessor, self], kept in sync by that node
  // with its successors; a successor answers for whatever arc it is asked about.
  if (peer === undefined && state.chord === undefined) return undefined
  const id = Merkle.rangeId(range)
  const cached = state.aeTrees.get(id)
  // A tree a few seconds stale only delays a repair (keys written since are compared later or
  // synced anyway); rebuilding on every write would stall a busy node (O(keys) per build).
  if (
    cached !== undefined &&
    (cached.version === state.storeVersion || state.now - cached.builtAt < TREE_REBUILD_MS)
  ) {
    return cached.tree
  }
  const n = state.config.n
  const all = store.scan(undefined, Number.MAX_SAFE_INTEGER)
  const shared =
    state.chord !== undefined
      ? all.filter(([key]) => Merkle.contains(range, key))
      : all.filter(([key]) => {
          const replicas = Ring.preferenceList(state.ring, key, n)
          return (
            replicas.includes(state.config.self) && peer !== undefined && replicas.includes(peer)
          )
        })
  // Arcs asked about come and go with the neighbourhood: keep the cache small.
  if (state.aeTrees.size >= 16) state.aeTrees.clear()
  const tree = Merkle.build(range, Merkle.shapeFor(shared.length), shared)
  state.aeTrees.set(id, { tree, version: state.storeVersion, builtAt: state.now })
  return tree
}

const stepAntiEntropy = (
  state: State,
  event: AntiEntropy.Event,
  store: StoreView,
  out: Array<Command>,
): void => {
  const view: AntiEntropy.View = { get: store.get, tree: (range) => treeFor(state, store, range) }
  const [, commands] = AntiEntropy.step(state.ae, event, view)
  for (const c of commands) {
    switch (c._tag) {
      case "Send":
        out.push({ _tag: "Send", to: c.to, message: { _tag: "AntiEntropy", message: c.message } })
        break
      case "SetTimer":
        out.push({ _tag: "SetTimer", rid: c.xid, kind: "AntiEntropy", at: c.at })
        break
      case "Repair": {
        const local = store.get(c.key) ?? Version.empty
        const merged = reconcile(state, c.key, Version.sync(local, c.obj))
        if (!Version.equals(merged, local)) {
          state.stats.aeRepairs++
          out.push({ _tag: "Persist", key: c.key, obj: merged })
        }
        break
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Rebalancing: join, leave and remove stream data to the new owners (rate-limited)

interface Push {
  readonly obj: Version.Obj
  readonly waiting: Set<NodeId>
  sentAt: number
  /** This node no longer owns the key: drop it once every new owner confirmed. */
  readonly drop: boolean
}

export interface Rebalance {
  /** Where the scan of local keys stands in the current pass; null when the scan is done. */
  cursor: string | undefined | null
  /** Signature of the placement the last completed pass established. */
  settled: string | undefined
  /** The placement (future ring) the last completed pass established. */
  settledRing?: Ring.Ring
  /** Signature the running pass works toward. */
  passSignature?: string
  readonly pushes: Map<string, Push>
  /** Joining: members that finished pushing to us, per placement signature. */
  readonly doneFrom: Map<string, Set<NodeId>> | Set<NodeId>
  passes: number
  nextAt?: number
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
const maybeRebalance = (state: State, now: number, store: StoreView, out: Array<Command>): void => {
  const r = state.rebalance
  if (r.nextAt !== undefined && now < r.nextAt) return
  r.nextAt = now + state.config.streamIntervalMs
  if (state.ring.tokens.length === 0 && state.futureRing.tokens.length === 0) return
  if (r.passSignature !== state.ringSignature) {
    if (r.settled === state.ringSignature) return
    r.passSignature = state.ringSignature
    r.cursor = undefined
    r.passes++
    // The new pass re-pushes whatever the new placement needs; pushes of the old one may wait
    // on owners that no longer are (a removed node) and must not hold this pass back.
    r.pushes.clear()
  }
  // Resend pushes that went unacknowledged (lost, or the owner was down).
  for (const [key, push] of r.pushes) {
    if (now - push.sentAt < state.config.requestTimeoutMs) continue
    push.sentAt = now
    for (const to of push.waiting) {
      if (believedUp(state, to, now))
        out.push({ _tag: "Send", to, message: { _tag: "StreamPush", key, obj: push.obj } })
    }
  }
  if (r.cursor !== null && r.pushes.size < state.config.streamBatch * 4) {
    const page = store.scan(r.cursor, state.config.streamBatch)
    for (const [key, obj] of page) pushKey(state, now, key, obj, out)
    r.cursor = page.length < state.config.streamBatch ? null : page[page.length - 1]![0]
  }
  if (r.cursor === null && r.pushes.size === 0) finishPass(state, now, out)
}

const pushKey = (
  state: State,
  now: number,
  key: string,
  obj: Version.Obj,
  out: Array<Command>,
): void => {
  const n = state.config.n
  const self = state.config.self
  const desired = Ring.preferenceList(state.futureRing, key, n)
  const current = Ring.preferenceList(state.ring, key, n)
  const owned = desired.includes(self) || current.includes(self)
  const before = state.rebalance.settledRing
  const had = before === undefined ? [] : Ring.preferenceList(before, key, n)
  const targets = desired.filter((d) => d !== self && (!owned || !had.includes(d)))
  if (targets.length === 0) return
  // Keys this node coordinated stay: forgetting its own events would let it reuse a dot.
  const coordinated = obj.entries.some((e) => e.actor === self)
  state.rebalance.pushes.set(key, {
    obj,
    waiting: new Set(targets),
    sentAt: now,
    drop: !owned && !coordinated,
  })
  for (const to of targets)
    out.push({ _tag: "Send", to, message: { _tag: "StreamPush", key, obj } })
  state.stats.streamed++
}

const finishPass = (state: State, now: number, out: Array<Command>): void => {
  const r = state.rebalance
  r.settled = r.passSignature
  r.settledRing = state.futureRing
  const signature = r.passSignature!
  for (const e of Membership.view(state.membership).values()) {
    if (e.status === "joining" && e.id !== state.config.self) {
      out.push({ _tag: "Send", to: e.id, message: { _tag: "StreamDone", signature } })
    }
  }
  const self = Membership.selfEntry(state.membership)
  if (self?.status === "leaving") {
    stepMembership(state, now, { _tag: "RemoveRequested", now, node: state.config.self }, out)
  }
  maybeMarkUp(state, now, out)
}

const onStreamPush = (
  state: State,
  from: NodeId,
  message: { readonly key: string; readonly obj: Version.Obj },
  store: StoreView,
  out: Array<Command>,
): void => {
  const local = store.get(message.key) ?? Version.empty
  const merged = reconcile(state, message.key, Version.sync(local, message.obj))
  if (!Version.equals(merged, local)) out.push({ _tag: "Persist", key: message.key, obj: merged })
  out.push({ _tag: "Send", to: from, message: { _tag: "StreamAck", key: message.key } })
}

const onStreamAck = (
  state: State,
  now: number,
  from: NodeId,
  key: string,
  store: StoreView,
  out: Array<Command>,
): void => {
  const push = state.rebalance.pushes.get(key)
  if (push === undefined) return
  push.waiting.delete(from)
  if (push.waiting.size > 0) return
  state.rebalance.pushes.delete(key)
  const stored = store.get(key)
  if (push.drop && stored !== undefined && Version.equals(stored, push.obj)) {
    state.stats.dropped++
    out.push({ _tag: "Drop", key, obj: push.obj })
  }
  if (
    state.chord === undefined &&
    state.rebalance.cursor === null &&
    state.rebalance.pushes.size === 0
  )
    finishPass(state, now, out)
}

const onStreamDone = (
  state: State,
  now: number,
  from: NodeId,
  signature: string,
  out: Array<Command>,
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
const maybeMarkUp = (state: State, now: number, out: Array<Command>): void => {
  if (Membership.selfEntry(state.membership)?.status !== "joining") return
  if (state.rebalance.settled !== state.ringSignature) return
  const done = doneFromOf(state).get(state.ringSignature) ?? new Set<NodeId>()
  const sources = state.ring.nodes.filter(
    (id) => id !== state.config.self && believedUp(state, id, now),
  )
  if (sources.length === 0 || !sources.every((id) => done.has(id))) return
  stepMembership(state, now, { _tag: "MarkUp", now }, out)
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
    stats: { ...state.stats },
  }
}

/** Progress of rebalancing, for `dht status`. */
export const streamingProgress = (state: State) => ({
  pass: state.rebalance.passes,
  settled: state.rebalance.settled === state.ringSignature,
  pending: state.rebalance.pushes.size,
  scanning: state.rebalance.cursor !== null,
})

// ---------------------------------------------------------------------------------------------
// Replies

const respond = (state: State, origin: Origin, result: ClientResult, out: Array<Command>): void => {
  if (origin._tag === "Client") {
    out.push({ _tag: "Reply", client: origin.client, result })
  } else {
    out.push({
      _tag: "Send",
      to: origin.node,
      message: { _tag: "CoordinateResponse", rid: origin.rid, result },
    })
  }
  if (result._tag === "Failed") state.stats.failures++
}

const fail = (
  state: State,
  origin: Origin,
  reason: FailureReason,
  message: string,
  out: Array<Command>,
): void => respond(state, origin, { _tag: "Failed", reason, message }, out)

const failQuorum = (
  state: State,
  origin: Origin,
  which: "R" | "W",
  tally: Quorum.Tally,
  out: Array<Command>,
): void =>
  fail(
    state,
    origin,
    "QuorumNotMet",
    `quorum not met: ${tally.ok.length} of ${tally.need} required replicas answered ` +
      `(${which}=${tally.need}, N=${tally.asked.length}) within ${state.config.requestTimeoutMs} ms`,
    out,
  )
