/**
 * Cluster membership: the gossiped cluster state as a CRDT, and the gossip machine that spreads
 * it (DeCandia et al., SOSP 2007, section 4.8 "Membership and Failure Detection"; the exchange
 * is Cassandra's three-message push-pull: digest, reply, ack).
 *
 * The cluster state is a map from member id to one `Entry` (addresses, weight, status, and the
 * member's generation / version / heartbeat). Each entry is written by exactly one party: the
 * member itself (every change bumps `version`, every gossip tick bumps `heartbeat`, every
 * restart starts a larger `generation`), or, for the final status "removed", the node where an
 * operator issued the removal. So a member's own history is totally ordered by
 * (generation, version, heartbeat), and `merge` keeps per id the entry that is highest in that
 * order with the tombstone ("removed") above everything and a deterministic tie-break on the
 * content below. Merge is therefore the least upper bound of a per-id total order: commutative,
 * associative and idempotent (MEM-1), and a tombstone once seen is never replaced (MEM-3).
 *
 * Statuses (a closed set; liveness is *not* one of them):
 *  - joining: announced, streaming data in. Its tokens are not on the ring (`ringMembers`); a
 *    coordinator may add it as an extra write target (`pendingMembers`, Cassandra's "pending
 *    ranges") so that writes during the stream are not missed; `MarkUp` ends the stream.
 *  - up: its tokens are on the ring.
 *  - leaving: still on the ring (it owns its ranges until it is gone) while it streams out.
 *  - removed: a tombstone, final for the id. Issued by an operator (`RemoveRequested`, at any
 *    node, for any id, including a node that has left); a removed id can never rejoin. A
 *    removed node that still runs keeps gossiping (so a removal issued *at* that node spreads)
 *    but never heartbeats again; its driver should shut it down (`isRemoved`).
 *
 * Up and down are one observer's opinion, from the phi-accrual detector (impl/core/phi.ts) fed
 * with every fresher heartbeat this node learns, first- or second-hand. Suspicion never changes
 * the ring and is never gossiped: only `RemoveRequested` takes a node off the ring.
 *
 * Peer selection each tick (Cassandra's Gossiper.run): one random live peer; with probability
 * |unreachable| / (|live| + 1) one random unreachable peer (this is what notices a restart or
 * a healed partition); and a random seed when no peer is live, or with probability
 * |seeds| / (|live| + |unreachable| + 1) when the live peer was not a seed. At most three
 * digests per tick; all randomness from a seed held in the state.
 *
 * Deliberately not here: the wire codec (impl/wire), token movement and streaming (the storage
 * node decides when to `MarkUp`), tombstone purge (tombstones are kept for the life of the
 * cluster, bounded by `maxMembers`), authentication of who may remove whom, and any clock.
 *
 * The driver contract: deliver `TickElapsed` every gossip interval; execute `Send` best effort
 * (loss, delay, duplication and reordering are all tolerated); on restart pass a strictly larger
 * `generation`, the own status it last had (persisted when `selfEntry(state)` changes), and
 * optionally the last view (`knownMembers`, like Cassandra's peers table).
 *
 * State is updated in place (as impl/core/node.ts); entries themselves are immutable values,
 * shared freely between states and messages.
 *
 * Invariants kept: MEM-1, MEM-2, MEM-3, FD-1, FD-2, FD-3 (spec/membership.md).
 *
 * Why one file of over 500 lines: the CRDT and the gossip machine share the entry order
 * (`compare`, which gossip's `learn` applies entry by entry as `merge` does for whole views); the
 * CRDT alone is under 100 lines, so splitting it off would leave the machine over 500 lines all
 * the same, and about 50 of them are this comment.
 * Owns: a node's membership view, its gossip state (the round's peers, whether its store is
 * confirmed and its view synced) and its phi detectors, changed in place. Must not: move data
 * (node-rebalance.ts does), remove a member on its own (only an operator's `remove` does), or read
 * a clock (`now` comes with each event).
 *
 */
