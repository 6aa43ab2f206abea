/**
 * Exhaustive small-scope exploration of the real storage machine (`npm run explore`): a model
 * checker whose transition relation is `Node.step` itself (impl/core/node.ts), unchanged, over a
 * few nodes, two client sessions and a handful of operations. Every interleaving the bounds allow
 * is enumerated — which in-flight message is delivered next (or never), which is duplicated,
 * which timer fires, when a node crashes (and whether the writes of its last step became durable)
 * and restarts, when a client invokes its next operation — with a visited set of state hashes,
 * and the safety predicates of spec/invariants.md are checked in every reachable state.
 *
 * The global state (`World`): per node its machine state (or "down"), the store it reads and
 * the durable store a crash falls back to, its pending timers and its clock; the multiset of
 * messages in flight; per client operation its status, what was complete when it was invoked,
 * its result and the dots it minted; the budgets of faults left.
 *
 * What is abstracted, and why no behaviour is lost by it (docs/verification.md, "Exhaustive
 * small-scope exploration"):
 *  - Loss needs no transition: a message may stay in flight for ever, and every predicate is
 *    checked on every prefix, so "lost" is "not delivered yet". Loss is unbounded.
 *  - Time: every node has its own clock, which moves only when one of its timers fires (to the
 *    timer's time); a node's timers fire in deadline order, any node's earliest timer may fire
 *    at any moment (clocks are unrelated across nodes: a paused or slow node is one whose clock
 *    lags), each firing costs one from a budget. Messages and client requests are stepped at the
 *    receiver's clock.
 *  - No TickElapsed at all: no heartbeats, gossip, anti-entropy, hinted handoff, rebalancing or
 *    reaper. The failure detector therefore judges by its boot-time seed only: a peer is
 *    believed up until about 4.6 s of the observer's clock have passed (every heartbeat lost).
 *    A restart is followed at once by one gossip exchange with a peer that is up (its digest,
 *    then the entries the restarted node asks for), which confirms the store and catches the
 *    view up (node.ts `serving`); with no peer up the restarted node answers no reads and
 *    coordinates nothing, and still takes writes and repairs as a replica.
 *  - Durability: the executor's rule (impl/core/executor.ts: sends and replies wait behind every
 *    earlier store write until it is durable) runs on plain data. A write becomes durable right
 *    after the step that issued it, or the node crashes right then with none, some or all of the
 *    step's writes durable: a later durability only delays held sends, which the network may
 *    delay anyway, and a later crash commutes back to that point (nothing else reads a node).
 *    Likewise a node restarts only as part of its next step.
 *
 * State hashing: a canonical serialization (maps and sets sorted) of each node's machine state
 * without its configuration (static; its generation is kept), rings (derived from membership),
 * counters (`stats`: never read by the request path), `now` (overwritten by every step before
 * use) and Merkle trees (none are built without anti-entropy); plus both stores, timers, clock;
 * the sorted multiset of messages, less those whose delivery can change nothing (`isDead`); the
 * clients' operations. Budgets are kept beside the hash: a state reached again with no more of
 * any budget than before is not explored again.
 */
import { ConnectionRefused } from "../core/failure.ts"
import { createHash } from "node:crypto"
import type { Outbound, Ready, StoreWrite } from "../core/executor.ts"
import type { NodeId } from "../core/ids.ts"
import { NodeId as mkNodeId } from "../core/ids.ts"
import * as Membership from "../core/membership.ts"
import {
  type ClientOp,
  ClientResult,
  type Event,
  type PeerMessage,
  type TimerKind,
} from "../core/messages.ts"
import * as Node from "../core/node.ts"
import * as Ring from "../core/ring.ts"
import * as Version from "../core/version.ts"
import { MemoryStore } from "../sim/memory-store.ts"

// ---------------------------------------------------------------------------------------------
// Scopes

export type OpKind = "SET" | "GET" | "DEL"

/** One client operation: what, on which key, entering the cluster at node index `at`. */
export interface OpSpec {
  readonly kind: OpKind
  readonly key: string
  readonly at: number
}

export interface Scope {
  readonly name: string
  readonly nodes: number
  /** Overrides of the machine's defaults, as every node is configured. */
  readonly node: Partial<Omit<Node.Config, "self" | "members" | "generation" | "savedMembers">>
  /** The quorums the checker assumes (a broken configuration may run with others). */
  readonly assume: { readonly n: number; readonly r: number; readonly w: number }
  /** Per client, its operations in session order (each waits for the one before). */
  readonly clients: ReadonlyArray<ReadonlyArray<OpSpec>>
  readonly crashes: number
  readonly duplicates: number
  /**
   * Timer firings (request deadlines, a forwarder's Forward timer), across all nodes. A timer
   * that may not fire simply has not fired yet: the exploration is cut there, never made up.
   */
  readonly timers: number
  /** Stop after expanding this many states (the report says when the budget was hit). */
  readonly maxStates: number
  /** Check CAUSAL-4 (strict quorums only: sloppy quorums give read-your-writes up). */
  readonly readYourWrites: boolean
  /**
   * Check CAUSAL-3 on every read: a value superseded by a write acknowledged before the read
   * began is never returned (strict quorums only, like CAUSAL-4).
   */
  readonly noSuperseded: boolean
}

const common = {
  nodes: 3,
  node: { mode: "cp" as const, n: 3, r: 2, w: 2 },
  assume: { n: 3, r: 2, w: 2 },
  crashes: 0,
  duplicates: 0,
  timers: 0,
  readYourWrites: true,
  noSuperseded: true,
  maxStates: 2_000_000,
}

/** c0 writes k then reads it elsewhere; c1 deletes k then reads it at a third node. */
const twoByTwo: Scope["clients"] = [
  [
    { kind: "SET", key: "k", at: 0 },
    { kind: "GET", key: "k", at: 1 },
  ],
  [
    { kind: "DEL", key: "k", at: 1 },
    { kind: "GET", key: "k", at: 2 },
  ],
]

/** The same without c1's read: small enough to combine with one fault in CI. */
const three: Scope["clients"] = [twoByTwo[0]!, [twoByTwo[1]![0]!]]

/**
 * CAUSAL-8 in the small: tombstones have no grace (`tombstoneGraceMs` 0), so a read that hears
 * every replica holding the same tombstone purges it at once (KV-12), while CAUSAL-3 and CAUSAL-6
 * are judged as everywhere. No reaper runs (no ticks), so purges happen here, reclamations not.
 */
export const purging: Scope = {
  ...common,
  name: "2+1 operations, loss and reordering, purges (no tombstone grace)",
  node: { ...common.node, tombstoneGraceMs: 0 },
  clients: three,
}

/**
 * The CI configuration (`npm run explore`): 3 nodes, N=3 R=2 W=2, strict quorums, one key, every
 * message possibly lost, delayed or reordered. Five exhaustive explorations: 2 clients × 2
 * operations with no other fault, then 2 clients × (2 + 1) operations with each fault class in
 * turn — one crash and its restart, one duplicated message, one timer firing — and with purges
 * (no tombstone grace). (Combining them multiplies the states: that is deep mode.)
 */
export const small: ReadonlyArray<Scope> = [
  { ...common, name: "2×2 operations, loss and reordering", clients: twoByTwo },
  { ...common, name: "2+1 operations, a crash", clients: three, crashes: 1 },
  { ...common, name: "2+1 operations, a duplicate", clients: three, duplicates: 1 },
  { ...common, name: "2+1 operations, a timer", clients: three, timers: 1 },
  purging,
]

/** Four nodes: a write entering at a node outside the key's preference list is forwarded. */
const forwarding: Scope["clients"] = [
  [
    { kind: "SET", key: "k", at: 1 },
    { kind: "GET", key: "k", at: 0 },
  ],
  [
    { kind: "SET", key: "k", at: 3 },
    { kind: "DEL", key: "k", at: 1 },
  ],
]

/**
 * A negative control for CAUSAL-7: every key in a last-write-wins namespace (the machine's own
 * `lww` policy in place of sibling sync): of two concurrent writes the later by timestamp wins,
 * so an acknowledged write can vanish, superseded by no write that saw it (CAUSAL-1).
 */
