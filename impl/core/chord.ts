/**
 * Chord routing as a pure, deterministic state machine: one node's successor list, predecessor
 * and finger table, the periodic repair protocol, and iterative lookups that count their hops.
 *
 * Follows Stoica, Morris, Karger, Kaashoek, Balakrishnan, "Chord: A Scalable Peer-to-peer
 * Lookup Service for Internet Applications", SIGCOMM 2001: section 4.3 (finger tables,
 * find_successor / closest_preceding_finger), 4.4 (join, finger hints from a neighbour),
 * 5.1 (stabilize, notify, fix_fingers, figure 7), 5.2 (successor lists, failure handling) and
 * 5.3 (voluntary departure). The paper's simulator (section 6.1) resolves lookups iteratively;
 * so do we (see below).
 *
 * API, all plain data with a `_tag`, JSON-serialisable, so a real node can drive it over TCP:
 *   init(config, self)              a fresh, not yet joined node
 *   step(state, event)              => readonly [state, commands]
 *   events:   JoinRequested{via} (via null creates a ring), LeaveRequested, LookupRequested,
 *             StabilizeTicked, MessageReceived{from, message}, RpcTimedOut{rid},
 *             CheckRequested{via} (look this node up through a seed; merges disjoint rings)
 *   commands: Send{to, message}, ScheduleTimer{at, timer}, LookupCompleted / LookupFailed,
 *             JoinCompleted / JoinFailed, HandOver{to, from, through}
 *   The driver delivers a node's first StabilizeTicked (once, at any time, e.g. at start-up);
 *   every tick schedules the next one until the node leaves. Idle and joining nodes only
 *   reschedule, and refuse lookups through them (an empty NextHops). Timers are never
 *   cancelled: the driver turns ScheduleTimer{timer: Stabilize} into StabilizeTicked and
 *   ScheduleTimer{timer: RpcDeadline{rid}} into RpcTimedOut{rid} at `at` (or later); the
 *   machine ignores deadlines of RPCs that already completed.
 *   stabilized(config, ring, index) builds the state a node has once the ring has converged,
 *   for simulators that start from a stabilized ring (as the paper's simulator did).
 *   routeCandidates / ownsAfter expose the routing rule itself.
 *   `step` updates the state it is given in place and returns it: the machine owns its state,
 *   as the storage machine (impl/core/node.ts) owns its own. The successor list and the fingers
 *   are replaced, never changed in place, because messages and commands carry them.
 *
 * Iterative, not recursive, lookups: the originator sends every query and receives every reply.
 * That keeps intermediate nodes stateless (nothing to bound or time out there), lets the one
 * node that holds the lookup see a timeout and fall back to the next best candidate (it keeps a
 * bounded, distance-ordered candidate list built from every reply), and makes the hop count
 * exact: hops = nodes that answered a query. Recursive lookups halve the latency of a lookup
 * but need per-hop state and end-to-end retries; that is a latency optimisation a real node
 * may add later without changing this machine's routing rule.
 *
 * Deliberately not here: key storage and transfer (HandOver only names the range), liveness
 * beyond RPC timeouts, addresses (a NodeId is the identity; the driver maps it to an address),
 * wall-clock time and randomness (both come in with events), authentication of peers.
 *
 * Bounds: successor list ≤ r; fingers = fingerBits; pending lookups ≤ pendingLookupsMax; a
 * lookup makes at most lookupHopsMax queries and suffers at most lookupTimeoutsMax timeouts and
 * holds at most lookupCandidatesMax candidates; outstanding RPCs ≤ pendingLookupsMax + 3
 * (stabilize, check-predecessor, fetch-fingers); suspects ≤ suspectsMax. No loop runs longer
 * than one of these bounds or fingerBits.
 *
 * Invariants kept (spec/chord.md): CHORD-1 (after stabilization every successor is the true
 * successor), CHORD-2 (lookups find the true owner within c·log2 N hops), CHORD-3 (the ring
 * stays connected while every successor list keeps a live entry), CHORD-5 (a graceful leave
 * hands its range to its successor), CHORD-6 (deterministic, plain-JSON commands).
 *
 * Why one file of over 1,000 lines: it is one machine behind one `step`. Join, repair, message
 * handling, lookups and RPC failure handling all update the same state (pending lookups, the
 * RPC table, suspects and strikes) through helpers private to this file; splitting it would
 * export those helpers and widen the surface that the CHORD properties check through `step`
 * alone. The sections below (vocabulary, ring arithmetic, construction, step, join and leave,
 * periodic repair, messages, lookups, RPCs) are its seams for reading.
 * Owns: one Chord node's routing state (successor list, predecessor, fingers, pending lookups,
 * the RPC table, suspects). Must not: read or write the store (keys move through the storage
 * node, node-chord.ts) or read a clock (`now` comes with each event).
 *
 */
import { absurd } from "effect/Function"
import { RING_SIZE } from "./hash.ts"
import type { NodeId } from "./ids.ts"

// ---------------------------------------------------------------------------------------------
// Vocabulary

/** A node as others see it: its identity and its ring position, an integer in [0, 2^52). */
export interface Peer {
  readonly id: NodeId
  readonly pos: number
  /**
   * Where the node listens ("host:port"), for real nodes that know each other only through
   * Chord (no membership view). Opaque to this machine, which passes peers on as it got them.
   */
  readonly address?: string | undefined
  /** Where it serves clients ("host:port"), for operators walking the ring. Opaque here too. */
  readonly client?: string | undefined
}

export interface ChordConfig {
  /** r: length of the successor list (section 5.2; r = Ω(log N) keeps the ring connected). */
  readonly successorListLength: number
  /** m: number of fingers; finger k starts at self + 2^(52 - m + k). At most 52. */
  readonly fingerBits: number
  /** Mean time between two StabilizeTicked of one node. */
  readonly stabilizeIntervalMs: number
  /** The next tick comes after interval · (1 - jitter + 2 · jitter · random). */
  readonly stabilizeJitter: number
  /** A peer that has not answered an RPC within this time is taken for dead. */
  readonly rpcTimeoutMs: number
  /** Most queries one lookup sends (answered ones). */
  readonly lookupHopsMax: number
  /** Most timeouts one lookup survives before it gives up. */
  readonly lookupTimeoutsMax: number
  /** Most candidates one lookup keeps for fallback. */
  readonly lookupCandidatesMax: number
  /** Candidates a node returns in a NextHops reply, best first. */
  readonly nextHopsReplied: number
  /** Most lookups (client and internal) in flight at one node. */
  readonly pendingLookupsMax: number
  /** Most peers remembered as dead. */
  readonly suspectsMax: number
  /** How long a peer stays remembered as dead. */
  readonly suspectTtlMs: number
  /**
   * Consecutive RPC timeouts after which a peer is taken for dead. 1 (the paper's simulator):
   * the first timeout. More tolerates lost messages: below the count, a timeout fails only the
   * RPC at hand (a lookup moves on, stabilization retries next round) and the peer stays in
   * every list; any message from it clears its count.
   */
  readonly timeoutsBeforeDead: number
}

