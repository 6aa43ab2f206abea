/**
 * The vocabulary of a storage node: events that happen to it, commands it wants done, messages
 * it exchanges with peers, and results it returns to clients. Plain data with a `_tag`, so that
 * the simulator can delay, drop, duplicate and reorder them and a test can assert on them.
 * impl/wire/schema.ts holds the effect/Schema codecs for every type that crosses a socket; a
 * compile-time check there keeps the two in step.
 *
 * Owns: the types (and their constructors and matchers). Must not: hold behaviour or codecs.
 */
import { Data } from "effect"
import type { NodeId } from "./ids.ts"
import type * as AntiEntropy from "./anti-entropy.ts"
import type * as Chord from "./chord.ts"
import type * as Membership from "./membership.ts"
import type { RequestError } from "./failure.ts"
import type { Clock, Obj } from "./version.ts"

// ---------------------------------------------------------------------------------------------
// Client operations and results

/** Read a key with read quorum `r` (undefined: the node's default). */
export interface GetOp {
  readonly _tag: "Get"
  readonly key: string
  readonly r?: number | undefined
}

/**
 * Write (`value` a byte string) or delete (`value` null) a key.
 * `context`: the causal context the client read (`DHT.PUT … CONTEXT`); an empty clock creates a
 * sibling of whatever exists; `null` means a plain Redis write, which supersedes whatever a read
 * quorum holds (the coordinator reads the context first).
 */
export interface PutOp {
  readonly _tag: "Put"
  readonly key: string
  readonly value: string | null
  readonly context: Clock | null
  readonly w?: number | undefined
  /** Expiry of the written value, wall-clock ms (SET … EX/PX/EXAT/PXAT, EXPIRE). */
  readonly exp?: number | undefined
  /**
   * Decided by the coordinator over everything it knows when it mints the write (the read
   * quorum and its own object), never by the client beforehand:
   *  - "ttl": keep the current live value's expiry (SET … KEEPTTL);
   *  - "value": write the current live value again, with `exp` (EXPIRE, PERSIST, GETEX); with
   *    no live value nothing is written (`PutSkipped`).
   */
  readonly keep?: "ttl" | "value" | undefined
  /**
   * Write only if, at the coordinator: "nx" no value is live, "xx" one is, "context" its
   * context still equals `context` (compare-and-set, DHT.PUT … IF-CONTEXT). Otherwise nothing
   * is written (`PutSkipped`). Best effort in AP (see docs/clients.md).
   */
  readonly cond?: "nx" | "xx" | "context" | undefined
  /**
   * INCRBY and friends (CTR-1): add `by` (a decimal string) to the key's counter, created from
   * the live integer value (0 when none) if the key holds no counter yet. `value` is ignored.
   */
  readonly incr?: { readonly by: string; readonly float: boolean } | undefined
  /** APPEND: write the current live value (empty when none) followed by `value`. */
  readonly append?: boolean | undefined
}

/** The live value a write found (`previous` of a result); absent when none was live. */
export interface Previous {
  readonly value: string
  readonly exp?: number | undefined
}

/**
 * One page of a cluster-wide key listing (SCAN, KEYS, DBSIZE; SCAN-1): up to `count` live keys
 * after `after` in byte order (from the start when undefined) matching the glob `match`.
 */
export interface ScanOp {
  readonly _tag: "Scan"
  readonly after?: string | undefined
  readonly count: number
  readonly match?: string | undefined
}

/** The largest page a SCAN asks one node for (COUNT is capped to it). */
export const SCAN_COUNT_MAX = 10_000

/** The operations on one key (routed to the key's replicas). */
export type KeyOp = GetOp | PutOp

export type ClientOp = KeyOp | ScanOp

/** Why a request failed: impl/core/failure.ts (one typed error per case, sorted into kinds). */
export type { FailureKind, RequestError } from "./failure.ts"

/** Operator intents (`dht join`, `dht leave`, `dht remove NODE`, over RESP as DHT.*). */
export type OperatorOp = Data.TaggedEnum<{
  Join: {}
  Leave: {}
  Remove: { readonly node: NodeId }
}>
export const OperatorOp = Data.taggedEnum<OperatorOp>()