export const lastWriteWins = (scope: Scope): Scope => ({
  ...scope,
  name: `${scope.name}, last-write-wins merge (every key in an lww namespace)`,
  node: { ...scope.node, namespaces: [{ prefix: "", policy: "lww" }] },
})

/**
 * Deep mode (`npm run explore -- --config large`), each capped by a state budget: the CI
 * workload of 2 clients × 2 operations with every fault at once (a crash, a duplicate, a timer
 * firing); and 4 nodes, where writes entering at n1 (not a replica of k) are forwarded and run
 * only where the forwarder grants them (KV-9), with a crash, two duplicates and three timer
 * firings — the forward timeout is 5 s, past the 4.6 s after which an unheard replica is judged
 * down, so one Forward firing may fail over to the next replica while the first still runs.
 */
export const large: ReadonlyArray<Scope> = [
  {
    ...common,
    name: "2×2 operations, a crash, a duplicate, a timer",
    clients: twoByTwo,
    crashes: 1,
    duplicates: 1,
    timers: 1,
    maxStates: 10_000_000,
  },
  {
    ...common,
    name: "4 nodes, forwarded writes, a crash, 2 duplicates, 3 timers",
    nodes: 4,
    node: { ...common.node, forwardTimeoutMs: 5000 },
    clients: forwarding,
    crashes: 1,
    duplicates: 2,
    timers: 3,
    maxStates: 10_000_000,
  },
]

export const scopes: Readonly<Record<string, ReadonlyArray<Scope>>> = { small, large }

const plural = (n: number, what: string): string =>
  n === 0
    ? `no ${what}${what.endsWith("h") ? "es" : "s"}`
    : `${n === 1 ? "one" : `at most ${n}`} ${what}${n > 1 ? (what.endsWith("h") ? "es" : "s") : ""}`

/** The scope in a few lines (for the report). */
export const describeScope = (scope: Scope): Array<string> => {
  const c = { ...Node.defaults, ...scope.node }
  const ops = scope.clients.map(
    (ops, i) =>
      `c${i} [${ops
        .map(
          (o, j) =>
            `${o.kind === "SET" ? `SET ${o.key}=c${i}v${j}` : `${o.kind} ${o.key}`} at n${o.at}`,
        )
        .join(", ")}]`,
  )
  const a = scope.assume
  return [
    `${scope.nodes} nodes, machine configured N=${c.n} R=${c.r} W=${c.w} (${c.mode}); ` +
      `checker assumes N=${a.n} R=${a.r} W=${a.w}`,
    `${scope.clients.length} clients: ${ops.join("; ")}`,
    `faults: every message may be lost, delayed or reordered; ${plural(scope.crashes, "crash")}` +
      `${scope.crashes > 0 ? " (of any node, at any point; restarted at any later point, or never)" : ""}, ` +
      `${plural(scope.duplicates, "duplicated message")}, ` +
      `${plural(scope.timers, "timer firing")}; no ticks (no heartbeats, gossip, anti-entropy, handoff, reaper)`,
  ]
}

/**
 * The test-only negative control: the nodes run with R=1 while the checker still assumes R=2,
 * so R+W = N and a read quorum need not meet the last write quorum. Nothing in impl/core changes:
 * only the configuration handed to `Node.init`.
 */
export const brokenQuorum = (scope: Scope): Scope => ({
  ...scope,
  name: `${scope.name}, broken quorum (nodes run R=1, checker assumes R=${scope.assume.r})`,
  node: { ...scope.node, r: 1 },
})

/**
 * A second negative control, for KV-9: the machine's own test-only switch `unsafeFailover` (the
 * coordinator of a forwarded write runs it without its forwarder's grant). With forwarding (the
 * large configuration's 4-node scope) a duplicated or failed-over forward then mints twice.
 */
export const brokenClaims = (scope: Scope): Scope => ({
  ...scope,
  name: `${scope.name}, broken claims (unsafeFailover: forwarded writes run without a grant)`,
  node: { ...scope.node, unsafeFailover: true },
})

// ---------------------------------------------------------------------------------------------
// The global state

interface Timer {
  readonly rid: number
  readonly kind: TimerKind
  readonly at: number
}

/** A store write not yet durable, and the sends and replies the executor holds behind it. */
interface Segment {
  readonly write: StoreWrite
  readonly held: ReadonlyArray<Outbound>
}

interface Slot {
  readonly index: number
  readonly id: NodeId
  readonly clock: number
  readonly generation: number
  /** undefined: crashed. */
  readonly machine: Node.State | undefined
  /** What the machine reads: every write issued, durable or not. */
  readonly visible: MemoryStore
  /** What survives a crash. */
  readonly durable: MemoryStore
  readonly segments: ReadonlyArray<Segment>
  /** Live timers, by deadline. */
  readonly timers: ReadonlyArray<Timer>
  /** The membership view kept across a crash (the driver persists it). */
  readonly savedMembers: ReadonlyArray<Membership.Entry> | undefined
  /** Booted and not stepped since. */
  readonly fresh: boolean
  readonly digest: string
}

interface Msg {
  readonly from: NodeId
  readonly to: NodeId
  readonly message: PeerMessage
  readonly sig: string
}

type Status = "idle" | "pending" | "done" | "lost"

interface OpState {
  readonly status: Status
  /** Bitmask of the operations complete (at their clients) when this one was invoked. */
  readonly doneAtInvoke: number
  readonly result: ClientResult | undefined
  /** Dots this operation minted ("actor:counter"); KV-9 allows one. */
  readonly dots: ReadonlyArray<string>
  /** Dots of other operations its event superseded (its context covered them). */
  readonly covered: ReadonlyArray<string>
}

interface Budget {
  readonly crashes: number
  readonly duplicates: number
  readonly timers: number
}

export interface World {
  readonly slots: ReadonlyArray<Slot>
  /** In-flight messages, a multiset sorted by signature. */
  readonly net: ReadonlyArray<Msg>
  readonly ops: ReadonlyArray<OpState>
  readonly left: Budget
  /** "node:rid" of a pending Put or Forward -> the client operation it serves. */
  readonly origins: ReadonlyMap<string, number>
}

/** A client operation with its identity: op id = index in the flattened workload. */
interface OpInfo {
  readonly id: number
  readonly client: number
  readonly index: number
  readonly spec: OpSpec
  /** The value a SET writes (unique per operation), null for DEL, undefined for GET. */
  readonly value: string | null | undefined
}

export interface Violation {
  /** The spec ID the predicate checks (or MACHINE: Node.step threw). */
  readonly id: string
  readonly message: string
}

// ---------------------------------------------------------------------------------------------
// Canonical serialization and hashing

/** A deterministic serialization: object keys, map entries and set members sorted. */
export const canon = (x: unknown): string => serialize(x, canon)

/**
 * `canon`, remembering the serialization of each key's object (Version.Obj, an immutable value
 * that states and messages share) by identity. Only for hashing states; `paranoid` uses the
 * uncached `canon` to catch a change.
 */
const hashCanon = (x: unknown): string => {
  if (typeof x !== "object" || x === null || !Array.isArray((x as Version.Obj).entries)) {
    return serialize(x, hashCanon)
  }
  let c = canonCache.get(x)
  if (c === undefined) {
    c = serialize(x, hashCanon)
    canonCache.set(x, c)
  }
  return c
}

const canonCache = new WeakMap<object, string>()

const serialize = (x: unknown, inner: (y: unknown) => string): string => {
  if (x === null) return "n"
  switch (typeof x) {
    case "undefined":
      return "u"
    case "number":
      return Object.is(x, -0) ? "0" : String(x)
    case "string":
      return JSON.stringify(x)
    case "boolean":
      return x ? "t" : "f"
    case "bigint":
      return `${x}n`
    case "function":
    case "symbol":
      throw new Error(`canon: cannot serialize a ${typeof x}`)
  }
  if (Array.isArray(x)) return `[${x.map(inner).join(",")}]`
  if (x instanceof Map) {
    const entries = [...x].map(([k, v]) => `${inner(k)}:${inner(v)}`).sort()
    return `M{${entries.join(",")}}`
  }
  if (x instanceof Set) return `S{${[...x].map(inner).sort().join(",")}}`
  if (ArrayBuffer.isView(x)) return `A[${Array.from(x as unknown as ArrayLike<number>).join(",")}]`
  const o = x as Record<string, unknown>
  const keys = Object.keys(o)
    .filter((k) => o[k] !== undefined)
    .sort()
  return `{${keys.map((k) => `${JSON.stringify(k)}:${inner(o[k])}`).join(",")}}`
}