/** Defaults follow the paper's simulations (section 6): 30 s ± 50 % stabilization, 500 ms RPCs. */
export const defaultConfig: ChordConfig = {
  successorListLength: 16,
  fingerBits: 52,
  stabilizeIntervalMs: 30_000,
  stabilizeJitter: 0.5,
  rpcTimeoutMs: 500,
  lookupHopsMax: 64,
  lookupTimeoutsMax: 24,
  lookupCandidatesMax: 16,
  nextHopsReplied: 4,
  pendingLookupsMax: 256,
  suspectsMax: 64,
  suspectTtlMs: 120_000,
  timeoutsBeforeDead: 1,
}

export type Status = "Idle" | "Joining" | "Active" | "Left"

/**
 * Why a lookup was started: for a client, to join, to refresh finger `index`, or to check this
 * node's place through a seed (CheckRequested).
 */
export type LookupPurpose =
  | { readonly _tag: "Client"; readonly rid: number }
  | { readonly _tag: "Join" }
  | { readonly _tag: "FixFinger"; readonly index: number }
  | { readonly _tag: "Check" }

export interface PendingLookup {
  readonly purpose: LookupPurpose
  /** Ring position whose successor we want. */
  readonly target: number
  /** Queries answered so far. */
  readonly hops: number
  /** Queries that timed out so far. */
  readonly timeouts: number
  /** Untried peers preceding the target, closest to it first. */
  readonly candidates: ReadonlyArray<Peer>
  /** Peers that answered a query of this lookup (at most lookupHopsMax). */
  readonly tried: ReadonlyArray<NodeId>
  /**
   * The answer from the replier closest to the target so far, and its successor list. When a
   * later query times out, the lookup may conclude from it (the dead node was in the way).
   */
  readonly closest: { readonly peer: Peer; readonly successors: ReadonlyArray<Peer> } | null
}

/** What an outstanding RPC is for; its reply (or deadline) is matched by its rid. */
export type RpcPurpose =
  | { readonly _tag: "Lookup"; readonly lookup: number }
  | { readonly _tag: "Stabilize" }
  | { readonly _tag: "CheckPredecessor" }
  | { readonly _tag: "FetchFingers" }

export interface Rpc {
  readonly peer: Peer
  readonly purpose: RpcPurpose
}

/**
 * One node's Chord state, which `step` updates in place (the machine owns it, as the storage
 * machine owns its own). The lists are replaced, never changed in place: messages and commands
 * carry them (`successors`, `fingers`) and must not see later changes.
 */
export interface ChordState {
  readonly config: ChordConfig
  readonly self: Peer
  status: Status
  /** First live successors, nearest first, never containing self (except [self] when alone). */
  successors: ReadonlyArray<Peer>
  predecessor: Peer | null
  /** fingers[k] = first node at or after self + 2^(52 - m + k); null when unknown or self. */
  fingers: ReadonlyArray<Peer | null>
  /** The finger fix-fingers refreshes next. */
  fingerNext: number
  readonly lookups: Map<number, PendingLookup>
  readonly rpcs: Map<number, Rpc>
  /** Source of RPC and lookup ids (rids), increasing. */
  nextRid: number
  /** Peers recently found dead; kept out of every list until they expire or speak again. */
  readonly suspects: Map<NodeId, number>
  /** Consecutive RPC timeouts per peer not yet taken for dead (at most suspectsMax entries). */
  readonly strikes: Map<NodeId, number>
}

export type ChordMessage =
  /** Iterative lookup query: "what do you know about the successor of `target`?" */
  | { readonly _tag: "FindSuccessor"; readonly rid: number; readonly target: number }
  /** The target lies between the replier and its successor: here is the successor list. */
  | {
      readonly _tag: "FoundSuccessor"
      readonly rid: number
      readonly successors: ReadonlyArray<Peer>
    }
  /**
   * Not mine (as far as I know): ask one of `candidates`, best first (may be empty). My
   * `successors` come along so that an asker who knows my first successor is dead can still
   * conclude (section 5.2). Both empty: I am in no ring (idle or still joining) and refuse; a
   * member's list is never empty ([self] when alone).
   */
  | {
      readonly _tag: "NextHops"
      readonly rid: number
      readonly candidates: ReadonlyArray<Peer>
      readonly successors: ReadonlyArray<Peer>
    }
  | { readonly _tag: "GetPredecessor"; readonly rid: number }
  | {
      readonly _tag: "PredecessorIs"
      readonly rid: number
      readonly predecessor: Peer | null
      readonly successors: ReadonlyArray<Peer>
    }
  /** "I think I might be your predecessor." One-way. */
  | { readonly _tag: "Notify"; readonly peer: Peer }
  | { readonly _tag: "Ping"; readonly rid: number }
  | { readonly _tag: "Pong"; readonly rid: number }
  | { readonly _tag: "GetFingers"; readonly rid: number }
  | {
      readonly _tag: "FingersAre"
      readonly rid: number
      readonly fingers: ReadonlyArray<Peer | null>
    }
  /** The sender leaves for good; splice it out. One-way. */
  | {
      readonly _tag: "Leaving"
      readonly predecessor: Peer | null
      readonly successors: ReadonlyArray<Peer>
    }

export type ChordTimer =
  | { readonly _tag: "Stabilize" }
  | { readonly _tag: "RpcDeadline"; readonly rid: number }

export type ChordEvent =
  /** Join the ring through `via` (any live member), or create a new ring when `via` is null. */
  | { readonly _tag: "JoinRequested"; readonly now: number; readonly via: Peer | null }
  /**
   * A member looks its own position up through `via` (a seed): if `via`'s ring knows a node
   * between this one and its successor (or this node is alone), it becomes the successor. Two
   * disjoint rings merge this way, which stabilization alone never does.
   */
  | { readonly _tag: "CheckRequested"; readonly now: number; readonly via: Peer }
  | { readonly _tag: "LeaveRequested"; readonly now: number }
  /** Find the successor of ring position `target` (hash.position of a key's bytes). */
  | {
      readonly _tag: "LookupRequested"
      readonly now: number
      readonly rid: number
      readonly target: number
    }
  /** The stabilize timer fired; `random` in [0, 1) jitters the next one. */
  | { readonly _tag: "StabilizeTicked"; readonly now: number; readonly random: number }
  | {
      readonly _tag: "MessageReceived"
      readonly now: number
      readonly from: NodeId
      readonly message: ChordMessage
    }
  | { readonly _tag: "RpcTimedOut"; readonly now: number; readonly rid: number }