export type ClientResult = Data.TaggedEnum<{
  /** An operator intent was accepted; `message` says what happens next. */
  Done: { readonly message: string }
  GetOk: { readonly obj: Obj }
  /**
   * `context`: the object's context after the write (use it to supersede this write);
   * `dot`: the write's own event (coordinating replica, counter);
   * `existed`: the write superseded at least one live (non-tombstone) value.
   */
  PutOk: {
    readonly context: Clock
    readonly dot: readonly [string, number]
    readonly existed: boolean
    /** The live value the coordinator resolved before this write (SET … GET, GETDEL). */
    readonly previous?: Previous | undefined
    /** A counter's total after this increment (INCR's reply). */
    readonly total?: string | undefined
  }
  /** A page of keys in byte order; `next`: the cursor to continue after, null when done. */
  ScanOk: { readonly keys: ReadonlyArray<string>; readonly next: string | null }
  /** A conditional write whose condition did not hold: nothing was written. */
  PutSkipped: { readonly previous?: Previous | undefined }
  /**
   * The request failed; `error` says how, with the facts of its case, and its kind (`kindOf`)
   * whether a retry may help and whether a write may still take effect.
   */
  Failed: { readonly error: RequestError }
}>
export const ClientResult = Data.taggedEnum<ClientResult>()

// ---------------------------------------------------------------------------------------------
// Peer messages (node to node)

export type PeerMessage = Data.TaggedEnum<{
  /** Liveness beacon; any message counts as a sign of life. */
  Heartbeat: {}
  /** Ask a replica for its object of `key`. */
  ReadRequest: { readonly rid: number; readonly key: string }
  ReadResponse: { readonly rid: number; readonly obj: Obj }
  /**
   * Replicate `obj`: the replica syncs it into its own, persists, then acks.
   *
   * `at` on every message that carries an object to be stored: the sender's clock when the
   * object was last known to be held (the send, or for read repair the start of the read). A
   * receiver drops such a message once older than `maxMessageAgeMs` (RECLAIM-1): a stale copy
   * of a reclaimed key can then never land after the reclamation. Absent: an old sender; kept.
   */
  WriteRequest: {
    readonly rid: number
    readonly key: string
    readonly obj: Obj
    readonly at?: number | undefined
  }
  WriteAck: { readonly rid: number }
  /**
   * Sloppy quorum: store `obj` as a hint for `owner` (a preferred replica believed down), then
   * ack like a WriteRequest. The hint is durable and handed off when the owner is back.
   */
  HintedWrite: {
    readonly rid: number
    readonly key: string
    readonly obj: Obj
    readonly owner: NodeId
    readonly at?: number | undefined
  }
  /** Hinted handoff: the hint holder delivers a hinted object to its owner. */
  Handoff: { readonly key: string; readonly obj: Obj; readonly at?: number }
  /** The owner has `obj` durably; the holder may drop its hint if it has not changed. */
  HandoffAck: { readonly key: string; readonly obj: Obj }
  /** Merkle anti-entropy (impl/core/anti-entropy.ts) between two replicas. */
  AntiEntropy: {
    readonly message: AntiEntropy.Message
    readonly at?: number | undefined
  }
  /** Membership gossip (impl/core/membership.ts), carried between storage nodes. */
  Gossip: { readonly message: Membership.Message }
  /** Rebalancing: a key's object for its new owner, which syncs, persists and acks. */
  StreamPush: { readonly key: string; readonly obj: Obj; readonly at?: number }
  StreamAck: { readonly key: string }
  /** The sender has pushed everything it holds for the placement with this signature. */
  StreamDone: { readonly signature: string }
  /** Read repair: like WriteRequest but nobody waits for an ack. */
  Repair: { readonly key: string; readonly obj: Obj; readonly at?: number }
  /**
   * Purge a fully replicated tombstone: the replica drops the tombstone value (keeping only the
   * version vector) if its stored object still equals `obj`, i.e. nothing newer arrived since
   * every replica was seen holding it.
   */
  Purge: { readonly key: string; readonly obj: Obj }
  /**
   * Reclaim a key (RECLAIM-1): every replica held this dead object, twice, with the cluster
   * calm in between (impl/core/node-reap.ts). The replica deletes the key, clock and all, if
   * its stored object still equals `obj`; anything newer stays.
   */
  Reap: { readonly key: string; readonly obj: Obj; readonly at: number }
  /** Chord routing (impl/core/chord.ts): lookups and ring maintenance between storage nodes. */
  Chord: { readonly message: Chord.ChordMessage }
  /**
   * A node outside the preference list asks a replica to coordinate a write. `replicas`: under
   * Chord routing, the key's preference list as the forwarder's lookup found it (the coordinator
   * has no ring to compute it from).
   */
  CoordinateRequest: {
    readonly rid: number
    readonly op: PutOp
    readonly replicas?: ReadonlyArray<Chord.Peer> | undefined
  }
  CoordinateResponse: { readonly rid: number; readonly result: ClientResult }
  /**
   * The coordinator of a forwarded write asks its forwarder for the right to run it (KV-9):
   * `rid` is the forwarder's request id, `put` the coordinator's own.
   */
  CoordinateClaim: { readonly rid: number; readonly put: number }
  /** The forwarder's answer to a claim; `rid` is the coordinator's request id. */
  CoordinateGrant: { readonly rid: number; readonly granted: boolean }
  /** SCAN: this node's next live keys after `after` (SCAN-1). */
  ScanRequest: {
    readonly rid: number
    readonly after?: string | undefined
    readonly count: number
    readonly match?: string | undefined
  }
  /**
   * `keys`: live matching keys after the request's `after`, in order; `upTo`: this node holds no
   * other live matching key up to and including it (null: none at all after `after`).
   */
  ScanResponse: {
    readonly rid: number
    readonly keys: ReadonlyArray<string>
    readonly upTo: string | null
  }
}>
export const PeerMessage = Data.taggedEnum<PeerMessage>()