/**
 * Digests of the serializations of shared, never-mutated parts, by identity (states share what
 * a step did not change, see `cloneMachine`; a store or a map is never changed once in a state).
 */
const digestCache = new WeakMap<object, string>()

const cachedCanon = (x: unknown): string => {
  if (typeof x !== "object" || x === null) return canon(x)
  let c = digestCache.get(x)
  if (c === undefined) {
    c = digestOf(hashCanon(x))
    digestCache.set(x, c)
  }
  return c
}

/** The machine state minus what cannot change behaviour (see the header). */
const machineCanon = (s: Node.State): string => {
  let c = digestCache.get(s)
  if (c === undefined) {
    c = digestOf(machineSerialized(s))
    digestCache.set(s, c)
  }
  return c
}

const machineSerialized = (s: Node.State): string => {
  if (s.aeTrees.size > 0) throw new Error("explore: a Merkle tree was built (anti-entropy ran)")
  const parts: Array<string> = []
  for (const key of Object.keys(s).sort()) {
    if (SKIPPED.has(key)) continue
    const v = (s as unknown as Record<string, unknown>)[key]
    if (v === undefined) continue
    parts.push(`${key}:${key === "pending" ? hashCanon(v) : cachedCanon(stripped(key, v))}`)
  }
  return parts.join(",")
}

/**
 * Not part of the hash: the configuration (static; the slot keeps the generation), the rings and
 * their signature (derived from membership), counters (`stats`: never read by the request path),
 * `now` (every step overwrites it before use), Merkle trees (none without anti-entropy).
 */
const SKIPPED = new Set([
  "config",
  "ring",
  "futureRing",
  "ringSignature",
  "stats",
  "now",
  "aeTrees",
])

/** Sub-objects' own configuration, counters and derived rings, dropped from the hash likewise. */
const strippedCache = new WeakMap<object, object>()
const stripped = (key: string, v: unknown): unknown => {
  if (typeof v !== "object" || v === null) return v
  if (key !== "membership" && key !== "ae" && key !== "rebalance") return v
  let out = strippedCache.get(v)
  if (out === undefined) {
    const { config: _c, stats: _s, settledRing: _r, ...rest } = v as Record<string, unknown>
    out = rest
    strippedCache.set(v, out)
  }
  return out
}

const storeCanon = (s: MemoryStore): string => {
  let c = digestCache.get(s)
  if (c === undefined) {
    c = digestOf(`${hashCanon(s.values)}/${hashCanon(s.hintMap)}`)
    digestCache.set(s, c)
  }
  return c
}

const digestOf = (text: string): string => createHash("sha1").update(text).digest("base64")

const slotDigest = (s: Omit<Slot, "digest">): string =>
  digestOf(
    [
      s.clock,
      s.generation,
      s.machine === undefined ? `down ${cachedCanon(s.savedMembers)}` : machineCanon(s.machine),
      storeCanon(s.visible),
      s.durable === s.visible || storeCanon(s.durable) === storeCanon(s.visible)
        ? "="
        : storeCanon(s.durable),
      s.fresh,
      hashCanon(s.segments),
      hashCanon(s.timers),
    ].join("|"),
  )

const makeSlot = (s: Omit<Slot, "digest">): Slot => ({ ...s, digest: slotDigest(s) })

export const hashWorld = (w: World): string =>
  digestOf(
    [
      w.slots.map((s) => s.digest).join(","),
      w.net.map((m) => m.sig).join(","),
      hashCanon(
        w.ops.map((o) => [
          o.status,
          o.doneAtInvoke,
          o.result?._tag === "PutOk" ? o.result.dot : (o.result?._tag ?? ""),
          o.dots,
          o.covered,
        ]),
      ),
      cachedCanon(w.origins),
    ].join("|"),
  )

/** The budgets left, packed (each below 16): a state with more of each subsumes one with less. */
const packBudget = (b: Budget): number => (b.crashes << 8) | (b.duplicates << 4) | b.timers

const dominates = (a: number, b: number): boolean =>
  a >> 8 >= b >> 8 && ((a >> 4) & 15) >= ((b >> 4) & 15) && (a & 15) >= (b & 15)

/**
 * Visited states: hash (budgets left out) -> the budgets it was reached with. A state reached
 * again with no more of any budget than before is skipped: everything it can do, the earlier
 * visit could (a fault not taken is never a behaviour lost).
 */
class Visited {
  private readonly seen = new Map<string, number | Array<number>>()
  size = 0

  /** Record `(hash, budget)`; false if an earlier visit subsumes it. */
  add(hash: string, budget: number): boolean {
    const had = this.seen.get(hash)
    if (had === undefined) {
      this.seen.set(hash, budget)
      this.size++
      return true
    }
    const list = typeof had === "number" ? [had] : had
    if (list.some((b) => dominates(b, budget))) return false
    const kept = list.filter((b) => !dominates(budget, b))
    kept.push(budget)
    this.seen.set(hash, kept.length === 1 ? kept[0]! : kept)
    return true
  }
}

/**
 * Events of the request path: stepping one of them touches only the machine's pending requests,
 * counters, request ids, hybrid clock and `now` (node.ts, node-get/-put/-replica.ts). Everything
 * else (membership, detector, anti-entropy, rebalancing, reaper, hints in flight) is shared with
 * the state it came from; `paranoid` checks that sharing on every step.
 */
const REQUEST_PATH = new Set<string>([
  "ReadRequest",
  "ReadResponse",
  "WriteRequest",
  "WriteAck",
  "Repair",
  "HintedWrite",
  "CoordinateRequest",
  "CoordinateResponse",
  "CoordinateClaim",
  "CoordinateGrant",
])

const onRequestPath = (event: Event): boolean =>
  event._tag === "ClientRequested" ||
  (event._tag === "MessageReceived" && REQUEST_PATH.has(event.message._tag)) ||
  (event._tag === "TimerFired" && (event.kind === "Deadline" || event.kind === "Forward"))

/** A machine state one step may change without touching the original (states are shared). */
const cloneMachine = (s: Node.State, event: Event): Node.State => {
  if (onRequestPath(event)) return { ...s, pending: clonePending(s.pending), stats: { ...s.stats } }
  const { config, ring, futureRing, membership, rebalance, ...rest } = s
  const { config: mconfig, ...mrest } = membership
  const { settledRing, ...rrest } = rebalance
  const copy = structuredClone({ ...rest, membership: mrest, rebalance: rrest })
  return {
    ...copy,
    config,
    ring,
    futureRing,
    membership: { ...copy.membership, config: mconfig },
    rebalance: { ...copy.rebalance, settledRing },
  } as Node.State
}

/**
 * The pending requests, as a step may change them: each entry copied, and the maps in it
 * (answers heard so far); everything else in an entry is replaced, never changed in place
 * (tallies, objects, targets), so it is shared — which `paranoid` checks.
 */
const clonePending = (pending: Node.State["pending"]): Node.State["pending"] => {
  const out: Node.State["pending"] = new Map()
  for (const [rid, p] of pending) {
    const copy: Record<string, unknown> = { ...p }
    for (const k of Object.keys(copy))
      if (copy[k] instanceof Map) copy[k] = new Map(copy[k] as Map<unknown, unknown>)
    out.set(rid, copy as unknown as typeof p)
  }
  return out
}

/** Everything `cloneMachine` shares on the request path, serialized (for `paranoid`). */
const sharedCanon = (s: Node.State): string => {
  const { pending: _p, stats: _s, nextRid: _r, hlc: _h, now: _n, ring, futureRing, ...rest } = s
  // Rings are large: their identity stands for them (refreshRing replaces, never edits, them).
  const { settledRing, ...rebalance } = rest.rebalance
  return `${canon({ ...rest, rebalance })}|${ringId(ring)},${ringId(futureRing)},${ringId(settledRing)}`
}

const ringIds = new WeakMap<object, number>()
let ringCount = 0
const ringId = (r: object | undefined): number => {
  if (r === undefined) return 0
  const id = ringIds.get(r) ?? ++ringCount
  ringIds.set(r, id)
  return id
}

