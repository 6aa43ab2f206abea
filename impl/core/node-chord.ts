/**
 * The storage node under Chord routing (impl/core/node.ts with config.routing "chord"): the
 * Chord machine (impl/core/chord.ts) in place of the gossiped ring. A client request waits for
 * the lookup of its key's successor; the key's replicas are the owner and the next N-1 nodes of
 * the successor list, and the request then runs exactly as under ring routing (quorums, read
 * repair, forwarding of writes to a replica). Data follows the ring by anti-entropy: each node
 * keeps its own arc (predecessor, self] in sync with its first N-1 successors, so a joiner pulls
 * its arc and the survivors of a failure re-replicate theirs; a placement sweep hands keys
 * written during ring changes to their replicas. No membership, gossip, sloppy quorum or
 * rebalancing passes in this mode.
 *
 * Owns: the Chord slice of the node's state (`ChordRouting`: the Chord machine, the address
 * book, parked and routed requests, the join and sweep pacing, the hand-overs in progress). Must not: decide whether this
 * node routes by Chord, or fetch the slice from the node's state itself (node-placement.ts owns
 * the routing mode and hands every function here the slice it works on); run a routed request
 * itself (it queues it in `routed` for the coordinator, once this step's Chord work is done).
 */
import { BadRequest, LookupFailed } from "./failure.ts"
import type { Out } from "./ready.ts"
import { absurd } from "effect/Function"
import { position } from "./hash.ts"
import type { NodeId } from "./ids.ts"
import type { ClientRef, KeyOp, OperatorOp, StoreView, TimerKind } from "./messages.ts"
import * as AntiEntropy from "./anti-entropy.ts"
import * as Chord from "./chord.ts"
import * as Merkle from "./merkle.ts"
import * as Phi from "./phi.ts"
import * as Rng from "./rng.ts"
import type * as Version from "./version.ts"
import {
  fail,
  PUSH_GIVE_UP_REQUESTS,
  respond,
  type ChordRouting,
  type Origin,
  type State,
} from "./node-state.ts"
import type { Config } from "./node-config.ts"

export const initChord = (config: Config): ChordRouting => {
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
    routed: [],
    sweepCursor: undefined,
    nextSweepAt: 0,
    checking: new Map(),
    handOvers: [],
    leaving: false,
    stats: { lookups: 0, lookupFailures: 0, hops: 0, maxHops: 0 },
  }
}

/** Most addresses remembered before the book is trimmed to the peers the state refers to. */
const ADDRESS_BOOK_MAX = 4096