import { absurd } from "effect/Function"
import type { NodeId } from "./ids.ts"
import * as Phi from "./phi.ts"
import * as Rng from "./rng.ts"
import type { Member } from "./ring.ts"

// ---------------------------------------------------------------------------------------------
// The cluster state (CRDT)

export type Status = "joining" | "up" | "leaving" | "removed"

/** One member as the cluster knows it. Plain JSON-able data, never mutated. */
export interface Entry {
  readonly id: NodeId
  /** Where peers reach it (gossip and replication). */
  readonly peerAddress: string
  /** Where clients reach it (RESP). */
  readonly clientAddress: string
  /** Relative capacity, for the ring's token count. */
  readonly weight: number
  readonly status: Status
  /** Incarnation of the member's process; a restart starts a larger one. */
  readonly generation: number
  /** Bumped by the member on every change of its own fields, by the issuer for "removed". */
  readonly version: number
  /** Bumped by the member on every gossip tick of this generation: the liveness evidence. */
  readonly heartbeat: number
  /**
   * Reclamation (RECLAIM-1, impl/core/node-reap.ts): since when (the member's clock, ms) the
   * member has held no hint and no key it must still hand over; absent while it holds some.
   */
  readonly calm?: number | undefined
  /** The member's clock (ms) at the tick that produced this heartbeat. */
  readonly at?: number | undefined
}

/** What a digest says about one entry: enough to order it, not its content. */
export interface Digest {
  readonly id: NodeId
  readonly removed: boolean
  readonly generation: number
  readonly version: number
  readonly heartbeat: number
}

export type View = ReadonlyMap<NodeId, Entry>

const digestOf = (e: Entry): Digest => ({
  id: e.id,
  removed: e.status === "removed",
  generation: e.generation,
  version: e.version,
  heartbeat: e.heartbeat,
})

const sign = (x: number): number => (x > 0 ? 1 : x < 0 ? -1 : 0)
const compareStrings = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0)

/** Order of two digests of one id: the tombstone first, then generation, version, heartbeat. */
export const compareDigests = (a: Digest, b: Digest): number =>
  Number(a.removed) - Number(b.removed) ||
  sign(a.generation - b.generation) ||
  sign(a.version - b.version) ||
  sign(a.heartbeat - b.heartbeat)

/**
 * A total order on entries of one id. Equal digests with different content only arise from a
 * misconfiguration (two processes with one id and one generation); the content tie-break keeps
 * merge a lattice even then.
 */
export const compare = (a: Entry, b: Entry): number =>
  compareDigests(digestOf(a), digestOf(b)) ||
  compareStrings(a.status, b.status) ||
  compareStrings(a.peerAddress, b.peerAddress) ||
  compareStrings(a.clientAddress, b.clientAddress) ||
  sign(a.weight - b.weight)

/** The larger of two entries of one id. */
export const maxEntry = (a: Entry, b: Entry): Entry => (compare(a, b) >= 0 ? a : b)

/** Per id, the larger entry: the least upper bound of two views (MEM-1). */
export const merge = (a: View, b: View): Map<NodeId, Entry> => {
  const out = new Map(a)
  for (const [id, e] of b) {
    const mine = out.get(id)
    out.set(id, mine === undefined ? e : maxEntry(mine, e))
  }
  return out
}

// ---------------------------------------------------------------------------------------------
// Messages, events, commands

export type Message =
  /** Push-pull, first leg: the sender's digest of its whole view, and where to answer it. */
  | {
      readonly _tag: "GossipDigest"
      readonly address: string
      readonly digests: ReadonlyArray<Digest>
    }
  /** Second leg: entries the digest lacked or had older, and ids the digest had newer. */
  | {
      readonly _tag: "GossipReply"
      readonly entries: ReadonlyArray<Entry>
      readonly requests: ReadonlyArray<NodeId>
    }
  /** Third leg: the requested entries. */
  | { readonly _tag: "GossipAck"; readonly entries: ReadonlyArray<Entry> }