// ---------------------------------------------------------------------------------------------
// The executor's rule, on plain data (impl/core/executor.ts; properties/explore.test.ts checks
// the two agree)

/**
 * Run one step's Ready after the writes still held: `send` runs at once when nothing is held,
 * else waits in the last segment; each write in `persist` is issued at once and opens a
 * segment; `afterPersist` then runs at once when nothing is held (the step wrote nothing and
 * nothing was held), else waits in the last segment; timers are never held.
 */
export const execute = (
  segments: ReadonlyArray<Segment>,
  ready: Ready,
): {
  readonly segments: ReadonlyArray<Segment>
  readonly writes: ReadonlyArray<StoreWrite>
  readonly run: ReadonlyArray<Outbound>
  readonly timers: ReadonlyArray<Timer>
} => {
  const out = [...segments]
  const run: Array<Outbound> = []
  const outbound = (c: Outbound): void => {
    if (out.length === 0) run.push(c)
    else {
      const last = out[out.length - 1]!
      out[out.length - 1] = { write: last.write, held: [...last.held, c] }
    }
  }
  for (const c of ready.send) outbound(c)
  for (const c of ready.persist) out.push({ write: c, held: [] })
  for (const c of ready.afterPersist) outbound(c)
  const timers = ready.timers.map((c): Timer => ({ rid: c.rid, kind: c.kind, at: c.at }))
  return { segments: out, writes: ready.persist, run, timers }
}

/** The oldest write becomes durable: it and what was held behind it. */
export const releaseFirst = (
  segments: ReadonlyArray<Segment>,
): { readonly segments: ReadonlyArray<Segment>; readonly first: Segment } => ({
  segments: segments.slice(1),
  first: segments[0]!,
})

// ---------------------------------------------------------------------------------------------
// Descriptions (the trace)

const dotOf = (d: { readonly actor: string; readonly counter: number }): string =>
  `${d.actor}:${d.counter}`

export const describeObj = (obj: Version.Obj): string => {
  const sibs = Version.siblings(obj).map(
    (d) => `${d.sibling.value === null ? "⊥" : d.sibling.value}@${dotOf(d)}`,
  )
  const clock = Version.context(obj)
    .map(([a, n]) => `${a}:${n}`)
    .join(",")
  return sibs.length > 0 ? `{${sibs.join(" ")}}` : clock === "" ? "{}" : `{ vv=${clock}}`
}

const describeMessage = (m: PeerMessage): string => {
  const parts: Array<string> = [m._tag]
  const r = m as Record<string, unknown>
  if (typeof r.rid === "number") parts.push(`rid=${r.rid}`)
  if (typeof r.key === "string") parts.push(`key=${r.key}`)
  if (m._tag === "CoordinateRequest") parts.push(`op=${describeOp(m.op)}`)
  if (m._tag === "CoordinateClaim") parts.push(`put=${m.put}`)
  if (m._tag === "CoordinateGrant") parts.push(m.granted ? "granted" : "refused")
  if (m._tag === "CoordinateResponse") parts.push(`result=${describeResult(m.result)}`)
  if ("obj" in m && m.obj !== undefined) parts.push(`obj=${describeObj(m.obj)}`)
  return parts.join(" ")
}

const describeOp = (op: ClientOp): string =>
  op._tag === "Get"
    ? `GET ${op.key}`
    : op._tag === "Put"
      ? op.value === null
        ? `DEL ${op.key}`
        : `SET ${op.key}=${op.value}`
      : op._tag

export const describeResult: (r: ClientResult) => string = ClientResult.$match({
  Done: (r) => `Done (${r.message})`,
  GetOk: (r) => `GetOk ${describeObj(r.obj)}`,
  PutOk: (r) => `PutOk dot=${r.dot[0]}:${r.dot[1]}`,
  ScanOk: (r) => `ScanOk ${r.keys.length} keys`,
  PutSkipped: () => "PutSkipped",
  Failed: (r) => `Failed ${r.error._tag} (${r.error.message})`,
})

// ---------------------------------------------------------------------------------------------
// The explorer

export interface Transition {
  /** What happened, one line ("deliver n0→n1 WriteRequest rid=… key=k"), made on demand. */
  readonly label: () => string
  /** Consequences worth reading: replies, releases, mints. */
  readonly notes: ReadonlyArray<string>
  readonly world: World
  readonly violation: Violation | undefined
}

const putOk = (r: ClientResult | undefined): r is Extract<ClientResult, { _tag: "PutOk" }> =>
  r?._tag === "PutOk"

const clockOfDot = (dot: string): Version.Clock => {
  const i = dot.lastIndexOf(":")
  return [[dot.slice(0, i), Number(dot.slice(i + 1))]]
}

const covers = (obj: Version.Obj, dot: string): boolean =>
  Version.descends(Version.context(obj), clockOfDot(dot))

const holds = (obj: Version.Obj, dot: string): boolean =>
  Version.siblings(obj).some((d) => dotOf(d) === dot)

/** The mutable successor being built from a world by one transition. */
class Next {
  slots: Array<Slot>
  net: Array<Msg>
  ops: Array<OpState>
  left: Budget
  origins: Map<string, number>
  readonly notes: Array<string> = []
  violation: Violation | undefined
  /** The node this transition stepped, if any. */
  stepped: number | undefined
  /**
   * The step released nothing before its first store write and was not a client request: a
   * crash before that write is durable is then the crash right after the node's previous step,
   * with this step's message never delivered — explored there already.
   */
  silentUntilWrite = false

  constructor(
    readonly explorer: Explorer,
    w: World,
  ) {
    this.slots = [...w.slots]
    this.net = [...w.net]
    this.ops = [...w.ops]
    this.left = w.left
    this.origins = w.origins as Map<string, number>
  }

  fail(id: string, message: string): void {
    this.violation ??= { id, message }
  }

  send(from: NodeId, to: NodeId, message: PeerMessage): void {
    const sig = digestOf(`${from}>${to}:${hashCanon(message)}`)
    let i = this.net.length
    while (i > 0 && this.net[i - 1]!.sig > sig) i--
    this.net.splice(i, 0, { from, to, message, sig })
  }

  setOrigin(node: NodeId, rid: number, op: number): void {
    if (this.origins.get(`${node}:${rid}`) === op) return
    const m = new Map(this.origins)
    m.set(`${node}:${rid}`, op)
    this.origins = m
  }

  run(from: Slot, c: Outbound): void {
    switch (c._tag) {
      case "Send":
        this.send(from.id, c.to, c.message)
        return
      case "Reply":
        this.complete(c.client, c.result)
        return
      case "Removed":
        this.fail("MACHINE", `${from.id} emitted Removed (no membership changes are explored)`)
        return
    }
  }