export const learnPeers = (c: ChordRouting, peers: ReadonlyArray<Chord.Peer>): void => {
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

/**
 * The first N distinct nodes of a lookup's successor list, owner first: a key's replicas. The
 * replier closes the list when the list stops short of N (a ring of fewer than N + 1 nodes wraps
 * around to the key's predecessor, which a node's own list never names).
 */
const replicasFrom = (successors: ReadonlyArray<Chord.Peer>, n: number, replier: Chord.Peer) => {
  const out: Array<Chord.Peer> = []
  for (const p of [...successors, replier]) {
    if (out.length >= n) break
    if (!out.some((q) => q.id === p.id)) out.push(p)
  }
  return out
}

/** Park a request until the lookup of its key's successor completes (then `routed` runs it). */
export const lookupThen = (
  state: State,
  c: ChordRouting,
  now: number,
  origin: Origin,
  op: KeyOp,
  store: StoreView,
  out: Out,
): void => {
  lookUp(state, c, now, op.key, store, out, (id) => c.parked.set(id, { origin, op }))
}

/**
 * Start the lookup of `key`'s successor. `register` registers its id first: a node that owns the
 * key answers within this very step.
 */
const lookUp = (
  state: State,
  c: ChordRouting,
  now: number,
  key: string,
  store: StoreView,
  out: Out,
  register: (rid: number) => void,
): void => {
  const rid = state.nextRid++
  register(rid)
  const target = position(key)
  chordStep(state, c, now, { _tag: "LookupRequested", now, rid, target }, store, out)
}

const chordStep = (
  state: State,
  c: ChordRouting,
  now: number,
  event: Chord.ChordEvent,
  store: StoreView,
  out: Out,
): void => {
  const [next, commands] = Chord.step(c.ring, event)
  c.ring = next
  for (const cmd of commands) {
    switch (cmd._tag) {
      case "Send":
        out.sendNow({ _tag: "Send", to: cmd.to, message: { _tag: "Chord", message: cmd.message } })
        break
      case "ScheduleTimer":
        out.setTimer(
          cmd.timer._tag === "Stabilize"
            ? { _tag: "SetTimer", rid: 0, kind: "ChordStabilize", at: cmd.at }
            : { _tag: "SetTimer", rid: cmd.timer.rid, kind: "ChordRpc", at: cmd.at },
        )
        break
      case "LookupCompleted": {
        const sweep = c.checking.get(cmd.rid)
        if (sweep !== undefined) {
          c.checking.delete(cmd.rid)
          learnPeers(c, cmd.successors)
          const replicas = replicasFrom(cmd.successors, state.config.n, cmd.replier).map(
            (p) => p.id,
          )
          handBack(state, now, sweep.key, sweep.obj, replicas, out)
          break
        }
        const parked = c.parked.get(cmd.rid)
        if (parked === undefined) break
        c.parked.delete(cmd.rid)
        c.stats.lookups++
        c.stats.hops += cmd.hops
        c.stats.maxHops = Math.max(c.stats.maxHops, cmd.hops)
        learnPeers(c, cmd.successors)
        const replicas = replicasFrom(cmd.successors, state.config.n, cmd.replier)
        const { origin, op } = parked
        // The coordinator (impl/core/node.ts) runs it, once this step's Chord work is done; a
        // list shorter than the quorum fails there, as any request with too few replicas does.
        c.routed.push({ origin, op, replicas })
        break
      }
      case "LookupFailed": {
        c.checking.delete(cmd.rid) // a sweep lookup: the next pass tries again
        const parked = c.parked.get(cmd.rid)
        if (parked === undefined) break
        c.parked.delete(cmd.rid)
        c.stats.lookupFailures++
        const failure = { reason: cmd.reason, hops: cmd.hops, timeouts: cmd.timeouts }
        fail(state, parked.origin, new LookupFailed(failure), out)
        break
      }
      case "JoinFailed":
        c.nextJoinAt = now + state.config.chord.stabilizeIntervalMs
        // A ring member answered (the join failed further on): there is a ring, so the first
        // seed starts its round of the other seeds again rather than ever creating another.
        if (cmd.hops > 0 && isCreator(state)) c.nextSeed = 0
        break
      case "JoinCompleted":
        // Joined (or created): the seed checks start one check interval from now.
        c.nextJoinAt = now + CHECK_INTERVALS * state.config.chord.stabilizeIntervalMs
        c.nextSeed = 0
        break
      case "HandOver":
        handOver(state, c, cmd, store, out)
        break
      default:
        absurd(cmd)
    }
  }
  refreshNeighbourhood(state, c, now)
}

/** A Chord message from a peer: its peers go into the address book, then to the machine. */
export const onMessage = (
  state: State,
  c: ChordRouting,
  now: number,
  from: NodeId,
  message: Chord.ChordMessage,
  store: StoreView,
  out: Out,
): void => {
  learnPeers(c, Chord.peersIn(message))
  chordStep(state, c, now, { _tag: "MessageReceived", now, from, message }, store, out)
}

/** The Chord machine's timers: the stabilize round and an RPC's timeout. */
export const onTimer = (
  state: State,
  c: ChordRouting,
  now: number,
  rid: number,
  kind: Extract<TimerKind, "ChordStabilize" | "ChordRpc">,
  store: StoreView,
  out: Out,
): void => {
  const event: Chord.ChordEvent =
    kind === "ChordStabilize"
      ? { _tag: "StabilizeTicked", now, random: Rng.uniform(c.random) }
      : { _tag: "RpcTimedOut", now, rid }
  chordStep(state, c, now, event, store, out)
}

/** Stabilize intervals between two seed checks of a member (CheckRequested). */
const CHECK_INTERVALS = 5

/** The first seed creates the ring (when no other seed is in one). */
const isCreator = (state: State): boolean => state.config.chordSeeds[0]?.id === state.config.self

/**
 * Start Chord: join through a seed, or create a ring (the first seed, once a whole round of the
 * others found no ring; or a node with no other seed); after a failed attempt, again a
 * stabilize interval later. Once a member, check every CHECK_INTERVALS intervals, through the
 * seeds in turn, that the seed's ring agrees on this node's place (merging two rings if not).
 *
 * Why the first seed cannot split the ring: a seed in no ring refuses a join through it at once,
 * a seed in the ring answers it, and a restarted node takes its old place even while the ring
 * still lists it; so a round in which no seed answered means every other seed is in no ring or
 * unreachable (a lost message is retried: a peer is silent only after timeoutsBeforeDead
 * timeouts in a row). Should a ring form beside another anyway (a partition, every seed
 * restarted at once while other nodes kept the ring), the seed checks merge the two.
 *
 * While Idle, `nextJoinAt` and `nextSeed` pace the join attempts; while Active, the checks.
 */
const maybeJoinChord = (state: State, c: ChordRouting, now: number, store: StoreView, out: Out) => {
  const interval = state.config.chord.stabilizeIntervalMs
  const seeds = state.config.chordSeeds.filter((p) => p.id !== state.config.self)
  if (c.ring.status === "Idle" && now >= c.nextJoinAt) {
    // A join that neither completes nor fails (its lookup still running) is not repeated.
    c.nextJoinAt = now + 4 * interval
    const creator = isCreator(state)
    const attempt = c.nextSeed++
    // The first seed asks the others in turn, and creates the ring after a whole round in
    // which none answered as a ring member (each refused or stayed silent); an answer starts
    // the round again (JoinFailed above). Others ask the first seed (the introducer) every
    // other attempt, and the rest in turn in between, in case the introducer is gone; they
    // never create a ring while they have another seed.
    const create = seeds.length === 0 || (creator && attempt >= seeds.length)
    const turn = creator
      ? attempt
      : attempt % 2 === 0 || seeds.length === 1
        ? 0
        : 1 + ((attempt >> 1) % (seeds.length - 1))
    const via = create ? null : seeds[turn]!
    chordStep(state, c, now, { _tag: "JoinRequested", now, via }, store, out)
  } else if (c.ring.status === "Active" && seeds.length > 0 && now >= c.nextJoinAt) {
    c.nextJoinAt = now + CHECK_INTERVALS * interval
    const via = seeds[c.nextSeed++ % seeds.length]!
    chordStep(state, c, now, { _tag: "CheckRequested", now, via }, store, out)
  }
  if (!c.started) {
    c.started = true
    const random = Rng.uniform(c.random)
    chordStep(state, c, now, { _tag: "StabilizeTicked", now, random }, store, out)
  }
  maybeSweep(state, c, now, store, out)
}

/** Keys the placement sweep looks up per stabilize interval (a lookup costs O(log N) hops). */
const SWEEP_KEYS_PER_ROUND = 32

const maybeSweep = (
  state: State,
  c: ChordRouting,
  now: number,
  store: StoreView,
  out: Out,
): void => {
  const pred = c.ring.predecessor
  if (c.ring.status !== "Active" || pred === null || now < c.nextSweepAt) return
  if (c.checking.size > 0) return // the previous round's lookups are still running
  c.nextSweepAt = now + state.config.chord.stabilizeIntervalMs
  // A hand-back some replica never acknowledged (it died) is forgotten: the key is swept again,
  // and its new lookup names the replicas the ring has now.
  for (const [key, push] of state.rebalance.pushes) {
    if (now - push.since >= PUSH_GIVE_UP_REQUESTS * state.config.requestTimeoutMs) {
      state.rebalance.pushes.delete(key)
    }
  }
  const batch = store.scan(c.sweepCursor, SWEEP_KEYS_PER_ROUND)
  c.sweepCursor = batch.length < SWEEP_KEYS_PER_ROUND ? undefined : batch[batch.length - 1]![0]
  const own: Merkle.Range = { start: pred.pos, end: c.ring.self.pos }
  for (const [key, obj] of batch) {
    if (Merkle.contains(own, key) || state.rebalance.pushes.has(key)) continue
    lookUp(state, c, now, key, store, out, (id) => c.checking.set(id, { key, obj }))
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
  out: Out,
): void => {
  const self = state.config.self
  if (replicas.includes(self) || replicas.length === 0) return
  const coordinated = obj.entries.some((e) => e.actor === self)
  state.rebalance.pushes.set(key, {
    obj,
    waiting: new Set(replicas),
    since: now,
    sentAt: now,
    drop: !coordinated,
  })
  for (const to of replicas)
    out.sendAfterPersist({ _tag: "Send", to, message: { _tag: "StreamPush", key, obj } })
  state.stats.streamed++
}

/**
 * Heartbeats go to the Chord neighbourhood (successors and predecessor), and anti-entropy
 * keeps this node's arc (predecessor, self] in sync with its first N-1 successors.
 */
const refreshNeighbourhood = (state: State, c: ChordRouting, now: number): void => {
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

/** A tick: the next page of a hand-over in progress, then joining, checks and the sweep. */
export const tick = (
  state: State,
  c: ChordRouting,
  now: number,
  store: StoreView,
  out: Out,
): void => {
  if (c.handOvers.length > 0) handOverPage(state, c, store, out)
  maybeJoinChord(state, c, now, store, out)
}

/** Hand-overs queued at most: a later one evicts the oldest (see `handOver`). */
const HAND_OVERS_MAX = 16

/**
 * Chord's HandOver: the keys of (from, through] now belong to `to`, on a graceful leave (section
 * 5.3: this node's arc to its successor) or when a new predecessor took part of the arc. They go
 * as repairs (the successor already holds most of them as a replica; anti-entropy re-replicates
 * the arc from there), a page of `streamBatch` keys per tick, the first page at once. Past
 * HAND_OVERS_MAX queued, the oldest is dropped: a predecessor's keys also reach it by
 * anti-entropy and the placement sweep, and a leave's hand-over is the last one queued (a node
 * that left emits no more).
 */
const handOver = (
  state: State,
  c: ChordRouting,
  cmd: Extract<Chord.ChordCommand, { _tag: "HandOver" }>,
  store: StoreView,
  out: Out,
): void => {
  const range: Merkle.Range = { start: cmd.from ?? cmd.through, end: cmd.through }
  if (c.handOvers.length >= HAND_OVERS_MAX) c.handOvers.shift()
  c.handOvers.push({ to: cmd.to.id, range, all: cmd.from === null, cursor: undefined })
  if (c.handOvers.length === 1) handOverPage(state, c, store, out)
}

/** The next page of the oldest hand-over; once none is left, a leaving node stops. */
const handOverPage = (state: State, c: ChordRouting, store: StoreView, out: Out): void => {
  const job = c.handOvers[0]
  if (job !== undefined) {
    const batch = state.config.streamBatch
    const page = store.scan(job.cursor, batch)
    for (const [key, obj] of page) {
      if (!job.all && !Merkle.contains(job.range, key)) continue
      out.sendAfterPersist({ _tag: "Send", to: job.to, message: { _tag: "Repair", key, obj } })
    }
    job.cursor = page[page.length - 1]?.[0]
    if (page.length < batch) c.handOvers.shift()
  }
  if (c.leaving && c.handOvers.length === 0) {
    // Every key is on its way: the node stops a few rounds from now (node-membership.ts).
    c.leaving = false
    state.removedAt = state.now
  }
}

/** Operator intents under Chord routing: a node joins at start-up and leaves gracefully. */
export const onOperator = (
  state: State,
  c: ChordRouting,
  now: number,
  client: ClientRef,
  op: OperatorOp,
  store: StoreView,
  out: Out,
): void => {
  const origin: Origin = { _tag: "Client", client }
  const status = c.ring.status
  const ok = (message: string) => respond(state, origin, { _tag: "Done", message }, out)
  const badRequest = (detail: string) => fail(state, origin, new BadRequest({ detail }), out)
  switch (op._tag) {
    case "Join":
      return ok(`Chord routing: this node joins through its seeds at start-up (${status})`)
    case "Leave":
      if (status !== "Active") {
        return badRequest(`cannot leave: this node is ${status}`)
      }
      c.leaving = true
      chordStep(state, c, now, { _tag: "LeaveRequested", now }, store, out)
      if (c.handOvers.length === 0) handOverPage(state, c, store, out)
      return ok("leaving: this node's arc goes to its successor, then the node stops")
    case "Remove":
      return badRequest(
        "Chord routing keeps no membership to remove a node from: stabilization routes around " +
          "a dead node by itself",
      )
    default:
      return absurd(op)
  }
}

/** What `dht status` shows of a Chord node: its routing state and lookup statistics. */
export const report = (state: State, c: ChordRouting) => {
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
    tablePeers: known.size,
    lookups: c.stats.lookups,
    lookupFailures: c.stats.lookupFailures,
    meanHops: c.stats.lookups === 0 ? 0 : c.stats.hops / c.stats.lookups,
    maxHops: c.stats.maxHops,
  }
}