/** Refused: nobody answered, and the last peer asked is in no ring itself (it refused). */
export type LookupFailure =
  | "NotJoined"
  | "Overloaded"
  | "NoRoute"
  | "HopLimit"
  | "TimeoutLimit"
  | "Refused"

export type ChordCommand =
  | { readonly _tag: "Send"; readonly to: NodeId; readonly message: ChordMessage }
  | { readonly _tag: "ScheduleTimer"; readonly at: number; readonly timer: ChordTimer }
  | {
      readonly _tag: "LookupCompleted"
      readonly rid: number
      readonly owner: Peer
      /** The owner and the nodes after it (the replier's successor list): replica candidates. */
      readonly successors: ReadonlyArray<Peer>
      /**
       * The node whose successor list concluded the lookup (the owner's predecessor as far as
       * it knows; self when answered locally). In a ring smaller than the list, the nodes after
       * the owner wrap around to it, and its list, which never names itself, stops short.
       */
      readonly replier: Peer
      readonly hops: number
      readonly timeouts: number
    }
  | {
      readonly _tag: "LookupFailed"
      readonly rid: number
      readonly reason: LookupFailure
      readonly hops: number
      readonly timeouts: number
    }
  | { readonly _tag: "JoinCompleted"; readonly successor: Peer; readonly hops: number }
  /** `hops`: queries answered by ring members (0: every peer asked refused or was silent). */
  | { readonly _tag: "JoinFailed"; readonly reason: LookupFailure; readonly hops: number }
  /** Keys in (from, through] now belong to `to`; move them there. `from` null: unknown start. */
  | {
      readonly _tag: "HandOver"
      readonly to: Peer
      readonly from: number | null
      readonly through: number
    }

// ---------------------------------------------------------------------------------------------
// Ring arithmetic

/** A local copy: reading an imported binding costs a getter call per use under some loaders. */
const RING = RING_SIZE

/** 2^(52 - m + k) for every k < m ≤ 52, indexed by 52 - m + k. */
const POWERS: ReadonlyArray<number> = Array.from({ length: 52 }, (_, i) => 2 ** i)

/** Clockwise distance from a to b, in [0, 2^52). */
export const distance = (a: number, b: number): number => {
  const d = b - a
  return d < 0 ? d + RING : d
}

/** x ∈ (a, b] clockwise; (a, a] is the whole ring. */
export const inHalfOpen = (x: number, a: number, b: number): boolean => {
  if (a === b) return true
  const d = distance(a, x)
  return d > 0 && d <= distance(a, b)
}

/** x ∈ (a, b) clockwise; (a, a) is the whole ring but a. */
export const inOpen = (x: number, a: number, b: number): boolean => {
  if (a === b) return x !== a
  const d = distance(a, x)
  return d > 0 && d < distance(a, b)
}

/** Where finger k of a node at `pos` starts: pos + 2^(52 - m + k) mod 2^52. */
export const fingerStart = (pos: number, k: number, fingerBits: number): number => {
  const start = pos + POWERS[52 - fingerBits + k]!
  return start >= RING ? start - RING : start
}

// ---------------------------------------------------------------------------------------------
// Construction

/** A node that has not joined yet. */
export const init = (config: ChordConfig, self: Peer): ChordState => {
  if (!(config.fingerBits >= 1 && config.fingerBits <= 52)) throw new Error("fingerBits ∉ [1,52]")
  if (config.successorListLength < 1) throw new Error("successorListLength < 1")
  return {
    config,
    self,
    status: "Idle",
    successors: [],
    predecessor: null,
    fingers: new Array<Peer | null>(config.fingerBits).fill(null),
    fingerNext: 0,
    lookups: new Map(),
    rpcs: new Map(),
    nextRid: 0,
    suspects: new Map(),
    strikes: new Map(),
  }
}

/** Live members, sorted by position, as an oracle hands them to `stabilized`. */
export interface SortedRing {
  readonly peers: ReadonlyArray<Peer>
  /** Index in `peers` of the first member at or after `pos` (wrapping). */
  readonly successorIndex: (pos: number) => number
}

/**
 * The state node `peers[index]` reaches once the ring has converged: true successor list,
 * predecessor and fingers. For simulators that start from a stabilized ring; the routing they
 * then exercise is this machine's.
 */
export const stabilized = (config: ChordConfig, ring: SortedRing, index: number): ChordState => {
  const n = ring.peers.length
  const self = ring.peers[index]!
  const successors: Array<Peer> = []
  for (let i = 1; i <= Math.min(config.successorListLength, n - 1); i++) {
    successors.push(ring.peers[(index + i) % n]!)
  }
  const fingers: Array<Peer | null> = []
  for (let k = 0; k < config.fingerBits; k++) {
    const owner = ring.peers[ring.successorIndex(fingerStart(self.pos, k, config.fingerBits))]!
    fingers.push(owner.id === self.id ? null : owner)
  }
  return {
    ...init(config, self),
    status: "Active",
    successors: successors.length > 0 ? successors : [self],
    predecessor: n > 1 ? ring.peers[(index - 1 + n) % n]! : null,
    fingers,
  }
}

// ---------------------------------------------------------------------------------------------
// The step function

type Out = Array<ChordCommand>

export const step = (
  state: ChordState,
  event: ChordEvent,
): readonly [ChordState, ReadonlyArray<ChordCommand>] => {
  const out: Out = []
  const next = dispatch(state, event, out)
  return [next, out]
}

const dispatch = (s: ChordState, e: ChordEvent, out: Out): ChordState => {
  // A node that left is gone: it answers nothing and starts nothing.
  if (s.status === "Left") return s
  switch (e._tag) {
    case "JoinRequested":
      return handleJoinRequested(s, e.now, e.via, out)
    case "CheckRequested":
      return handleCheckRequested(s, e.now, e.via, out)
    case "LeaveRequested":
      return handleLeaveRequested(s, out)
    case "LookupRequested":
      return startLookup(s, e.now, { _tag: "Client", rid: e.rid }, e.target, out)
    case "StabilizeTicked":
      return handleStabilizeTicked(s, e.now, e.random, out)
    case "MessageReceived":
      return handleMessage(s, e.now, e.from, e.message, out)
    case "RpcTimedOut":
      return handleRpcTimedOut(s, e.now, e.rid, out)
    default:
      return absurd(e)
  }
}

// ---------------------------------------------------------------------------------------------
// Join, leave