export type Event =
  /** The gossip interval elapsed: heartbeat, then gossip with up to three peers. */
  | { readonly _tag: "TickElapsed"; readonly now: number }
  | {
      readonly _tag: "MessageReceived"
      readonly now: number
      readonly from: NodeId
      readonly message: Message
    }
  /** Operator: announce this node as joining (no-op if it is, or was, a member). */
  | { readonly _tag: "JoinRequested"; readonly now: number }
  /** The storage node finished streaming in: joining -> up (no-op otherwise). */
  | { readonly _tag: "MarkUp"; readonly now: number }
  /** Operator: start decommissioning this node: up -> leaving (no-op otherwise). */
  | { readonly _tag: "LeaveRequested"; readonly now: number }
  /** Operator: remove `node` (any id, this one included) for good. */
  | { readonly _tag: "RemoveRequested"; readonly now: number; readonly node: NodeId }

/** Send `message` to `to`, reachable at `address`. Best effort. */
export type Command = {
  readonly _tag: "Send"
  readonly to: NodeId
  readonly address: string
  readonly message: Message
}

// ---------------------------------------------------------------------------------------------
// The machine's state

export interface SelfInfo {
  readonly id: NodeId
  readonly peerAddress: string
  readonly clientAddress: string
  readonly weight: number
}

export interface SeedInfo {
  readonly id: NodeId
  readonly peerAddress: string
}

export interface Config {
  readonly self: SelfInfo
  /** Contact points for a node that knows nobody yet (may include self). */
  readonly seeds: ReadonlyArray<SeedInfo>
  /** This process's incarnation: strictly larger on every restart. */
  readonly generation: number
  /** The own status this node last had (persisted by the driver); absent: not a member yet. */
  readonly status?: "joining" | "up" | "leaving" | undefined
  /** The last view this node had (persisted by the driver); absent: seeds only. */
  readonly knownMembers?: ReadonlyArray<Entry> | undefined
  /**
   * This node restarted on a store that held its earlier state (the driver loaded a saved
   * view from it). Then a peer holding an entry of this node with a generation at least this
   * incarnation's proves the store older than an earlier run: `StaleStore` is thrown.
   */
  readonly restarted?: boolean | undefined
  /** Seed of the peer-selection generator. */
  readonly randomSeed: number
  readonly phi?: Partial<Phi.Config> | undefined
  /** Suspicion threshold for phi. */
  readonly threshold?: number | undefined
  /** Bound on tracked ids (members and tombstones); ids past it are ignored. */
  readonly maxMembers?: number | undefined
}

export const DEFAULT_MAX_MEMBERS = 4096

export interface Stats {
  ticks: number
  sent: number
  received: number
  /** Entries that replaced or added an entry of the view. */
  learned: number
}

export interface State {
  readonly config: Config
  readonly threshold: number
  readonly maxMembers: number
  /** The view, own entry included once this node is (or was) a member. */
  readonly entries: Map<NodeId, Entry>
  readonly detector: Phi.State
  /** The newest entry of an earlier incarnation of this node that others still hold. */
  staleSelf: Entry | undefined
  /** Generator state (mulberry32). */
  rng: number
  readonly stats: Stats
  /** What the owner of this machine reports as its `calm` on the next heartbeat. */
  calmSince: number | undefined
  /**
   * A restarted node has heard from a peer what it knows of this node, and it was not newer
   * than this incarnation (see `StaleStore`). Until then the node serves no data.
   */
  confirmed: boolean
  /**
   * Whether this node's view has caught up with some peer's whole view since it started:
   * `"synced"` once it merged a peer's GossipReply (every entry that peer had newer than the
   * digest this node sent), or received a peer's digest and learned every entry that digest had
   * newer; before that, what the last peer digest had newer and is not learned yet, or
   * `"waiting"` when no digest came yet. `"synced"` from the start for a node that neither
   * restarted nor joins (its configured view is the cluster's).
   */
  sync: "synced" | "waiting" | Map<NodeId, Digest>
}