  /** A client hears the result of operation `id`. */
  complete(id: number, result: ClientResult): void {
    const info = this.explorer.info[id]!
    const o = this.ops[id]!
    if (o.status !== "pending") return
    this.ops[id] = { ...o, status: "done", result }
    this.notes.push(
      `client c${info.client} ${this.explorer.opText(info)} → ${describeResult(result)}`,
    )
    const ex = this.explorer
    if (result._tag === "GetOk") {
      // CAUSAL-2: every value read was written by an invoked write of the key.
      for (const v of Version.values(result.obj)) {
        if (!ex.written(this.ops, info.spec.key).has(v)) {
          this.fail("CAUSAL-2", `${ex.opText(info)} returned ${v}, which no invoked SET wrote`)
        }
      }
      // CAUSAL-4 (strict quorums): a read sees every write acknowledged before it began.
      if (ex.scope.readYourWrites) {
        for (const a of ex.info) {
          const s = this.ops[a.id]!
          if (a.spec.key !== info.spec.key || !putOk(s.result)) continue
          if ((o.doneAtInvoke & (1 << a.id)) === 0) continue
          const dot = `${s.result.dot[0]}:${s.result.dot[1]}`
          if (!covers(result.obj, dot)) {
            const whose = a.client === info.client ? "its own session's" : `c${a.client}'s`
            this.fail(
              "CAUSAL-4",
              `${ex.opText(info)} (c${info.client}) began after ${whose} ${ex.opText(a)} was ` +
                `acknowledged (dot ${dot}) and returned ${describeObj(result.obj)}, which neither ` +
                `holds it nor supersedes it (R+W>N promises it)`,
            )
          }
        }
      }
      // CAUSAL-3 (strict quorums): a value that a write acknowledged before the read began
      // superseded (its event covered the value's) is not returned.
      if (ex.scope.noSuperseded) {
        for (const p of ex.info) {
          const s = this.ops[p.id]!
          if (p.spec.key !== info.spec.key || !putOk(s.result) || s.covered.length === 0) continue
          if ((o.doneAtInvoke & (1 << p.id)) === 0) continue
          ex.checked.superseded++
          const back = s.covered.filter((d) => holds(result.obj, d))
          if (back.length > 0) {
            this.fail(
              "CAUSAL-3",
              `${ex.opText(info)} (c${info.client}) began after ${ex.opText(p)} was acknowledged, ` +
                `which superseded ${back.join(", ")}, and returned ${describeObj(result.obj)}`,
            )
          }
        }
      }
      // CAUSAL-5: no two siblings of a read come from writes one of which saw the other.
      const sibs = Version.siblings(result.obj).map(dotOf)
      if (sibs.length >= 2) {
        ex.checked.siblings++
        for (const w of ex.info) {
          const s = this.ops[w.id]!
          if (!s.dots.some((d) => sibs.includes(d))) continue
          const saw = s.covered.filter((d) => sibs.includes(d))
          if (saw.length > 0) {
            this.fail(
              "CAUSAL-5",
              `${ex.opText(info)} returned ${describeObj(result.obj)}: its sibling of ` +
                `${ex.opText(w)} saw (superseded) its siblings ${saw.join(", ")}`,
            )
          }
        }
      }
    }
    if (result._tag === "PutOk") {
      const dot = `${result.dot[0]}:${result.dot[1]}`
      if (!this.ops[id]!.dots.includes(dot)) {
        this.fail(
          "KV-9",
          `${ex.opText(info)} was acknowledged with dot ${dot}, never minted for it`,
        )
      }
      this.checkLate(id)
    }
  }

  /**
   * KV-9, second half: no write's event may supersede (its context cover) an acknowledged write
   * that was invoked after the superseding write had completed at its client.
   */
  checkLate(a: number): void {
    const sa = this.ops[a]!
    if (!putOk(sa.result)) return
    const dot = `${sa.result.dot[0]}:${sa.result.dot[1]}`
    for (const p of this.explorer.info) {
      const sp = this.ops[p.id]!
      if (p.id === a || !sp.covered.includes(dot)) continue
      if ((sa.doneAtInvoke & (1 << p.id)) === 0) continue
      const ex = this.explorer
      this.fail(
        "KV-9",
        `${ex.opText(p)} completed before ${ex.opText(ex.info[a]!)} was invoked, yet its event ` +
          `(minted late) supersedes that acknowledged write (dot ${dot})`,
      )
    }
  }

  /** Step one node's machine with `event` and run its commands through the executor's rule. */
  step(index: number, event: Event): void {
    this.stepped = index
    const slot = this.slots[index]!
    const before = slot.machine!
    const machine = cloneMachine(before, event)
    const paranoid = this.explorer.paranoid && onRequestPath(event)
    const shared = paranoid ? sharedCanon(before) : ""
    const pendingBefore = paranoid ? canon(before.pending) : ""
    let ready: Ready
    try {
      // The store is read-only during a step (writes leave as commands), so it is shared.
      ready = Node.step(machine, event, slot.visible)[1]
    } catch (e) {
      this.fail("MACHINE", `${slot.id} step(${event._tag}) threw: ${String(e)}`)
      return
    }
    if (
      paranoid &&
      (sharedCanon(before) !== shared ||
        sharedCanon(machine) !== shared ||
        canon(before.pending) !== pendingBefore)
    ) {
      throw new Error(`explore: ${event._tag} changed a part of the machine state thought shared`)
    }
    const ex = this.explorer
    // Which client operation this step serves, if any (to attribute pending requests and mints).
    let op: number | undefined
    if (event._tag === "ClientRequested") op = event.client
    else if (event._tag === "MessageReceived") {
      const m = event.message
      if (m._tag === "ReadResponse" || m._tag === "CoordinateGrant") {
        op = this.origins.get(`${slot.id}:${m.rid}`)
      } else if (m._tag === "CoordinateRequest") {
        op = this.origins.get(`${event.from}:${m.rid}`)
      }
    } else if (event._tag === "TimerFired") op = this.origins.get(`${slot.id}:${event.rid}`)
    if (op !== undefined) {
      for (const [rid, p] of machine.pending) {
        if (rid >= before.nextRid && (p._tag === "Put" || p._tag === "Forward")) {
          this.setOrigin(slot.id, rid, op)
        }
      }
    }
    // Mints: a dot of this node's own that the object it held did not cover.
    for (const c of ready.persist) {
      if (c._tag !== "Persist" && c._tag !== "PersistHint") continue
      const held = slot.visible.get(c.key) ?? Version.empty
      // CAUSAL-2 on stores: nothing holds a value no invoked SET wrote.
      for (const v of Version.values(c.obj)) {
        if (!ex.written(this.ops, c.key).has(v)) {
          this.fail("CAUSAL-2", `${slot.id} stores ${c.key}=${v}, which no invoked SET wrote`)
        }
      }
      if (c._tag !== "Persist") continue
      for (const d of Version.siblings(c.obj)) {
        if (
          d.actor !== slot.id ||
          Version.descends(Version.context(held), [[d.actor, d.counter]])
        ) {
          continue
        }
        this.mint(slot, op, c.key, dotOf(d), c.obj)
      }
    }
    const purges = (c: Outbound) => c._tag === "Send" && c.message._tag === "Purge"
    if (ready.send.some(purges) || ready.afterPersist.some(purges)) ex.checked.purges++
    const ran = execute(slot.segments, ready)
    let visible = slot.visible
    if (ran.writes.length > 0) {
      visible = visible.clone()
      for (const w of ran.writes) visible.apply(w)
    }
    const timers = [...slot.timers, ...ran.timers]
    this.slots[index] = this.withTimers(
      { ...slot, machine, visible, segments: ran.segments, fresh: false },
      timers,
    )
    this.silentUntilWrite = ran.run.length === 0 && event._tag !== "ClientRequested"
    for (const c of ran.run) this.run(this.slots[index]!, c)
  }

  mint(slot: Slot, op: number | undefined, key: string, dot: string, obj: Version.Obj): void {
    const ex = this.explorer
    if (op === undefined) {
      this.fail("KV-9", `${slot.id} minted ${dot} for ${key} outside any client write`)
      return
    }
    const o = this.ops[op]!
    const info = ex.info[op]!
    const covered = ex.info
      .filter((a) => a.id !== op && a.spec.key === key)
      .flatMap((a) => this.ops[a.id]!.dots)
      .filter((d) => covers(obj, d) && !holds(obj, d))
    this.ops[op] = {
      ...o,
      dots: [...o.dots, dot],
      covered: [...new Set([...o.covered, ...covered])],
    }
    this.notes.push(`${slot.id} mints ${dot} for ${ex.opText(info)}`)
    if (o.dots.length > 0) {
      this.fail(
        "KV-9",
        `${ex.opText(info)} took effect twice: minted ${o.dots.join(", ")} and now ${dot}`,
      )
    }
    for (const a of ex.info)
      if (this.ops[a.id]!.dots.some((d) => covered.includes(d))) this.checkLate(a.id)
  }

  /** Keep the timers that can still do something (timers are never cancelled). */
  withTimers(s: Omit<Slot, "digest" | "timers">, timers: ReadonlyArray<Timer>): Slot {
    const live = timers
      .filter((t) => {
        if (s.machine === undefined) return false
        if (t.kind === "Deadline" || t.kind === "Forward") return s.machine.pending.has(t.rid)
        return true
      })
      .sort((a, b) => a.at - b.at || a.rid - b.rid || (a.kind < b.kind ? -1 : 1))
    return makeSlot({ ...s, timers: live })
  }

  /** The oldest held write of node `index` becomes durable; what waited behind it runs. */
  durable(index: number): void {
    const slot = this.slots[index]!
    const { segments, first } = releaseFirst(slot.segments)
    const durable = segments.length === 0 ? slot.visible : slot.durable.clone()
    if (segments.length > 0) durable.apply(first.write)
    this.slots[index] = makeSlot({ ...slot, segments, durable })
    for (const c of first.held) this.run(this.slots[index]!, c)
  }