// ---------------------------------------------------------------------------------------------
// Events and commands of the storage machine

/** Opaque to the machine: the driver's handle for a client request (connection, sequence). */
export type ClientRef = number

/** ChordStabilize: the Chord stabilize timer; ChordRpc: the deadline of Chord rpc `rid`. */
export type TimerKind = "Deadline" | "Forward" | "AntiEntropy" | "ChordStabilize" | "ChordRpc"

export type Event = Data.TaggedEnum<{
  ClientRequested: {
    readonly now: number
    readonly client: ClientRef
    readonly op: ClientOp
  }
  MessageReceived: {
    readonly now: number
    readonly from: NodeId
    readonly message: PeerMessage
  }
  TimerFired: {
    readonly now: number
    readonly rid: number
    readonly kind: TimerKind
  }
  TickElapsed: { readonly now: number }
  OperatorRequested: {
    readonly now: number
    readonly client: ClientRef
    readonly op: OperatorOp
  }
}>
export const Event = Data.taggedEnum<Event>()

export type Command = Data.TaggedEnum<{
  /** `address`: where to reach `to` when the driver does not know it yet (gossip to a seed). */
  Send: {
    readonly to: NodeId
    readonly message: PeerMessage
    readonly address?: string | undefined
  }
  Reply: { readonly client: ClientRef; readonly result: ClientResult }
  /** Make `obj` the stored object of `key`. Every command after it waits until it is durable. */
  Persist: { readonly key: string; readonly obj: Obj }
  /** Store `obj` as the hint for (`owner`, `key`). Ordered like Persist. */
  PersistHint: {
    readonly owner: NodeId
    readonly key: string
    readonly obj: Obj
  }
  /** Drop the hint for (`owner`, `key`) if it still equals `obj`. Ordered like Persist. */
  DropHint: { readonly owner: NodeId; readonly key: string; readonly obj: Obj }
  /** Delete `key` if its stored object still equals `obj` (handed over to new owners). */
  Drop: { readonly key: string; readonly obj: Obj }
  /** This node has been removed from the cluster (it left, or an operator removed it). */
  Removed: {}
  /** Deliver TimerFired{rid, kind} at time `at` (or later). Timers are never cancelled. */
  SetTimer: {
    readonly rid: number
    readonly kind: TimerKind
    readonly at: number
  }
}>
export const Command = Data.taggedEnum<Command>()

/** A hinted copy held for a preferred replica that was down. */
export interface Hint {
  readonly owner: NodeId
  readonly key: string
  readonly obj: Obj
}

/** The machine's read-only view of the local store (values and hints). */
export interface StoreView {
  readonly get: (key: string) => Obj | undefined
  /** The hint held for (`owner`, `key`), if any. */
  readonly hint: (owner: NodeId, key: string) => Obj | undefined
  /** Every hint held for `key` (for reads served by a substitute). */
  readonly hintsFor: (key: string) => ReadonlyArray<Hint>
  /** Up to `limit` hints, in a stable order (for handoff). */
  readonly hints: (limit: number) => ReadonlyArray<Hint>
  /** Up to `limit` stored keys after `after` (all from the start if undefined), in key order. */
  readonly scan: (after: string | undefined, limit: number) => ReadonlyArray<readonly [string, Obj]>
}