export const init = (config: Config, now: number): State => {
  const state: State = {
    config,
    threshold: config.threshold ?? Phi.DEFAULT_THRESHOLD,
    maxMembers: config.maxMembers ?? DEFAULT_MAX_MEMBERS,
    entries: new Map(),
    detector: Phi.make(config.phi),
    staleSelf: undefined,
    rng: config.randomSeed | 0,
    stats: { ticks: 0, sent: 0, received: 0, learned: 0 },
    calmSince: undefined,
    confirmed: config.restarted !== true,
    sync: config.restarted !== true && config.status !== "joining" ? "synced" : "waiting",
  }
  // A loaded view is evidence as of now: every loaded peer is monitored from boot, so one that
  // never heartbeats again (it crashed while we were down) is still suspected in bounded time.
  learn(state, config.knownMembers ?? [], now)
  // The configured members name this node too: learning its own boot entry is no peer's word,
  // and must not confirm a restarted store (it used to, so a restarted node served at once).
  state.confirmed = config.restarted !== true
  const own = state.entries.get(config.self.id)
  if (own?.status !== "removed" && config.status !== undefined) {
    becomeStatus(state, config.status)
  }
  return state
}

// ---------------------------------------------------------------------------------------------
// Queries

const selfId = (state: State): NodeId => state.config.self.id

/** This node's own entry; undefined while it has not joined. */
export const selfEntry = (state: State): Entry | undefined => state.entries.get(selfId(state))

/** This node has been removed: it must not serve and should shut down. */
export const isRemoved = (state: State): boolean => selfEntry(state)?.status === "removed"

/** This node's view of the cluster (tombstones included). */
export const view = (state: State): View => state.entries

/** The detector's suspicion level of `id` (0 for self and for ids never heard). */
export const phiOf = (state: State, id: NodeId, now: number): number =>
  id === selfId(state) ? 0 : Phi.phi(state.detector, id, now)

const availableAt = (state: State, id: NodeId, now: number): boolean =>
  id === selfId(state) || Phi.isAvailable(state.detector, id, now, state.threshold)

const byId = (a: { id: NodeId }, b: { id: NodeId }): number => compareStrings(a.id, b.id)

/** Members (any status but removed) this node believes up, self included; sorted by id. */
export const liveMembers = (state: State, now: number): ReadonlyArray<Entry> =>
  [...state.entries.values()]
    .filter((e) => e.status !== "removed" && availableAt(state, e.id, now))
    .sort(byId)

/** Members (any status but removed) this node suspects; sorted. Never includes self. */
export const down = (state: State, now: number): ReadonlyArray<NodeId> =>
  [...state.entries.values()]
    .filter((e) => e.status !== "removed" && !availableAt(state, e.id, now))
    .map((e) => e.id)
    .sort()

const ringMember = (e: Entry): Member => ({ id: e.id, weight: e.weight })

/**
 * Members whose tokens are on the ring: "up" and "leaving", whether believed up or down
 * (suspicion never moves data; the coordinator routes around down nodes). Sorted by id.
 */
export const ringMembers = (state: State): ReadonlyArray<Member> =>
  [...state.entries.values()]
    .filter((e) => e.status === "up" || e.status === "leaving")
    .sort(byId)
    .map(ringMember)

/** Joining members: not on the ring yet, but extra write targets while they stream in. */
export const pendingMembers = (state: State): ReadonlyArray<Member> =>
  [...state.entries.values()]
    .filter((e) => e.status === "joining")
    .sort(byId)
    .map(ringMember)

/** Digests of the whole view, as a GossipDigest carries them. */
export const digests = (state: State): ReadonlyArray<Digest> =>
  [...state.entries.values()].map(digestOf)

// ---------------------------------------------------------------------------------------------
// The machine