  /** Every write issued is durable; what was held behind them runs. */
  settle(): void {
    for (let i = 0; i < this.slots.length; i++) {
      while (this.slots[i]!.segments.length > 0) this.durable(i)
    }
  }

  /**
   * Crash node `index`: its machine, timers, writes not yet durable and what was held behind
   * them are gone; its durable store and its saved membership view stay for the restart.
   */
  crash(index: number): void {
    const slot = this.slots[index]!
    this.left = { ...this.left, crashes: this.left.crashes - 1 }
    this.slots[index] = makeSlot({
      ...slot,
      machine: undefined,
      visible: slot.durable,
      segments: [],
      timers: [],
      savedMembers: [...Membership.view(slot.machine!.membership).values()],
      fresh: false,
    })
    // A mint whose write was lost took no effect: it never left the node (KV-1).
    this.ops = this.ops.map((o, id) => {
      const key = this.explorer.info[id]!.spec.key
      const gone = o.dots.filter(
        (d) => d.startsWith(`${slot.id}:`) && !covers(slot.durable.get(key) ?? Version.empty, d),
      )
      if (gone.length === 0) return o
      this.notes.push(`the mint of ${gone.join(", ")} is lost with the write`)
      const dots = o.dots.filter((d) => !gone.includes(d))
      return { ...o, dots, covered: dots.length === 0 ? [] : o.covered }
    })
    // Its clients' connections reset: the outcome of what they asked is unknown (an operation
    // that never completes, concurrent with everything after it).
    for (const i of this.explorer.info) {
      if (i.spec.at === index && this.ops[i.id]!.status === "pending") {
        this.ops[i.id] = { ...this.ops[i.id]!, status: "lost" }
        this.notes.push(
          `client c${i.client} ${this.explorer.opText(i)} → connection reset (unknown)`,
        )
      }
    }
  }

  /** An independent copy of this successor, to branch on what happens to its writes. */
  fork(): Next {
    const c = new Next(this.explorer, this.freeze())
    c.notes.push(...this.notes)
    c.violation = this.violation
    c.stepped = this.stepped
    c.silentUntilWrite = this.silentUntilWrite
    return c
  }

  freeze(): World {
    const byId = new Map(this.slots.map((x) => [x.id as string, x]))
    return {
      slots: this.slots,
      net: this.net.filter((m) => !isDead(byId, m, this.left.crashes)),
      ops: this.ops,
      left: this.left,
      origins: this.origins,
    }
  }
}

/**
 * A message whose delivery changes nothing, now or ever: an answer to a request its receiver no
 * longer holds (request ids never repeat, KV-6, so it never will again), an answer from a node
 * that already answered, a read request whose answer would be such an answer (a replica only
 * replies to a read); and, once no crash is left (a restart resets the hybrid clock), a copy of
 * an object its running receiver already holds, stamped no later than its clock, whose
 * acknowledgement nobody waits for. Dropping it merges states that differ only by it.
 */
const isDead = (slots: ReadonlyMap<string, Slot>, m: Msg, crashesLeft: number): boolean => {
  const pendingAt = (node: NodeId, rid: number) => slots.get(node)?.machine?.pending.get(rid)
  const answered = (node: NodeId, rid: number, from: NodeId): boolean => {
    const p = pendingAt(node, rid)
    if (p === undefined) return true
    if (p._tag === "Get") return p.responses.has(from) || !p.tally.asked.includes(from)
    if (p._tag === "Put") return p.phase !== "Reading" || p.responses.has(from)
    return false
  }
  const msg = m.message
  switch (msg._tag) {
    case "ReadResponse":
      return answered(m.to, msg.rid, m.from)
    case "ReadRequest":
      return answered(m.from, msg.rid, m.to)
    case "WriteAck": {
      const p = pendingAt(m.to, msg.rid)
      return (
        p === undefined ||
        (p._tag === "Put" && p.phase === "Writing" && p.tally.answered.includes(m.from))
      )
    }
    case "CoordinateGrant":
      return pendingAt(m.to, msg.rid) === undefined
    case "WriteRequest":
    case "Repair": {
      const to = slots.get(m.to)
      const x = to?.machine
      if (crashesLeft > 0 || x === undefined || x.config.namespaces.length > 0) return false
      const local = to!.visible.get(msg.key) ?? Version.empty
      if (!Version.equals(Version.sync(local, msg.obj), local)) return false
      if (Version.siblings(msg.obj).some((d) => d.sibling.ts > x.hlc)) return false
      if (msg._tag === "Repair") return true
      const p = pendingAt(m.from, msg.rid)
      return p === undefined || (p._tag === "Put" && p.tally.answered.includes(m.to))
    }
    case "CoordinateResponse": {
      const p = pendingAt(m.to, msg.rid)
      return (
        p === undefined ||
        (p._tag === "Forward" && p.granted !== undefined && p.granted.node !== m.from)
      )
    }
    default:
      return false
  }
}

export interface Report {
  readonly scope: string
  /** States expanded (their successors computed). */
  readonly explored: number
  /** Distinct states reached (hashes in the visited set). */
  readonly distinct: number
  readonly transitions: number
  /** States in which every client has finished (where the final CAUSAL-1 check runs). */
  readonly terminal: number
  readonly maxDepth: number
  /** Wall-clock time, and the CPU time this process spent (the machine may be shared). */
  readonly ms: number
  readonly cpuMs: number
  readonly budgetHit: boolean
  /** How often each predicate had something to judge (see `Explorer.checked`). */
  readonly checked: Readonly<Checked>
  readonly violation:
    | { readonly id: string; readonly message: string; readonly trace: ReadonlyArray<string> }
    | undefined
}

/**
 * What the predicates judged, so that an exploration cannot pass by looking at nothing:
 * superseded: (read, acknowledged superseding write before it) pairs judged by CAUSAL-3;
 * siblings: reads with two or more siblings judged by CAUSAL-5; quiescent: states with every
 * message delivered, nothing pending, nobody crashed, where CAUSAL-6 compared the replicas;
 * purges: reads that purged a tombstone, after which CAUSAL-3 and CAUSAL-6 still hold (CAUSAL-8).
 */
export interface Checked {
  superseded: number
  siblings: number
  quiescent: number
  /** Reads that purged a tombstone (sent Purge to the replicas; with a short grace only). */
  purges: number
}

interface TraceNode {
  readonly label: () => string
  readonly notes: ReadonlyArray<string>
  readonly parent: TraceNode | undefined
}

export class Explorer {
  readonly info: ReadonlyArray<OpInfo>
  private readonly configs: Array<Omit<Node.Config, "generation" | "savedMembers">>
  private readonly writtenCache = new Map<string, Set<string>>()
  private readonly boots = new Map<string, Node.State>()

  /** Check on every step that the request path leaves the shared parts of a state alone. */
  paranoid = false

  readonly checked: Checked = { superseded: 0, siblings: 0, quiescent: 0, purges: 0 }

  constructor(readonly scope: Scope) {
    const info: Array<OpInfo> = []
    scope.clients.forEach((ops, client) => {
      ops.forEach((spec, index) => {
        const value =
          spec.kind === "SET" ? `c${client}v${index}` : spec.kind === "DEL" ? null : undefined
        info.push({ id: info.length, client, index, spec, value })
      })
    })
    if (info.length > 30) throw new Error("explore: at most 30 operations (bitmasks)")
    if (Math.max(scope.crashes, scope.duplicates, scope.timers) > 15) {
      throw new Error("explore: budgets of at most 15 each")
    }
    this.info = info
    const ids = Array.from({ length: scope.nodes }, (_, i) => mkNodeId(`n${i}`))
    this.configs = ids.map((self) => ({
      ...Node.defaults,
      ...scope.node,
      self,
      members: ids.map((id) => ({ id, weight: 1 })),
    }))
  }

  opText(i: OpInfo): string {
    const s = i.spec
    const what = s.kind === "SET" ? `SET ${s.key}=${i.value}` : `${s.kind} ${s.key}`
    return `${what} at n${s.at}`
  }