const handleJoinRequested = (
  s: ChordState,
  now: number,
  via: Peer | null,
  out: Out,
): ChordState => {
  // Guard: only an idle node joins; a repeated request while joining or joined is ignored.
  if (s.status !== "Idle") return s
  if (via === null || via.id === s.self.id) {
    out.push({ _tag: "JoinCompleted", successor: s.self, hops: 0 })
    s.status = "Active"
    s.successors = [s.self]
    return s
  }
  // Asked to join through `via`: ask it, even if an earlier attempt timed out on it (a seed
  // that was still starting is suspected, and would otherwise be skipped for suspectTtlMs).
  unsuspect(s, via.id)
  s.status = "Joining"
  // The joiner knows nobody but `via`, which routes the query onward
  // (section 4.4: n.join(n') asks n'.find_successor(n)).
  return sendLookup(
    now,
    s.nextRid++,
    {
      purpose: { _tag: "Join" },
      target: s.self.pos,
      hops: 0,
      timeouts: 0,
      candidates: [via],
      tried: [],
      closest: null,
    },
    s,
    out,
  )
}

/**
 * Look this node's own position up through `via`, as a join would: `checked` compares the
 * answer with this node's successor. At most one check at a time.
 */
const handleCheckRequested = (s: ChordState, now: number, via: Peer, out: Out): ChordState => {
  if (s.status !== "Active" || via.id === s.self.id) return s
  if (s.lookups.size >= s.config.pendingLookupsMax) return s
  for (const lookup of s.lookups.values()) if (lookup.purpose._tag === "Check") return s
  return sendLookup(
    now,
    s.nextRid++,
    {
      purpose: { _tag: "Check" },
      target: s.self.pos,
      hops: 0,
      timeouts: 0,
      candidates: [via],
      tried: [],
      closest: null,
    },
    s,
    out,
  )
}

/**
 * A check's answer: `found` is what `via`'s ring holds at and after this node's position. Its
 * first node other than this one, if it lies between this node and its successor (or this node
 * is alone), becomes the successor and is notified; stabilization does the rest. In one ring
 * that only hastens stabilization. In two disjoint rings, some node of each has a node of the
 * other in that gap (the first node of the other ring after it): the cross link is made, its
 * new successor takes it as predecessor, that node's old predecessor adopts it on its next
 * stabilize, and the rings thread into one.
 */
const checked = (
  s: ChordState,
  found: ReadonlyArray<Peer>,
  replier: Peer,
  out: Out,
): ChordState => {
  const next = [...found, replier].find((p) => p.id !== s.self.id && !isSuspect(s, p.id))
  const succ = s.successors[0]
  if (next === undefined || succ === undefined) return s
  if (succ.id !== s.self.id && !inOpen(next.pos, s.self.pos, succ.pos)) return s
  out.push({ _tag: "Send", to: next.id, message: { _tag: "Notify", peer: s.self } })
  s.successors = normalizeSuccessors(s, [next, ...s.successors])
  return s
}

const becomeActive = (
  s: ChordState,
  now: number,
  found: ReadonlyArray<Peer>,
  replier: Peer,
  hops: number,
  out: Out,
) => {
  // A node restarted before the ring noticed finds its previous incarnation (its own id) at its
  // own position: the nodes after it are its successors all the same, and the replier (which
  // precedes it) is one if no other is named. It takes that place again.
  const after = found[0]?.id === s.self.id ? found.slice(1) : found
  const successors = normalizeSuccessors(s, after.length > 0 ? after : [replier])
  const first = successors[0]
  if (first === undefined) {
    out.push({ _tag: "JoinFailed", reason: "NoRoute", hops })
    s.status = "Idle"
    return s
  }
  out.push({ _tag: "JoinCompleted", successor: first, hops })
  out.push({ _tag: "Send", to: first.id, message: { _tag: "Notify", peer: s.self } })
  // Section 4.4 optimisation: the successor's fingers are good first hints for ours;
  // fix-fingers corrects them.
  // Suspicions gathered while probing seeds (some not in a ring yet, so silent) are forgotten:
  // kept, they would keep live members out of the lists stabilization builds.
  s.status = "Active"
  s.successors = successors
  s.predecessor = null
  s.suspects.clear()
  return sendRpc(
    s,
    now,
    first,
    { _tag: "FetchFingers" },
    (rid) => ({ _tag: "GetFingers", rid }),
    out,
  )
}

const handleLeaveRequested = (s: ChordState, out: Out): ChordState => {
  failAllLookups(s, out)
  const was = s.status
  s.status = "Left"
  s.lookups.clear()
  s.rpcs.clear()
  if (was !== "Active") return s
  const succ = s.successors[0]
  if (succ === undefined || succ.id === s.self.id) return s
  // Section 5.3 voluntary departure: hand the keys to the successor, splice ourselves out.
  out.push({ _tag: "HandOver", to: succ, from: s.predecessor?.pos ?? null, through: s.self.pos })
  const leaving: ChordMessage = {
    _tag: "Leaving",
    predecessor: s.predecessor,
    successors: s.successors,
  }
  out.push({ _tag: "Send", to: succ.id, message: leaving })
  const pred = s.predecessor
  if (pred !== null && pred.id !== succ.id && pred.id !== s.self.id) {
    out.push({ _tag: "Send", to: pred.id, message: leaving })
  }
  return s
}

const failAllLookups = (s: ChordState, out: Out) => {
  for (const lookup of s.lookups.values()) {
    emitFailure(lookup, "NotJoined", out)
  }
}

// ---------------------------------------------------------------------------------------------
// Periodic repair: stabilize, check predecessor, fix fingers (section 5.1, figure 7)

const handleStabilizeTicked = (s: ChordState, now: number, random: number, out: Out) => {
  let t: ChordState = expireSuspects(s, now)
  if (t.status === "Active") {
    t = stabilize(t, now, out)
    t = checkPredecessor(t, now, out)
    t = fixFingers(t, now, out)
  }
  return scheduleStabilize(t, now, random, out)
}

const scheduleStabilize = (s: ChordState, now: number, random: number, out: Out) => {
  const { stabilizeIntervalMs: interval, stabilizeJitter: jitter } = s.config
  const delay = interval * (1 - jitter + 2 * jitter * Math.min(Math.max(random, 0), 1))
  out.push({ _tag: "ScheduleTimer", at: now + Math.max(1, delay), timer: { _tag: "Stabilize" } })
  return s
}

const hasRpc = (s: ChordState, tag: RpcPurpose["_tag"]): boolean => {
  for (const rpc of s.rpcs.values()) if (rpc.purpose._tag === tag) return true
  return false
}

/** Ask the successor for its predecessor; a node alone does it locally. */
const stabilize = (s: ChordState, now: number, out: Out): ChordState => {
  const succ = s.successors[0]
  if (succ === undefined || hasRpc(s, "Stabilize")) return s
  if (succ.id === s.self.id) {
    // Alone (or believing so): our predecessor, if any, is our successor too.
    const x = s.predecessor
    if (x === null || x.id === s.self.id) return s
    out.push({ _tag: "Send", to: x.id, message: { _tag: "Notify", peer: s.self } })
    s.successors = [x]
    return s
  }
  return sendRpc(
    s,
    now,
    succ,
    { _tag: "Stabilize" },
    (rid) => ({ _tag: "GetPredecessor", rid }),
    out,
  )
}