export const step = (state: State, event: Event): readonly [State, ReadonlyArray<Command>] => {
  const out: Array<Command> = []
  switch (event._tag) {
    case "TickElapsed":
      onTick(state, event.now, out)
      break
    case "MessageReceived":
      state.stats.received++
      onMessage(state, event.now, event.from, event.message, out)
      break
    case "JoinRequested":
      // A member (or an ex-member: a tombstone is final) does not join again.
      if (selfEntry(state) === undefined) becomeStatus(state, "joining")
      break
    case "MarkUp":
      if (selfEntry(state)?.status === "joining") becomeStatus(state, "up")
      break
    case "LeaveRequested":
      if (selfEntry(state)?.status === "up") becomeStatus(state, "leaving")
      break
    case "RemoveRequested":
      onRemoveRequested(state, event.node)
      break
    default:
      absurd(event)
  }
  state.stats.sent += out.length
  return [state, out]
}

/** Change the own status, bumping the version past anything an earlier incarnation wrote. */
const becomeStatus = (state: State, status: "joining" | "up" | "leaving"): void => {
  const self = state.config.self
  const own = selfEntry(state)
  let generation = own?.generation ?? state.config.generation
  let version = own?.version ?? 0
  const stale = state.staleSelf
  if (stale !== undefined && compareVersions(stale, generation, version) >= 0) {
    generation = stale.generation
    version = stale.version
  }
  state.entries.set(self.id, {
    id: self.id,
    peerAddress: self.peerAddress,
    clientAddress: self.clientAddress,
    weight: self.weight,
    status,
    generation,
    version: version + 1,
    heartbeat: own?.heartbeat ?? 0,
  })
}

const compareVersions = (e: Entry, generation: number, version: number): number =>
  sign(e.generation - generation) || sign(e.version - version)

const onRemoveRequested = (state: State, node: NodeId): void => {
  const current = state.entries.get(node) ?? (node === selfId(state) ? state.staleSelf : undefined)
  if (current?.status === "removed") return
  if (current === undefined && state.entries.size >= state.maxMembers) return
  const tombstone: Entry =
    current === undefined
      ? // An id this node never heard of: the tombstone still bars it from ever joining.
        {
          id: node,
          peerAddress: "",
          clientAddress: "",
          weight: 0,
          status: "removed",
          generation: 0,
          version: 1,
          heartbeat: 0,
        }
      : { ...current, status: "removed", version: current.version + 1 }
  state.entries.set(node, tombstone)
  Phi.remove(state.detector, node)
}

// ---------------------------------------------------------------------------------------------
// Gossip rounds

/** Uniform [0, 1) from the seed held in the state (impl/core/rng.ts). */
const random = (state: State): number => Rng.uniform(state)

const pick = <T>(state: State, items: ReadonlyArray<T>): T =>
  items[Math.floor(random(state) * items.length)]!

const onTick = (state: State, now: number, out: Array<Command>): void => {
  state.stats.ticks++
  const own = selfEntry(state)
  if (own !== undefined && own.status !== "removed") {
    const { calm: _calm, ...rest } = own
    const calm = state.calmSince === undefined ? {} : { calm: state.calmSince }
    state.entries.set(own.id, { ...rest, ...calm, heartbeat: own.heartbeat + 1, at: now })
  }
  const live: Array<Entry> = []
  const unreachable: Array<Entry> = []
  for (const e of state.entries.values()) {
    if (e.id === selfId(state) || e.status === "removed") continue
    if (availableAt(state, e.id, now)) live.push(e)
    else unreachable.push(e)
  }
  const message: Message = {
    _tag: "GossipDigest",
    address: state.config.self.peerAddress,
    digests: digests(state),
  }
  const sentTo = new Set<NodeId>()
  const send = (to: NodeId, address: string): void => {
    if (sentTo.has(to)) return
    sentTo.add(to)
    out.push({ _tag: "Send", to, address, message })
  }
  let gossipedToSeed = false
  if (live.length > 0) {
    const target = pick(state, live)
    send(target.id, target.peerAddress)
    gossipedToSeed = state.config.seeds.some((s) => s.id === target.id)
  }
  // Probing the unreachable is what notices a restarted node or a healed partition.
  if (unreachable.length > 0 && random(state) < unreachable.length / (live.length + 1)) {
    const target = pick(state, unreachable)
    send(target.id, target.peerAddress)
  }
  if (!gossipedToSeed || live.length < state.config.seeds.length) {
    maybeGossipToSeed(state, live.length, unreachable.length, send)
  }
}