  /** Values written by the invoked SETs of `key`. */
  written(ops: ReadonlyArray<OpState>, key: string): ReadonlySet<string> {
    const invoked = this.info.filter(
      (i) => i.spec.key === key && i.spec.kind === "SET" && ops[i.id]!.status !== "idle",
    )
    const id = `${key}|${invoked.map((i) => i.id).join(",")}`
    let set = this.writtenCache.get(id)
    if (set === undefined) {
      set = new Set(invoked.map((i) => i.value as string))
      this.writtenCache.set(id, set)
    }
    return set
  }

  /**
   * Boot node `index`. A restart (`saved`) is followed at once by one gossip exchange with a
   * peer that is up (`peer`), as its next gossip round would bring it: without ticks no gossip
   * runs, and a restarted node serves nothing until a peer confirmed its store and it caught up
   * with that peer's view (node.ts `serving`). The exchange is the peer's side of it: its digest,
   * then its entries (the answer to what the restarted node asks for). What the peer would learn
   * from the restarted node is left out: no peer learns of a restart in the explorer. With no
   * peer up, the restarted node stays starting.
   */
  private boot(index: number, generation: number, clock: number, saved?: Slot, peer?: Slot): Slot {
    const config: Node.Config = {
      ...this.configs[index]!,
      generation,
      savedMembers: saved?.savedMembers,
    }
    const peerView =
      saved !== undefined && peer?.machine !== undefined
        ? Membership.view(peer.machine.membership)
        : undefined
    const digests = peerView && Membership.digests(peer!.machine!.membership)
    // A booted state is a pure function of its configuration, clock and the peer digest it
    // heard, and states are never changed in place once in a world: one boot serves every path
    // that reaches it.
    const key =
      `${index}|${generation}|${clock}|${cachedCanon(saved?.savedMembers)}|` +
      `${peer?.id}|${cachedCanon(peerView && [...peerView.values()])}`
    let machine = this.boots.get(key)
    if (machine === undefined) {
      machine = Node.init(config, clock)
      if (digests !== undefined) {
        const entries = [...peerView!.values()].filter((e) => e.id !== config.self)
        const messages: ReadonlyArray<Membership.Message> = [
          { _tag: "GossipDigest", address: peer!.id, digests },
          { _tag: "GossipAck", entries },
        ]
        for (const message of messages) {
          const event = {
            _tag: "MessageReceived" as const,
            now: clock,
            from: peer!.id,
            message: { _tag: "Gossip" as const, message },
          }
          Node.step(machine, event, new MemoryStore())
        }
      }
      this.boots.set(key, machine)
    }
    const store = saved?.durable ?? new MemoryStore()
    return makeSlot({
      index,
      id: config.self,
      clock,
      generation,
      machine,
      visible: store,
      durable: store,
      segments: [],
      timers: [],
      savedMembers: undefined,
      fresh: true,
    })
  }

  initial(): World {
    return {
      slots: Array.from({ length: this.scope.nodes }, (_, i) => this.boot(i, 1, 1000)),
      net: [],
      ops: this.info.map(() => ({
        status: "idle",
        doneAtInvoke: 0,
        result: undefined,
        dots: [],
        covered: [],
      })),
      left: {
        crashes: this.scope.crashes,
        duplicates: this.scope.duplicates,
        timers: this.scope.timers,
      },
      origins: new Map(),
    }
  }

  /**
   * Every transition enabled in `w`, with its successor.
   *
   * Crashes and restarts are placed where they can make a difference, which loses no behaviour:
   *  - a node crashes only right after one of its own steps (with none, some or all of the writes
   *    it issued durable), or before its first: a crash later than that commutes back to that
   *    point, since nothing else reads a node's state and a crashed node takes no step;
   *  - a node restarts only as part of its next step (a delivery to it, or a client request at
   *    it): a restart earlier than that commutes forward to that point likewise.
   */
  successors(w: World): Array<Transition> {
    const out: Array<Transition> = []
    const finish = (label: () => string, n: Next): void => {
      if (n.violation === undefined) this.checkState(n)
      out.push({ label, notes: n.notes, world: n.freeze(), violation: n.violation })
    }
    const emit = (label: () => string, build: (n: Next) => void): void => {
      const n = new Next(this, w)
      build(n)
      const i = n.stepped
      const crashes: Array<{ readonly c: Next; readonly lost: number; readonly k: number }> = []
      if (n.violation === undefined && i !== undefined && n.left.crashes > 0) {
        const k = n.slots[i]!.segments.length
        for (let kept = k > 0 && n.silentUntilWrite ? 1 : 0; kept <= k; kept++) {
          const c = n.fork()
          for (let x = 0; x < kept; x++) c.durable(i)
          c.crash(i)
          crashes.push({ c, lost: k - kept, k })
        }
      }
      n.settle()
      finish(label, n)
      for (const { c, lost, k } of crashes) {
        const id = c.slots[i!]!.id
        finish(
          () =>
            lost === 0
              ? `${label()}; crash ${id}`
              : `${label()}; crash ${id} before ${lost} of the step's ${k} write(s) are durable`,
          c,
        )
      }
    }
    /** Step node `index`, restarting it first if it is down. */
    const up = (n: Next, index: number): Slot => {
      const slot = n.slots[index]!
      if (slot.machine !== undefined) return slot
      const peer = n.slots.find((s) => s !== slot && s.machine !== undefined)
      n.slots[index] = this.boot(index, slot.generation + 1, slot.clock, slot, peer)
      return n.slots[index]!
    }
    const restarting = (slot: Slot): string => {
      if (slot.machine !== undefined) return ""
      const peer = w.slots.find((s) => s !== slot && s.machine !== undefined)
      const heard = peer === undefined ? "" : `, hears ${peer.id}'s gossip digest`
      return `restart ${slot.id} (generation ${slot.generation + 1}${heard}); `
    }
    // Clients invoke their next operation.
    for (let c = 0; c < this.scope.clients.length; c++) {
      const mine = this.info.filter((i) => i.client === c)
      const next = mine.find((i) => w.ops[i.id]!.status === "idle")
      if (next === undefined) continue
      if (mine.some((i) => w.ops[i.id]!.status === "pending")) continue
      let mask = 0
      w.ops.forEach((o, id) => {
        if (o.status === "done") mask |= 1 << id
      })
      const at = w.slots[next.spec.at]!
      const invoking = { ...w.ops[next.id]!, status: "pending" as const, doneAtInvoke: mask }
      if (at.machine === undefined) {
        emit(
          () => `client c${c} invokes ${this.opText(next)} (${at.id} is down)`,
          (n) => {
            n.ops[next.id] = invoking
            n.complete(next.id, {
              _tag: "Failed",
              error: new ConnectionRefused({ node: at.id }),
            })
          },
        )
      }
      emit(
        () => `${restarting(at)}client c${c} invokes ${this.opText(next)}`,
        (n) => {
          const slot = up(n, next.spec.at)
          n.ops[next.id] = invoking
          const op: ClientOp =
            next.spec.kind === "GET"
              ? { _tag: "Get", key: next.spec.key }
              : {
                  _tag: "Put",
                  key: next.spec.key,
                  value: next.value as string | null,
                  context: null,
                }
          n.step(next.spec.at, { _tag: "ClientRequested", now: slot.clock, client: next.id, op })
        },
      )
    }
    // The network: deliver any one message, or deliver it and keep a copy in flight (identical
    // copies are one choice). Loss needs no transition: any message may simply never be
    // delivered, and every predicate is checked on every prefix.
    w.net.forEach((m, i) => {
      if (i > 0 && w.net[i - 1]!.sig === m.sig) return
      const to = this.slotOf(w, m.to)
      const what = (): string => `${m.from}→${m.to} ${describeMessage(m.message)}`
      const deliver = (n: Next): void => {
        const slot = up(n, to.index)
        n.step(to.index, {
          _tag: "MessageReceived",
          now: slot.clock,
          from: m.from,
          message: m.message,
        })
      }
      emit(
        () => `${restarting(to)}deliver ${what()}`,
        (n) => {
          n.net.splice(i, 1)
          deliver(n)
        },
      )
      if (w.left.duplicates > 0) {
        emit(
          () => `${restarting(to)}duplicate ${what()} (one copy delivered, one still in flight)`,
          (n) => {
            n.left = { ...n.left, duplicates: n.left.duplicates - 1 }
            deliver(n)
          },
        )
      }
    })
    for (const slot of w.slots) {
      if (slot.machine === undefined) continue
      // Its earliest timers (all with the earliest deadline).
      const earliest = slot.timers[0]?.at
      for (const t of slot.timers) {
        if (t.at !== earliest || w.left.timers === 0) break
        const now = Math.max(slot.clock, t.at)
        emit(
          () => `fire ${slot.id} ${t.kind} rid=${t.rid} (clock ${slot.clock} → ${now})`,
          (n) => {
            n.left = { ...n.left, timers: n.left.timers - 1 }
            const s = n.slots[slot.index]!
            n.slots[slot.index] = n.withTimers(
              { ...s, clock: now },
              s.timers.filter((x) => x !== t),
            )
            n.step(slot.index, { _tag: "TimerFired", now, rid: t.rid, kind: t.kind })
          },
        )
      }
      // A crash before the node's first step (after one, the step's transition offers it).
      if (w.left.crashes > 0 && slot.fresh)
        emit(
          () => `crash ${slot.id}`,
          (n) => n.crash(slot.index),
        )
    }
    return out
  }

