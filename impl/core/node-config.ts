/**
 * The storage node's configuration: every setting a driver passes to `init` (impl/core/node.ts),
 * their defaults, and the conflict policy of a key by namespace.
 *
 * Owns: the settings and their documentation. Must not: hold runtime state (node-state.ts) or
 * decide anything beyond a key's policy; settings are read, never changed, once a node runs.
 */
import type { NodeId } from "./ids.ts"
import * as Chord from "./chord.ts"
import type * as Membership from "./membership.ts"
import * as Phi from "./phi.ts"
import * as Ring from "./ring.ts"

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
  /**
   * Test-only negative control: restore the old failover, where the coordinator of a forwarded
   * write runs it without the forwarder's grant (KV-9 must then fail). Never set in production.
   */
  readonly unsafeFailover: boolean
  /**
   * Test-only negative controls of reclamation (RECLAIM-1): "no-message-age" keeps stale
   * object-carrying messages; "no-calm" reclaims without waiting for every member to be calm;
   * "no-stale-store" serves a store restored from an older copy of itself.
   * Each must make the reclamation scenarios bring a deleted value back. Never set in production.
   */
  readonly unsafeReclaim?: "no-message-age" | "no-calm" | "no-stale-store" | undefined
  /** Objects a node examines for one SCAN page request at most (every loop is bounded). */
  readonly scanExamineMax: number
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
   * A dead key (tombstone or expired value) is reclaimed no sooner than this after it died
   * (hybrid-clock milliseconds), and only once every replica holds it (RECLAIM-1,
   * impl/core/node-reap.ts). A read that finds every replica holding it drops its value sooner.
   */
  readonly tombstoneGraceMs: number
  /**
   * A message carrying an object to store is dropped once older than this (by the receiver's
   * clock against the sender's stamp). Reclamation waits this long (plus `maxClockSkewMs`)
   * after every replica was seen holding the dead object, so that no copy sent before can
   * still land. Must exceed `requestTimeoutMs`: no request outlives it.
   */
  readonly maxMessageAgeMs: number
  /** The assumed bound on the difference between two nodes' clocks (reclamation's margin). */
  readonly maxClockSkewMs: number
  /** The reaper examines up to `reapBatch` stored keys every `reapIntervalMs`. */
  readonly reapIntervalMs: number
  readonly reapBatch: number
  /**
   * "ap" (default): sloppy quorum — a write whose preferred replica is down goes to the next
   * healthy node with a hint. "cp": strict quorums only, and a node that cannot see a majority
   * of the cluster refuses writes.
   */
  readonly mode: "ap" | "cp"
  /** Hinted handoff budget: at most this many hints delivered per interval. */
  readonly handoffBatch: number
  readonly handoffIntervalMs: number
  /**
   * Streaming budget: keys pushed per interval on a join, leave or remove; under Chord routing,
   * keys a hand-over sends per tick.
   */
  readonly streamBatch: number
  readonly streamIntervalMs: number
  /** Anti-entropy: one Merkle exchange per interval, at most `aeMaxKeys` keys, `aeRatePerSec`. */
  readonly aeIntervalMs: number
  readonly aeMaxKeys: number
  readonly aeRatePerSec: number
  /**
   * Anti-entropy trees are built from the store a page of this many keys per step (a tick, or
   * the request that asked for the tree), so that no step scans the whole store.
   */
  readonly aeBuildBatch: number
  /**
   * "ring" (default): one-hop routing on the gossiped membership. "chord": the node keeps only
   * its Chord state (impl/core/chord.ts: successor list, predecessor, fingers) and no membership;
   * a request first looks up its key's successor in O(log N) hops, and the key's N replicas are
   * the first N nodes of the owner's successor list. See "Chord routing" below.
   */
  readonly routing: Routing
  /** Chord routing: the Chord machine's settings. */
  readonly chord: Chord.ChordConfig
  /**
   * Chord routing: members to join through, tried in turn until one answers, listed alike on
   * every node (this node may be among them). The first seed is the ring's creator: it tries the
   * other seeds once, then creates the ring if none answers, so that a restarted creator rejoins
   * the ring it made instead of starting a second one. No seeds but itself: it creates at once.
   */
  readonly chordSeeds: ReadonlyArray<Chord.Peer>
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
  unsafeFailover: false,
  scanExamineMax: 4096,
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
  aeBuildBatch: 4096,
  maxPending: 100_000,
  namespaces: [] as ReadonlyArray<Namespace>,
  tombstoneGraceMs: 600_000,
  maxMessageAgeMs: 30_000,
  maxClockSkewMs: 1000,
  reapIntervalMs: 1000,
  reapBatch: 4096,
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