const maybeGossipToSeed = (
  state: State,
  liveCount: number,
  unreachableCount: number,
  send: (to: NodeId, address: string) => void,
): void => {
  // Seeds are configuration: even a removed seed stays a contact point until the operator
  // changes the list. A removed node that still runs answers gossip, and without this a node
  // whose every known peer is removed (a cluster torn down and rebuilt) could talk to nobody.
  const seeds = state.config.seeds.filter((s) => s.id !== selfId(state))
  if (seeds.length === 0) return
  // Not connected to anyone: the seeds are the only way in.
  const p = liveCount === 0 ? 1 : seeds.length / (liveCount + unreachableCount + 1)
  if (random(state) < p) {
    const seed = pick(state, seeds)
    send(seed.id, state.entries.get(seed.id)?.peerAddress ?? seed.peerAddress)
  }
}

const onMessage = (
  state: State,
  now: number,
  from: NodeId,
  message: Message,
  out: Array<Command>,
): void => {
  switch (message._tag) {
    case "GossipDigest":
      return onDigest(state, from, message.address, message.digests, out)
    case "GossipReply":
      learn(state, message.entries, now)
      state.sync = "synced"
      return onRequests(state, from, message.requests, out)
    case "GossipAck":
      learn(state, message.entries, now)
      return
    default:
      return absurd(message)
  }
}

/** Answer a digest with what its sender lacks or has older, and ask for what it has newer. */
const onDigest = (
  state: State,
  from: NodeId,
  address: string,
  incoming: ReadonlyArray<Digest>,
  out: Array<Command>,
): void => {
  const theirs = new Map<NodeId, Digest>()
  // Bounded: a digest longer than our member bound cannot be a peer's honest view.
  for (const d of incoming.slice(0, state.maxMembers)) theirs.set(d.id, d)
  const entries: Array<Entry> = []
  const requests: Array<NodeId> = []
  for (const d of theirs.values()) {
    if (d.id === selfId(state)) checkSelf(state, d)
    const mine = state.entries.get(d.id)
    const order = mine === undefined ? -1 : compareDigests(digestOf(mine), d)
    if (order > 0) entries.push(mine!)
    else if (order < 0 && (mine !== undefined || state.entries.size < state.maxMembers)) {
      requests.push(d.id)
      // What we know of a sender that names a newer run of itself goes back to it, older as it
      // is: a restarted node learns from it that this peer knows no newer run of it (its store
      // is confirmed) or that it does (StaleStore), without waiting for a digest of ours.
      if (d.id === from && mine !== undefined && mine.generation !== d.generation) {
        entries.push(mine)
      }
    }
  }
  for (const e of state.entries.values()) if (!theirs.has(e.id)) entries.push(e)
  if (state.sync !== "synced") {
    // Caught up once the requested entries arrive (from anyone); a later digest starts over,
    // so that a peer that died before answering does not hold this node back for ever.
    state.sync = new Map(
      requests.filter((id) => id !== selfId(state)).map((id) => [id, theirs.get(id)!]),
    )
    syncedIfCaughtUp(state)
  }
  if (entries.length === 0 && requests.length === 0) return
  out.push({ _tag: "Send", to: from, address, message: { _tag: "GossipReply", entries, requests } })
}

/** Answer a reply's requests with our entries (the third leg). */
const onRequests = (
  state: State,
  from: NodeId,
  requests: ReadonlyArray<NodeId>,
  out: Array<Command>,
): void => {
  const entries: Array<Entry> = []
  for (const id of requests.slice(0, state.maxMembers)) {
    const e = state.entries.get(id)
    if (e !== undefined) entries.push(e)
  }
  if (entries.length === 0) return
  const address = addressOf(state, from)
  if (address === undefined) return
  out.push({ _tag: "Send", to: from, address, message: { _tag: "GossipAck", entries } })
}

