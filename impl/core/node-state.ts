/**
 * The storage node's shared vocabulary (impl/core/node.ts and its parts, node-*.ts): the
 * runtime state of one node, the requests in flight, the chord slice of the state, and the few
 * helpers every part uses (replies and failures, `believedUp`). Writes to the store are
 * node-store.ts's.
 *
 * Owns: the types of the state, not its fields: each part owns the fields it updates (its
 * header says which). Must not: import a part (node-*.ts imports this file, never the other
 * way round), or decide anything about routing, placement or a request's outcome.
 */
import type { Out } from "./ready.ts"
import type { NodeId } from "./ids.ts"
import type { KeyOp, ClientRef, ClientResult, PutOp } from "./messages.ts"
import type { RequestError } from "./failure.ts"
import type * as AntiEntropy from "./anti-entropy.ts"
import type * as Chord from "./chord.ts"
import type * as Membership from "./membership.ts"
import type * as Merkle from "./merkle.ts"
import type * as Get from "./get-coordinator.ts"
import * as Phi from "./phi.ts"
import type * as Put from "./put-coordinator.ts"
import type * as Ring from "./ring.ts"
import type * as Rng from "./rng.ts"
import * as Version from "./version.ts"
import { policyOf, type Config } from "./node-config.ts"

export type Origin =
  | { readonly _tag: "Client"; readonly client: ClientRef }
  | { readonly _tag: "Peer"; readonly node: NodeId; readonly rid: number }

/** A GET in flight: its coordinator's request (get-coordinator.ts) and who asked. */
export interface GetPending extends Get.GetRequest {
  readonly _tag: "Get"
  readonly origin: Origin
}

/**
 * Where a request's copies live when the node has no ring to compute it from (Chord routing):
 * the key's N replicas, as a lookup found them. Undefined: the ring decides.
 */
export type Placement = ReadonlyArray<NodeId> | undefined

/** A PUT in flight: its coordinator's request (put-coordinator.ts), who asked, and where. */
export interface PutPending extends Put.PutRequest {
  readonly _tag: "Put"
  readonly origin: Origin
  readonly placement: Placement
}

export interface ForwardPending {
  readonly _tag: "Forward"
  readonly client: ClientRef
  readonly op: PutOp
  readonly candidates: ReadonlyArray<NodeId>
  /** Chord routing: the key's replicas as the lookup found them (the coordinator needs them). */
  readonly replicas: ReadonlyArray<Chord.Peer> | undefined
  attempt: number
  /**
   * The one coordinator (node and its request id) allowed to run this write (KV-9). Granted to
   * the first claim; every other claim is refused, and once granted the forwarder never fails
   * over: the grantee may still run the write however late, so nobody else may.
   */
  granted: { readonly node: NodeId; readonly put: number } | undefined
}

/** One page of a cluster-wide SCAN (SCAN-1): every member's next keys, merged in order. */
export interface ScanPending {
  readonly _tag: "Scan"
  readonly origin: Origin
  readonly count: number
  /** The members asked (this node included) and, per member, its answer. */
  readonly asked: ReadonlyArray<NodeId>
  readonly answers: Map<
    NodeId,
    { readonly keys: ReadonlyArray<string>; readonly upTo: string | null }
  >
}

/** A reaper's round (impl/core/node-reap.ts): every replica's object of one dead key. */
export interface ReapPending {
  readonly _tag: "Reap"
  readonly key: string
  readonly asked: ReadonlyArray<NodeId>
  readonly answers: Map<NodeId, Version.Obj>
  /** The second round, which reclaims if nothing changed since the first. */
  readonly confirm: boolean
}

type Pending = GetPending | PutPending | ForwardPending | ScanPending | ReapPending

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
  /** Claims to run a forwarded write that this forwarder refused (late or duplicate copies). */
  claimsRefused: number
  /** Keys this node reclaimed (deleted with their clock, RECLAIM-1). */
  reaped: number
  /** Messages dropped because their object was older than `maxMessageAgeMs`. */
  stale: number
}

export const initStats = (): Stats => ({
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
})

/** The reaper (impl/core/node-reap.ts). */
export interface Reap {
  /** The last key examined in the current pass (undefined: from the start). */
  cursor: string | undefined
  nextAt: number
  /**
   * Keys whose first round found every replica holding the same dead object: the object, and
   * when that round completed. Bounded by `reapBatch * 8`.
   */
  readonly candidates: Map<string, { readonly obj: Version.Obj; readonly since: number }>
  /** Rounds in flight. */
  rounds: number
  /** Counts of the pass in progress, and of the last complete pass (INFO, dht status). */
  pass: { keys: number; dead: number }
  last: { readonly keys: number; readonly dead: number; readonly at: number } | undefined
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
  /** The generation whose range `nextRid` is in (request ids never repeat, KV-6). */
  ridGeneration: number
  /** Last hybrid logical timestamp issued or seen. */
  hlc: number
  readonly pending: Map<number, Pending>
  nextHeartbeatAt: number
  readonly rebalance: Rebalance
  /** Anti-entropy with every replica peer (Merkle exchanges, impl/core/anti-entropy.ts). */
  readonly ae: AntiEntropy.State
  /**
   * Merkle trees of the ranges this node compares, by range and shape, kept in step with every
   * store write this node emits (node-ae.ts). `peer`: on the ring, the peer whose shared keys
   * the tree holds; null under Chord routing (every key of the tree's range).
   */
  readonly aeTrees: Map<string, { readonly tree: Merkle.Tree; readonly peer: NodeId | null }>
  /** The tree being built a page per step (node-ae.ts), at most one at a time. */
  aeBuild: TreeBuild | undefined
  /**
   * The store writes this step has emitted so far, by key (undefined: deleted): the store view
   * shows none of them until the step returns. Empty between steps (node-store.ts).
   */
  readonly written: Map<string, Version.Obj | undefined>
  /** Time of the event being stepped. */
  now: number
  readonly stats: Stats
  /** Hints sent to their owners and not yet acknowledged: "owner\0key" -> time sent. */
  readonly handoffInFlight: Map<string, number>
  nextHandoffAt: number
  readonly reap: Reap
  /**
   * Since when this node has held no hint and no key it must still hand over (RECLAIM-1);
   * undefined while it holds some. Gossiped as its membership entry's `calm`.
   */
  calmSince: number | undefined
  /** Chord routing only: the node's Chord state and what drives it. */
  readonly chord: ChordRouting | undefined
}