  private slotOf(w: World, id: NodeId): Slot {
    return w.slots.find((s) => s.id === id)!
  }

  /**
   * CAUSAL-1 in every state: an acknowledged write is covered (held, or superseded by an event
   * that saw it) by the durable stores of at least W nodes (hints count: a sloppy write is
   * acknowledged by the substitutes holding it). Then a crash at any point loses it nowhere.
   */
  private checkState(n: Next): void {
    for (const a of this.info) {
      const r = n.ops[a.id]!.result
      if (!putOk(r)) continue
      const dot = `${r.dot[0]}:${r.dot[1]}`
      let copies = 0
      for (const s of n.slots) {
        let obj = s.durable.get(a.spec.key) ?? Version.empty
        for (const h of s.durable.hintsFor(a.spec.key)) obj = Version.sync(obj, h.obj)
        if (covers(obj, dot)) copies++
      }
      if (copies < this.scope.assume.w) {
        n.fail(
          "CAUSAL-1",
          `${this.opText(a)} was acknowledged (dot ${dot}) but only ${copies} node(s) hold it ` +
            `durably, fewer than W=${this.scope.assume.w}`,
        )
      }
    }
  }

  /**
   * CAUSAL-1 once every client has finished: the join of every node's durable object of the key
   * — what a full read returns once everything still in flight is lost and the timers have fired
   * (they can only join what nodes already hold, never mint) — holds every acknowledged write, or
   * it was superseded by the event of a write that had not completed before it was invoked.
   */
  checkFinal(w: World): Violation | undefined {
    for (const a of this.info) {
      const s = w.ops[a.id]!
      if (!putOk(s.result)) continue
      const dot = `${s.result.dot[0]}:${s.result.dot[1]}`
      let merged = Version.empty
      for (const slot of w.slots) {
        merged = Version.sync(merged, slot.durable.get(a.spec.key) ?? Version.empty)
      }
      if (holds(merged, dot)) continue
      // A delete whose tombstone a read purged (every replica held it, KV-12): the clock that
      // covers it stays and no value is left, which is what the delete promised.
      if (a.value === null && covers(merged, dot) && Version.siblings(merged).length === 0) continue
      const by = this.info.filter(
        (p) => w.ops[p.id]!.covered.includes(dot) && (s.doneAtInvoke & (1 << p.id)) === 0,
      )
      if (by.length === 0) {
        return {
          id: "CAUSAL-1",
          message:
            `every client finished and the nodes hold ${a.spec.key}=${describeObj(merged)}: ` +
            `${this.opText(a)} (dot ${dot}) is gone, superseded by no later write`,
        }
      }
    }
    return undefined
  }

  /**
   * CAUSAL-6 in every quiescent state — every client finished, every message delivered (none in
   * flight: loss is only "not delivered yet"), no request pending and no write held anywhere, no
   * crash so far (a crash may lose a write a replica had not made durable, which only a later
   * full read repairs): every replica of each key holds the same object.
   */
  checkQuiescent(w: World): Violation | undefined {
    if (!this.finished(w) || w.net.length > 0 || w.left.crashes !== this.scope.crashes) {
      return undefined
    }
    for (const s of w.slots) {
      if (s.machine === undefined || s.machine.pending.size > 0 || s.segments.length > 0) {
        return undefined
      }
    }
    this.checked.quiescent++
    for (const key of new Set(this.info.map((i) => i.spec.key))) {
      const ring = w.slots[0]!.machine!.ring
      const replicas = Ring.preferenceList(ring, key, this.scope.assume.n)
      const objs = replicas.map((id) => this.slotOf(w, id).durable.get(key) ?? Version.empty)
      if (objs.every((o) => Version.equals(o, objs[0]!))) continue
      return {
        id: "CAUSAL-6",
        message:
          `every message was delivered and nothing is pending, yet the replicas of ${key} ` +
          `differ: ${replicas.map((id, i) => `${id} ${describeObj(objs[i]!)}`).join(", ")}`,
      }
    }
    return undefined
  }

  /** Every client has finished (each operation completed, or lost with its connection). */
  finished(w: World): boolean {
    return w.ops.every((o) => o.status === "done" || o.status === "lost")
  }

  /** Explore every state reachable within the scope's bounds, depth first or breadth first. */
  run(
    options: {
      readonly strategy?: "dfs" | "bfs"
      readonly progress?: (r: Omit<Report, "violation">) => void
    } = {},
  ): Report {
    const started = performance.now()
    const cpu = process.cpuUsage()
    const bfs = options.strategy === "bfs"
    const initial = this.initial()
    const visited = new Visited()
    visited.add(hashWorld(initial), packBudget(initial.left))
    type Frame = { world: World; depth: number; trace: TraceNode | undefined }
    const frontier: Array<Frame> = [{ world: initial, depth: 0, trace: undefined }]
    let head = 0
    let explored = 0
    let transitions = 0
    let terminal = 0
    let maxDepth = 0
    let budgetHit = false
    const report = (violation?: Report["violation"]): Report => ({
      scope: this.scope.name,
      explored,
      distinct: visited.size,
      transitions,
      terminal,
      maxDepth,
      ms: Math.round(performance.now() - started),
      cpuMs: Math.round(process.cpuUsage(cpu).user / 1000),
      budgetHit,
      checked: { ...this.checked },
      violation,
    })
    const traceOf = (t: TraceNode | undefined): Array<string> => {
      const lines: Array<string> = []
      for (let x = t; x !== undefined; x = x.parent) {
        lines.unshift(...[x.label(), ...x.notes.map((s) => `    ↳ ${s}`)])
      }
      return lines
    }
    while (bfs ? head < frontier.length : frontier.length > 0) {
      if (explored >= this.scope.maxStates) {
        budgetHit = true
        break
      }
      const frame = bfs ? frontier[head++]! : frontier.pop()!
      if (bfs && head > 4096 && head * 2 > frontier.length) {
        frontier.splice(0, head)
        head = 0
      }
      explored++
      if (options.progress !== undefined && explored % 100_000 === 0) options.progress(report())
      const next = this.successors(frame.world)
      if (this.finished(frame.world)) {
        terminal++
        const v = this.checkFinal(frame.world) ?? this.checkQuiescent(frame.world)
        if (v !== undefined) return report({ ...v, trace: traceOf(frame.trace) })
      }
      // Depth first, the first transition listed is explored first (faults come last).
      for (const t of bfs ? next : next.reverse()) {
        transitions++
        const trace: TraceNode = { label: t.label, notes: t.notes, parent: frame.trace }
        if (t.violation !== undefined) return report({ ...t.violation, trace: traceOf(trace) })
        const h = hashWorld(t.world)
        if (!visited.add(h, packBudget(t.world.left))) continue
        const depth = frame.depth + 1
        if (depth > maxDepth) maxDepth = depth
        frontier.push({ world: t.world, depth, trace })
      }
    }
    return report()
  }
}

/** Explore `scope` (the machine layer of SPEC-3: the real machine, stepped exhaustively). */
export const explore = (scope: Scope, options: Parameters<Explorer["run"]>[0] = {}): Report =>
  new Explorer(scope).run(options)