const addressOf = (state: State, id: NodeId): string | undefined =>
  state.entries.get(id)?.peerAddress ?? state.config.seeds.find((s) => s.id === id)?.peerAddress

/**
 * Merge received entries into the view, feeding the detector with every fresher heartbeat:
 * a new id, a new generation, or a higher heartbeat in the same generation.
 */
const learn = (state: State, incoming: ReadonlyArray<Entry>, now: number): void => {
  for (const e of incoming.slice(0, state.maxMembers)) {
    if (e.id === selfId(state)) {
      learnAboutSelf(state, e)
      continue
    }
    const mine = state.entries.get(e.id)
    if (mine !== undefined && compare(e, mine) <= 0) continue
    if (mine === undefined && state.entries.size >= state.maxMembers) continue
    state.entries.set(e.id, e)
    state.stats.learned++
    if (e.status === "removed") {
      Phi.remove(state.detector, e.id)
      continue
    }
    const fresher =
      mine === undefined ||
      e.generation > mine.generation ||
      (e.generation === mine.generation && e.heartbeat > mine.heartbeat)
    if (fresher) Phi.heartbeat(state.detector, e.id, now)
  }
  syncedIfCaughtUp(state)
}

/**
 * The store this node restarted on is older than one of its earlier runs (restored from a
 * copy): its generation counter went back. Serving from it could bring back keys reclaimed
 * since the copy was taken (RECLAIM-1) and reuse request ids (KV-6), so the node stops.
 */
export class StaleStore extends Error {
  constructor(
    readonly node: NodeId,
    readonly generation: number,
    readonly known: number,
  ) {
    super(
      `node ${node}: its data directory is older than an earlier run of this node (it started ` +
        `as generation ${generation}, the cluster knows generation ${known}): it was restored ` +
        "from a copy. Serving it could bring deleted keys back; start the node with an empty " +
        "data directory and it is refilled from its replicas.",
    )
    this.name = "StaleStore"
  }
}

/**
 * What a peer knows of this node: after a restart on a saved store, anything of a generation at
 * least this incarnation's that this incarnation did not write proves the store older than an
 * earlier run (StaleStore). Anything else confirms the store.
 */
const checkSelf = (state: State, d: Digest): void => {
  const own = selfEntry(state)
  const foreign = own === undefined || compareDigests(d, digestOf(own)) > 0
  if (state.config.restarted === true && foreign && d.generation >= state.config.generation) {
    throw new StaleStore(selfId(state), state.config.generation, d.generation)
  }
  state.confirmed = true
}

/** This node may serve its store: it did not restart on one, or a peer confirmed it. */
export const confirmed = (state: State): boolean => state.confirmed

/** This node's view caught up with a peer's whole view since it started (see `State.sync`). */
export const synced = (state: State): boolean => state.sync === "synced"

/** Not synced yet: synced once the view holds everything the last peer digest had newer. */
const syncedIfCaughtUp = (state: State): void => {
  const behind = state.sync
  if (typeof behind === "string") return
  for (const [id, awaited] of behind) {
    const mine = state.entries.get(id)
    if (mine !== undefined && compareDigests(digestOf(mine), awaited) >= 0) behind.delete(id)
  }
  if (behind.size === 0) state.sync = "synced"
}

/**
 * News about ourselves. A tombstone is final: adopt it. Anything else newer than our own entry
 * was written by an earlier incarnation (or is an older one we must outgrow): remember it and,
 * if we are a member, re-assert our entry above it.
 */
const learnAboutSelf = (state: State, e: Entry): void => {
  const own = selfEntry(state)
  if (e.status === "removed") {
    if (own === undefined || compare(e, own) > 0) {
      state.entries.set(e.id, e)
      state.stats.learned++
    }
    return
  }
  checkSelf(state, digestOf(e))
  if (own !== undefined && compare(e, own) <= 0) return
  if (state.staleSelf === undefined || compare(e, state.staleSelf) > 0) state.staleSelf = e
  if (own !== undefined && own.status !== "removed") becomeStatus(state, own.status)
}