const checkPredecessor = (s: ChordState, now: number, out: Out): ChordState => {
  const pred = s.predecessor
  if (pred === null || pred.id === s.self.id || hasRpc(s, "CheckPredecessor")) return s
  return sendRpc(s, now, pred, { _tag: "CheckPredecessor" }, (rid) => ({ _tag: "Ping", rid }), out)
}

/**
 * Refresh one finger per tick. Fingers whose start lies in (self, successor] are the successor
 * and need no lookup; after a lookup for finger k returns owner o, every finger j > k whose start
 * lies in (self, o] is o as well. So one pass costs about log2 N lookups, not 52.
 */
const fixFingers = (s: ChordState, now: number, out: Out): ChordState => {
  for (const lookup of s.lookups.values()) if (lookup.purpose._tag === "FixFinger") return s
  const succ = s.successors[0]
  if (succ === undefined || succ.id === s.self.id) return s
  const m = s.config.fingerBits
  const fingers = [...s.fingers]
  let k = s.fingerNext
  while (k < m && inHalfOpen(fingerStart(s.self.pos, k, m), s.self.pos, succ.pos)) {
    fingers[k] = succ
    k++
  }
  s.fingers = fingers
  s.fingerNext = k >= m ? 0 : k
  if (k >= m) return s
  return startLookup(s, now, { _tag: "FixFinger", index: k }, fingerStart(s.self.pos, k, m), out)
}

const fingerFixed = (s: ChordState, index: number, owner: Peer): ChordState => {
  const m = s.config.fingerBits
  const fingers = [...s.fingers]
  let j = index
  if (owner.id === s.self.id) {
    // No other node from start(index) round to self: those fingers are all empty.
    for (; j < m; j++) fingers[j] = null
  } else {
    while (
      j < m &&
      (j === index || inHalfOpen(fingerStart(s.self.pos, j, m), s.self.pos, owner.pos))
    ) {
      fingers[j] = owner
      j++
    }
  }
  s.fingers = fingers
  s.fingerNext = j >= m ? 0 : j
  return s
}

// ---------------------------------------------------------------------------------------------
// Messages

const handleMessage = (
  s: ChordState,
  now: number,
  from: NodeId,
  msg: ChordMessage,
  out: Out,
): ChordState => {
  // Anyone who speaks is alive.
  s.strikes.delete(from)
  unsuspect(s, from)
  switch (msg._tag) {
    case "FindSuccessor":
      return answerFindSuccessor(s, from, msg.rid, msg.target, out)
    case "GetPredecessor":
      if (s.status !== "Active") return s
      out.push({
        _tag: "Send",
        to: from,
        message: {
          _tag: "PredecessorIs",
          rid: msg.rid,
          predecessor: s.predecessor,
          successors: s.successors,
        },
      })
      return s
    case "Ping":
      if (s.status === "Active")
        out.push({ _tag: "Send", to: from, message: { _tag: "Pong", rid: msg.rid } })
      return s
    case "GetFingers":
      if (s.status !== "Active") return s
      out.push({
        _tag: "Send",
        to: from,
        message: { _tag: "FingersAre", rid: msg.rid, fingers: s.fingers },
      })
      return s
    case "Notify":
      return handleNotify(s, msg.peer, out)
    case "Leaving":
      return handleLeaving(s, now, from, msg.predecessor, msg.successors)
    case "FoundSuccessor":
    case "NextHops":
    case "PredecessorIs":
    case "Pong":
    case "FingersAre":
      return handleReply(s, now, from, msg, out)
    default:
      return absurd(msg)
  }
}

const answerFindSuccessor = (
  s: ChordState,
  from: NodeId,
  rid: number,
  target: number,
  out: Out,
) => {
  // A node that is in no ring knows nothing about one: it refuses at once (empty lists), so the
  // asker moves on without waiting for a timeout, and knows this peer is alive but not a member
  // (a node bootstrapping a ring counts on that: impl/core/node-chord.ts).
  if (s.status !== "Active") {
    const refusal: ChordMessage = { _tag: "NextHops", rid, candidates: [], successors: [] }
    out.push({ _tag: "Send", to: from, message: refusal })
    return s
  }
  const succ = s.successors[0]
  const message: ChordMessage =
    succ !== undefined && inHalfOpen(target, s.self.pos, succ.pos)
      ? { _tag: "FoundSuccessor", rid, successors: s.successors }
      : {
          _tag: "NextHops",
          rid,
          candidates: routeCandidates(s, target, s.config.nextHopsReplied),
          successors: s.successors,
        }
  out.push({ _tag: "Send", to: from, message })
  return s
}

const handleNotify = (s: ChordState, peer: Peer, out: Out): ChordState => {
  if (s.status !== "Active" || peer.id === s.self.id) return s
  const pred = s.predecessor
  if (pred !== null && pred.id === peer.id) return s
  if (pred !== null && !inOpen(peer.pos, pred.pos, s.self.pos)) return s
  // The keys in (old predecessor, peer] now belong to peer (section 4.4).
  if (pred !== null) out.push({ _tag: "HandOver", to: peer, from: pred.pos, through: peer.pos })
  s.predecessor = peer
  return s
}

const handleLeaving = (
  s: ChordState,
  now: number,
  from: NodeId,
  predecessor: Peer | null,
  successors: ReadonlyArray<Peer>,
): ChordState => {
  if (s.status !== "Active") return s
  const cut = s.successors.findIndex((p) => p.id === from)
  if (cut >= 0) {
    // Splice: our own list without the leaver, merged in ring order with the part of the
    // leaver's list that lies beyond it, between it and us. Keep our entries beyond the leaver
    // too: its list may be shorter or staler than ours. Its entries that wrap round (a ring
    // smaller than its list) into (self, leaver) are not taken: that arc is ours first-hand,
    // and its stale view could bring back nodes we dropped long ago, all of them gone.
    const leaver = s.successors[cut]!.pos
    const beyond = successors.filter((p) => inOpen(p.pos, leaver, s.self.pos))
    const merged = [...s.successors, ...beyond].filter((p) => p.id !== from && p.id !== s.self.id)
    merged.sort((a, b) => distance(s.self.pos, a.pos) - distance(s.self.pos, b.pos))
    s.successors = normalizeSuccessors(s, merged)
  }
  if (s.predecessor?.id === from) {
    s.predecessor = predecessor !== null && predecessor.id !== s.self.id ? predecessor : null
  }
  return forget(s, from, now + s.config.suspectTtlMs)
}