export interface ChordRouting {
  ring: Chord.ChordState
  /** Where the peers Chord told us about listen (ids only in the simulator). */
  readonly addresses: Map<NodeId, string>
  /** Requests whose lookup completed in this step, with their key's replicas, to be run. */
  readonly routed: Array<{
    readonly origin: Origin
    readonly op: KeyOp
    readonly replicas: ReadonlyArray<Chord.Peer>
  }>
  /** Client requests waiting for the lookup of their key, by lookup request id. */
  readonly parked: Map<number, { readonly origin: Origin; readonly op: KeyOp }>
  readonly random: Rng.Rng
  /** The first StabilizeTicked was delivered (every tick then schedules the next). */
  started: boolean
  /**
   * While Idle: when to try to join again, and which seed next. Once Active: when to look this
   * node's own position up through the next seed (the ring-merge check, CHORD-10), and which.
   */
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
  /**
   * Hand-overs in progress (Chord's HandOver: the keys of `range`, or all keys when `all`, go to
   * `to` as repairs), oldest first, sent a page of `streamBatch` keys per tick; `cursor`: the
   * last key sent. A graceful leave stops the node once they are all sent (`leaving`).
   */
  readonly handOvers: Array<{
    readonly to: NodeId
    readonly range: Merkle.Range
    readonly all: boolean
    cursor: string | undefined
  }>
  leaving: boolean
  readonly stats: { lookups: number; lookupFailures: number; hops: number; maxHops: number }
}

/**
 * A Merkle tree being built from the store across steps, `aeBuildBatch` keys per step: for the
 * keys of `range` this node shares with `peer` (null: all of them, Chord routing).
 */
export interface TreeBuild {
  readonly range: Merkle.Range
  readonly peer: NodeId | null
  /**
   * Count: counting the keys, to size a tree this node chose no shape for (its own exchange).
   * Hash: adding them to `tree` (Merkle.begin/add), which every write to a key at or before
   * `cursor` updates (node-store.ts); the keys after it are still to be scanned.
   */
  phase: "Count" | "Hash"
  /** Keys counted so far (Count). */
  count: number
  /** The tree (Hash): of the shape a peer asked for, or the one sized by the count. */
  tree: Merkle.Tree | undefined
  /** The last key scanned in this phase; undefined: none yet. */
  cursor: string | undefined
}

/** Where one copy of a key goes: a preferred replica, or a substitute holding a hint for one. */
export type Target = Put.Target

/** Apply the key's policy to an object: lww keeps the latest sibling only. */
export const reconcile = (state: State, key: string, obj: Version.Obj): Version.Obj =>
  policyOf(state.config, key) === "lww" ? Version.pruneLww(obj) : obj

/** Is `node` believed up at `now`? Self always is. */
export const believedUp = (state: State, node: NodeId, now: number): boolean =>
  node === state.config.self ||
  Phi.isAvailable(state.detector, node, now, state.config.phiThreshold)

/**
 * Request timeouts after which a push nobody acknowledged is given up on: a rebalancing push to
 * a new owner still believed down (node-rebalance.ts), a hand-back of a swept key (node-chord.ts,
 * which looks the key up again).
 */
export const PUSH_GIVE_UP_REQUESTS = 10

interface Push {
  readonly obj: Version.Obj
  readonly waiting: Set<NodeId>
  /** When the push was first sent, and last (re)sent. */
  readonly since: number
  sentAt: number
  /**
   * This node no longer owns the key: drop it once every new owner confirmed. Cleared when a
   * new owner is given up on (down too long): the copy here then stays.
   */
  drop: boolean
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
  /**
   * Keys the current pass kept although this node no longer owns them (a new owner was given
   * up on). While any remain the node is not calm (RECLAIM-1), and a new pass retries them
   * at `retryAt`.
   */
  strays: number
  retryAt?: number
}

// ---------------------------------------------------------------------------------------------
// Replies

export const respond = (state: State, origin: Origin, result: ClientResult, out: Out): void => {
  if (origin._tag === "Client") {
    out.sendAfterPersist({ _tag: "Reply", client: origin.client, result })
  } else {
    out.sendAfterPersist({
      _tag: "Send",
      to: origin.node,
      message: { _tag: "CoordinateResponse", rid: origin.rid, result },
    })
  }
  if (result._tag === "Failed") state.stats.failures++
}

export const fail = (state: State, origin: Origin, error: RequestError, out: Out): void =>
  respond(state, origin, { _tag: "Failed", error }, out)