const handleReply = (
  s: ChordState,
  now: number,
  from: NodeId,
  msg: Extract<
    ChordMessage,
    { _tag: "FoundSuccessor" | "NextHops" | "PredecessorIs" | "Pong" | "FingersAre" }
  >,
  out: Out,
): ChordState => {
  const rpc = s.rpcs.get(msg.rid)
  // Guard: late (after the deadline), duplicated or unsolicited replies are ignored.
  if (rpc === undefined || rpc.peer.id !== from) return s
  s.rpcs.delete(msg.rid)
  switch (msg._tag) {
    case "FoundSuccessor":
    case "NextHops":
      if (rpc.purpose._tag !== "Lookup") return s
      return lookupAnswered(s, now, rpc.purpose.lookup, rpc.peer, msg, out)
    case "PredecessorIs":
      if (rpc.purpose._tag !== "Stabilize") return s
      return stabilizeAnswered(s, rpc.peer, msg.predecessor, msg.successors, out)
    case "FingersAre":
      if (rpc.purpose._tag !== "FetchFingers") return s
      return fingersFetched(s, msg.fingers)
    case "Pong":
      return s // check-predecessor's answer: taking its RPC off the table is all it does
    default:
      return absurd(msg)
  }
}

/** Figure 7 stabilize(): adopt the successor's predecessor if it sits between us, then notify. */
const stabilizeAnswered = (
  s: ChordState,
  succ: Peer,
  x: Peer | null,
  theirs: ReadonlyArray<Peer>,
  out: Out,
): ChordState => {
  if (s.status !== "Active") return s
  const list: Array<Peer> = [succ, ...theirs]
  if (
    x !== null &&
    x.id !== s.self.id &&
    !isSuspect(s, x.id) &&
    inOpen(x.pos, s.self.pos, succ.pos)
  ) {
    list.unshift(x)
  }
  const successors = normalizeSuccessors(s, list)
  const first = successors[0]
  if (first === undefined) return s
  out.push({ _tag: "Send", to: first.id, message: { _tag: "Notify", peer: s.self } })
  s.successors = successors
  return s
}

const fingersFetched = (s: ChordState, theirs: ReadonlyArray<Peer | null>): ChordState => {
  if (s.status !== "Active") return s
  const fingers = s.fingers.map((mine, k) => {
    const hint = theirs[k]
    if (mine !== null) return mine
    if (hint === undefined || hint === null || hint.id === s.self.id || isSuspect(s, hint.id))
      return null
    return hint
  })
  s.fingers = fingers
  return s
}

// ---------------------------------------------------------------------------------------------
// Lookups (iterative; section 4.3, with the failure fallback of section 5.2)

/**
 * The routing rule: up to `k` known peers strictly between us and `target`, closest to the
 * target first (closest_preceding_finger over the fingers and the successor list).
 * A peer exactly at `target` is excluded: it owns the target and is found through its predecessor.
 */
export const routeCandidates = (s: ChordState, target: number, k: number): Array<Peer> => {
  const limit = distance(s.self.pos, target)
  const eligible = (p: Peer | null | undefined): p is Peer => {
    if (p === null || p === undefined || p.id === s.self.id) return false
    const d = distance(p.pos, target)
    if (d === 0 || (limit !== 0 && d >= limit)) return false
    return !isSuspect(s, p.id)
  }
  // closest_preceding_finger (figure 4): fingers from the top down. In a converged table they
  // come out closest-to-target first and equal fingers are adjacent; stale tables get sorted.
  const found: Array<Peer> = []
  let ordered = true
  let previous = -1
  for (let i = s.fingers.length - 1; i >= 0; i--) {
    const p = s.fingers[i]
    if (!eligible(p)) continue
    const last = found[found.length - 1]
    if (last !== undefined && last.id === p.id) continue
    const d = distance(p.pos, target)
    if (d < previous) ordered = false
    previous = d
    found.push(p)
    // In an ordered table the lower fingers are all farther from the target: enough found.
    if (ordered && found.length >= k) break
  }
  const fingers = ordered ? found : dedupe(found.sort(byDistanceTo(target)))
  // The successor list only backs the fingers up (section 5.2): it comes after them.
  const out = fingers.length > k ? fingers.slice(0, k) : fingers
  for (let i = s.successors.length - 1; i >= 0 && out.length < k; i--) {
    const p = s.successors[i]
    if (eligible(p) && !out.some((q) => q.id === p.id)) out.push(p)
  }
  return out
}

const byDistanceTo = (target: number) => (a: Peer, b: Peer) =>
  distance(a.pos, target) - distance(b.pos, target)

const dedupe = (peers: ReadonlyArray<Peer>): Array<Peer> => {
  const out: Array<Peer> = []
  for (const p of peers) if (!out.some((q) => q.id === p.id)) out.push(p)
  return out
}

/** Every peer a message names (a driver learns addresses from them). */
export const peersIn = (m: ChordMessage): ReadonlyArray<Peer> => {
  switch (m._tag) {
    case "FoundSuccessor":
      return m.successors
    case "NextHops":
      return [...m.candidates, ...m.successors]
    case "PredecessorIs":
    case "Leaving":
      return m.predecessor === null ? m.successors : [m.predecessor, ...m.successors]
    case "Notify":
      return [m.peer]
    case "FingersAre":
      return m.fingers.filter((f): f is Peer => f !== null)
    case "FindSuccessor":
    case "GetPredecessor":
    case "Ping":
    case "Pong":
    case "GetFingers":
      return []
    default:
      return absurd(m)
  }
}

/**
 * Every peer this node's state refers to: successors, predecessor, fingers, peers of
 * outstanding RPCs and lookup candidates. At most r + 1 + m + RPCs + lookups · candidates.
 */
export const knownPeers = (s: ChordState): ReadonlyArray<Peer> => {
  const out: Array<Peer> = [...s.successors, ...s.fingers.filter((f): f is Peer => f !== null)]
  if (s.predecessor !== null) out.push(s.predecessor)
  for (const rpc of s.rpcs.values()) out.push(rpc.peer)
  for (const l of s.lookups.values()) out.push(...l.candidates)
  return out
}

/** Does this node answer a lookup for `target` without asking anyone? Its successor list if so. */
export const ownsAfter = (s: ChordState, target: number): ReadonlyArray<Peer> | null => {
  const succ = s.successors[0]
  if (target === s.self.pos) return [s.self, ...withoutSelf(s)]
  if (s.predecessor !== null && inHalfOpen(target, s.predecessor.pos, s.self.pos)) {
    return [s.self, ...withoutSelf(s)]
  }
  if (succ !== undefined && inHalfOpen(target, s.self.pos, succ.pos)) return s.successors
  return null
}

const withoutSelf = (s: ChordState) => s.successors.filter((p) => p.id !== s.self.id)

const startLookup = (
  s: ChordState,
  now: number,
  purpose: LookupPurpose,
  target: number,
  out: Out,
): ChordState => {
  const fresh: PendingLookup = {
    purpose,
    target,
    hops: 0,
    timeouts: 0,
    candidates: [],
    tried: [],
    closest: null,
  }
  if (s.status !== "Active") return lookupFailed(s, fresh, "NotJoined", out)
  if (s.lookups.size >= s.config.pendingLookupsMax) return lookupFailed(s, fresh, "Overloaded", out)
  const local = ownsAfter(s, target)
  if (local !== null) return lookupDone(s, now, fresh, local, s.self, out)
  const candidates = routeCandidates(s, target, s.config.lookupCandidatesMax)
  return sendLookup(now, s.nextRid++, { ...fresh, candidates }, s, out)
}

/** Query the best untried candidate of lookup `id`, or give up when none is left. */
const sendLookup = (
  now: number,
  id: number,
  lookup: PendingLookup,
  s: ChordState,
  out: Out,
  exhausted: LookupFailure = "NoRoute",
): ChordState => {
  const { lookupHopsMax, lookupTimeoutsMax } = s.config
  if (lookup.hops >= lookupHopsMax) return lookupFailed(dropLookup(s, id), lookup, "HopLimit", out)
  if (lookup.timeouts >= lookupTimeoutsMax) {
    return lookupFailed(dropLookup(s, id), lookup, "TimeoutLimit", out)
  }
  let i = 0
  while (i < lookup.candidates.length) {
    const c = lookup.candidates[i]!
    if (!lookup.tried.includes(c.id) && !isSuspect(s, c.id) && c.id !== s.self.id) break
    i++
  }
  const next = lookup.candidates[i]
  if (next === undefined) return lookupFailed(dropLookup(s, id), lookup, exhausted, out)
  const updated: PendingLookup = {
    ...lookup,
    candidates: lookup.candidates.slice(i + 1),
    tried: [...lookup.tried, next.id],
  }
  s.lookups.set(id, updated)
  const target = lookup.target
  return sendRpc(
    s,
    now,
    next,
    { _tag: "Lookup", lookup: id },
    (rid) => ({ _tag: "FindSuccessor", rid, target }),
    out,
  )
}

const dropLookup = (s: ChordState, id: number): ChordState => {
  s.lookups.delete(id)
  return s
}

const lookupAnswered = (
  s: ChordState,
  now: number,
  id: number,
  replier: Peer,
  msg: Extract<ChordMessage, { _tag: "FoundSuccessor" | "NextHops" }>,
  out: Out,
): ChordState => {
  const lookup = s.lookups.get(id)
  if (lookup === undefined) return s
  if (msg._tag === "NextHops" && msg.successors.length === 0) {
    // Refused: the peer is in no ring. Not an answer (no hop, nothing learnt): the next one.
    return sendLookup(now, id, lookup, s, out, lookup.hops === 0 ? "Refused" : "NoRoute")
  }
  const nearer =
    lookup.closest === null ||
    distance(replier.pos, lookup.target) < distance(lookup.closest.peer.pos, lookup.target)
  const answered: PendingLookup = {
    ...lookup,
    hops: lookup.hops + 1,
    closest: nearer ? { peer: replier, successors: msg.successors } : lookup.closest,
  }
  const found = conclude(s, replier, msg.successors, lookup.target)
  if (found !== null) return lookupDone(dropLookup(s, id), now, answered, found, replier, out)
  if (msg._tag === "FoundSuccessor") {
    // Every successor it named is known dead: fall back as if it had nothing to say.
    return sendLookup(now, id, answered, s, out)
  }
  // Keep only candidates strictly closer to the target than the replier: progress is guaranteed.
  // The replier's order is its routing rule's (fingers first, closest first); keep it.
  const limit = distance(replier.pos, lookup.target)
  const merged: Array<Peer> = []
  const add = (c: Peer) => {
    if (merged.length >= s.config.lookupCandidatesMax || c.id === s.self.id) return
    if (lookup.tried.includes(c.id) || merged.some((p) => p.id === c.id)) return
    if (isSuspect(s, c.id)) return
    merged.push(c)
  }
  for (const c of msg.candidates) {
    const d = distance(c.pos, lookup.target)
    if (d > 0 && d < limit) add(c)
  }
  // Then the replier's successors that precede the target, nearest to it first: when the
  // candidates it chose are dead, these are the nodes the final approach can still go through.
  let fromList = 0
  for (let i = msg.successors.length - 1; i >= 0 && fromList < s.config.nextHopsReplied; i--) {
    const c = msg.successors[i]!
    const d = distance(c.pos, lookup.target)
    if (d > 0 && d < limit) {
      add(c)
      fromList++
    }
  }
  for (const c of lookup.candidates) add(c)
  return sendLookup(now, id, { ...answered, candidates: merged }, s, out)
}

/**
 * The replier's first successor we believe alive: if the target lies between the two, that node
 * owns it, whatever the replier itself thought (its first successor may be dead). Returns the
 * live part of the list, owner first, or null.
 */
const conclude = (
  s: ChordState,
  replier: Peer,
  successors: ReadonlyArray<Peer>,
  target: number,
): ReadonlyArray<Peer> | null => {
  const first = successors.find((p) => !isSuspect(s, p.id))
  if (first === undefined || !inHalfOpen(target, replier.pos, first.pos)) return null
  return s.suspects.size === 0 ? successors : successors.filter((p) => !isSuspect(s, p.id))
}

const lookupDone = (
  s: ChordState,
  now: number,
  lookup: PendingLookup,
  found: ReadonlyArray<Peer>,
  replier: Peer,
  out: Out,
): ChordState => {
  const owner = found[0]!
  switch (lookup.purpose._tag) {
    case "Client":
      out.push({
        _tag: "LookupCompleted",
        rid: lookup.purpose.rid,
        owner,
        successors: found.slice(0, s.config.successorListLength),
        replier,
        hops: lookup.hops,
        timeouts: lookup.timeouts,
      })
      return s
    case "Join":
      return s.status === "Joining" ? becomeActive(s, now, found, replier, lookup.hops, out) : s
    case "FixFinger":
      return s.status === "Active" ? fingerFixed(s, lookup.purpose.index, owner) : s
    case "Check":
      return s.status === "Active" ? checked(s, found, replier, out) : s
    default:
      return absurd(lookup.purpose)
  }
}

const lookupFailed = (
  s: ChordState,
  lookup: PendingLookup,
  reason: LookupFailure,
  out: Out,
): ChordState => {
  switch (lookup.purpose._tag) {
    case "Client":
      emitFailure(lookup, reason, out)
      return s
    case "Join":
      out.push({ _tag: "JoinFailed", reason, hops: lookup.hops })
      s.status = "Idle"
      return s
    case "FixFinger": {
      // Skip this finger for now; the next pass retries it.
      const next = lookup.purpose.index + 1
      s.fingerNext = next >= s.config.fingerBits ? 0 : next
      return s
    }
    case "Check":
      return s // the driver checks again later
    default:
      return absurd(lookup.purpose)
  }
}

const emitFailure = (lookup: PendingLookup, reason: LookupFailure, out: Out) => {
  if (lookup.purpose._tag !== "Client") return
  out.push({
    _tag: "LookupFailed",
    rid: lookup.purpose.rid,
    reason,
    hops: lookup.hops,
    timeouts: lookup.timeouts,
  })
}

// ---------------------------------------------------------------------------------------------
// RPCs, timeouts and failure handling

const sendRpc = (
  s: ChordState,
  now: number,
  peer: Peer,
  purpose: RpcPurpose,
  message: (rid: number) => ChordMessage,
  out: Out,
): ChordState => {
  const rid = s.nextRid++
  s.rpcs.set(rid, { peer, purpose })
  out.push({ _tag: "Send", to: peer.id, message: message(rid) })
  out.push({
    _tag: "ScheduleTimer",
    at: now + s.config.rpcTimeoutMs,
    timer: { _tag: "RpcDeadline", rid },
  })
  return s
}

const handleRpcTimedOut = (s: ChordState, now: number, rid: number, out: Out): ChordState => {
  const rpc = s.rpcs.get(rid)
  // Guard: the reply came in time; the deadline is stale.
  if (rpc === undefined) return s
  s.rpcs.delete(rid)
  const strikes = (s.strikes.get(rpc.peer.id) ?? 0) + 1
  if (strikes < s.config.timeoutsBeforeDead) {
    // Not dead yet (the message may have been lost): this RPC failed, the peer stays.
    strike(s, rpc.peer.id, strikes)
    if (rpc.purpose._tag !== "Lookup") return s
    const lookup = s.lookups.get(rpc.purpose.lookup)
    if (lookup === undefined) return s
    // It stays a candidate, asked again once the others are tried: a join through one seed
    // survives a lost message.
    const again = lookup.candidates.length < s.config.lookupCandidatesMax
    const retried: PendingLookup = {
      ...lookup,
      timeouts: lookup.timeouts + 1,
      candidates: again ? [...lookup.candidates, rpc.peer] : lookup.candidates,
      tried: lookup.tried.filter((id) => id !== rpc.peer.id),
    }
    return sendLookup(now, rpc.purpose.lookup, retried, s, out)
  }
  s.strikes.delete(rpc.peer.id)
  forget(s, rpc.peer.id, now + s.config.suspectTtlMs)
  switch (rpc.purpose._tag) {
    case "Lookup": {
      const lookup = s.lookups.get(rpc.purpose.lookup)
      if (lookup === undefined) return s
      // Not "tried" any more: it stays out while suspected, and may be asked again if it turns
      // out to be alive after all (a late reply clears the suspicion).
      const timedOut: PendingLookup = {
        ...lookup,
        timeouts: lookup.timeouts + 1,
        tried: lookup.tried.filter((id) => id !== rpc.peer.id),
      }
      const closest = lookup.closest
      const found = closest && conclude(s, closest.peer, closest.successors, lookup.target)
      if (found) {
        const replier = closest!.peer
        return lookupDone(dropLookup(s, rpc.purpose.lookup), now, timedOut, found, replier, out)
      }
      return sendLookup(now, rpc.purpose.lookup, timedOut, s, out)
    }
    case "Stabilize":
      // The successor is dead: move to the next live entry right away (section 5.2).
      repairSuccessors(s)
      return s.status === "Active" ? stabilize(s, now, out) : s
    case "CheckPredecessor":
    case "FetchFingers":
      return s
    default:
      return absurd(rpc.purpose)
  }
}

/**
 * Take `id` for dead (or gone): out of the successor list, the fingers and the predecessor, and
 * remembered as a suspect until `untilMs`, so stale lists from others cannot bring it back.
 */
const forget = (s: ChordState, id: NodeId, untilMs: number): ChordState => {
  const successors = s.successors.some((p) => p.id === id)
    ? s.successors.filter((p) => p.id !== id)
    : s.successors
  const fingers = s.fingers.some((p) => p?.id === id)
    ? s.fingers.map((p) => (p?.id === id ? null : p))
    : s.fingers
  const predecessor = s.predecessor?.id === id ? null : s.predecessor
  const suspects = s.suspects
  suspects.delete(id)
  suspects.set(id, untilMs)
  // Over the bound: forget the oldest suspicion (Map iteration order is insertion order).
  for (const oldest of suspects.keys()) {
    if (suspects.size <= s.config.suspectsMax) break
    suspects.delete(oldest)
  }
  s.successors = successors
  s.fingers = fingers
  s.predecessor = predecessor
  return successors.length === 0 ? repairSuccessors(s) : s
}

/**
 * An empty successor list means every entry died (beyond the r-list guarantee). Fall back to the
 * nearest known finger, then the predecessor; with nobody left the node is alone.
 */
const repairSuccessors = (s: ChordState): ChordState => {
  if (s.successors.length > 0 || s.status !== "Active") return s
  const nearest = s.fingers.find((p) => p !== null) ?? s.predecessor ?? s.self
  s.successors = [nearest]
  return s
}

const isSuspect = (s: ChordState, id: NodeId): boolean => s.suspects.size > 0 && s.suspects.has(id)

/** Count a timeout against `id` (the newest last; over the bound the oldest goes). */
const strike = (s: ChordState, id: NodeId, count: number): void => {
  s.strikes.delete(id)
  s.strikes.set(id, count)
  for (const oldest of s.strikes.keys()) {
    if (s.strikes.size <= s.config.suspectsMax) break
    s.strikes.delete(oldest)
  }
}

const unsuspect = (s: ChordState, id: NodeId): void => {
  s.suspects.delete(id)
}

const expireSuspects = (s: ChordState, now: number): ChordState => {
  for (const [id, until] of s.suspects) if (until <= now) s.suspects.delete(id)
  return s
}

/** Distinct, live-as-far-as-we-know peers up to the first mention of self; at most r. */
const normalizeSuccessors = (s: ChordState, list: ReadonlyArray<Peer>): Array<Peer> => {
  const out: Array<Peer> = []
  const seen = new Set<NodeId>()
  for (const p of list) {
    if (out.length >= s.config.successorListLength) break
    if (p.id === s.self.id) break
    if (isSuspect(s, p.id) || seen.has(p.id)) continue
    seen.add(p.id)
    out.push(p)
  }
  return out
}
