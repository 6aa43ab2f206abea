/**
 * The deterministic Chord simulator: many impl/core/chord.ts machines, unchanged, on a virtual
 * network with virtual time, in one process. One seeded generator decides every latency and every
 * random choice, so a run is a pure function of (seed, configuration, calls made on it).
 *
 * Network model (as in the paper's simulator, section 6.1 and 6.5): every message is delayed by
 * an exponentially distributed latency (mean `latencyMeanMs`); messages to a failed node vanish,
 * so its peers learn of the failure only through their RPC deadlines. A failed node's timers are
 * gone. There is no loss or partition model here (impl/sim/sim.ts has those for the KV nodes).
 *
 * At scale (2^17 nodes) the experiments start from a ring built by `buildStabilized` from the
 * omniscient model (models/chord.ts), as the paper did; every lookup then runs as real messages
 * through the machines. Joins, failures and churn always run the real protocol.
 *
 * Memory is bounded by the number of nodes and messages in flight: no message history is kept,
 * only counters (total, per tag, and per watched node).
 *
 * Deliberately not here: key storage, wall-clock time, real I/O.
 */
import * as Chord from "../core/chord.ts"
import { position, utf8Bytes } from "../core/hash.ts"
import { NodeId } from "../core/ids.ts"
import * as Model from "../../models/chord.ts"
import { Prng } from "./prng.ts"

export interface ChordSimConfig {
  readonly seed: number
  readonly chord: Chord.ChordConfig
  /** Mean of the exponential message latency (the paper used 50 ms). */
  readonly latencyMeanMs: number
  /**
   * Latencies above this are cut to it. Infinity reproduces the paper's model, where a request
   * and its reply now and then take longer than the RPC timeout (a false suspicion); properties
   * that compare against the model after stabilization set it below rpcTimeoutMs / 2.
   */
  readonly latencyCapMs: number
  /** How often a failed join is retried through another live member before giving up. */
  readonly joinRetriesMax: number
}

/**
 * The experiments' network: the paper's exponential latency with mean 50 ms, cut at 240 ms so
 * that a live peer always answers within the 500 ms RPC timeout. Without the cut about one RPC
 * in 2,000 times out against a live peer; at 10^4 nodes that is a few dozen false suspicions
 * per round, and "the ring has converged" is never true at any one instant.
 */
export const defaultSimConfig = (
  seed: number,
  chord: Partial<Chord.ChordConfig> = {},
): ChordSimConfig => {
  const merged = { ...Chord.defaultConfig, ...chord }
  return {
    seed,
    chord: merged,
    latencyMeanMs: 50,
    latencyCapMs: merged.rpcTimeoutMs / 2 - 10,
    joinRetriesMax: 5,
  }
}

/** How a lookup ended, as its originator saw it. */
export type LookupOutcome =
  | {
      readonly _tag: "Completed"
      readonly owner: Chord.Peer
      readonly successors: ReadonlyArray<Chord.Peer>
      readonly hops: number
      readonly timeouts: number
    }
  | {
      readonly _tag: "Failed"
      readonly reason: Chord.LookupFailure
      readonly hops: number
      readonly timeouts: number
    }

const KIND_MESSAGE = 0
const KIND_STABILIZE = 1
const KIND_DEADLINE = 2

interface Scheduled {
  readonly at: number
  readonly seq: number
  readonly node: number
  readonly kind: number
  readonly from: number
  readonly message: Chord.ChordMessage | null
  readonly rid: number
  /** The incarnation of `node` it was meant for: a node restarted since never sees it. */
  readonly inc: number
}

/** Binary min-heap on (at, seq): deterministic order for simultaneous events. */
class EventHeap {
  private items: Array<Scheduled> = []
  get size(): number {
    return this.items.length
  }
  peekAt(): number {
    return this.items.length > 0 ? this.items[0]!.at : Number.POSITIVE_INFINITY
  }
  push(item: Scheduled): void {
    const a = this.items
    a.push(item)
    let i = a.length - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      const p = a[parent]!
      if (p.at < item.at || (p.at === item.at && p.seq < item.seq)) break
      a[i] = p
      i = parent
    }
    a[i] = item
  }
  pop(): Scheduled | undefined {
    const a = this.items
    const top = a[0]
    const last = a.pop()
    if (top === undefined || last === undefined || a.length === 0) return top
    let i = 0
    const n = a.length
    for (;;) {
      const l = 2 * i + 1
      if (l >= n) break
      const r = l + 1
      let c = l
      const lc = a[l]!
      if (r < n) {
        const rc = a[r]!
        if (rc.at < lc.at || (rc.at === lc.at && rc.seq < lc.seq)) c = r
      }
      const ci = a[c]!
      if (last.at < ci.at || (last.at === ci.at && last.seq < ci.seq)) break
      a[i] = ci
      i = c
    }
    a[i] = last
    return top
  }
  clear(): void {
    this.items = []
  }
}

/** Counters for one watched node (e.g. a joiner): messages it sent and received. */
export interface Watch {
  sent: number
  received: number
}

export class ChordSim {
  readonly config: ChordSimConfig
  readonly prng: Prng
  now = 0
  /** Messages handed to the network, delivered, and dropped (addressed to a dead node). */
  readonly stats = { sent: 0, delivered: 0, dropped: 0, steps: 0, byTag: new Map<string, number>() }
  /** Called when a node becomes Active through a join (not for nodes built stabilized). */
  onJoined: ((node: number, hops: number) => void) | null = null
  /** Called when a join gave up after its retries; the node is then failed by the simulator. */
  onJoinAbandoned: ((node: number) => void) | null = null
  /** Sees every command a machine emits, before the simulator carries it out (for tests). */
  onCommand: ((node: number, command: Chord.ChordCommand) => void) | null = null
  /** Called when a live node's stabilize timer fires, just before the machine sees the tick. */
  onTick: ((node: number) => void) | null = null

  private readonly peers: Array<Chord.Peer> = []
  private readonly states: Array<Chord.ChordState> = []
  private readonly alive: Array<boolean> = []
  /** Restarts of each node (restart): events scheduled for an earlier incarnation are lost. */
  private readonly incarnation: Array<number> = []
  private readonly index = new Map<string, number>()
  private readonly byPos = new Map<number, number>()
  /** Live nodes, for O(1) uniform sampling (swap-remove on failure). */
  private readonly liveList: Array<number> = []
  private readonly livePos: Array<number> = []
  private readonly heap = new EventHeap()
  private seq = 0
  private nextRid = 0
  private readonly lookupWaiters = new Map<number, (outcome: LookupOutcome) => void>()
  private readonly joinRetries = new Map<number, number>()
  private readonly watches = new Map<number, Watch>()

  constructor(config: ChordSimConfig) {
    this.config = config
    this.prng = new Prng(config.seed)
  }

  // -------------------------------------------------------------------------------------------
  // Population

  get size(): number {
    return this.peers.length
  }
  get liveCount(): number {
    return this.liveList.length
  }
  peer(node: number): Chord.Peer {
    return this.peers[node]!
  }
  state(node: number): Chord.ChordState {
    return this.states[node]!
  }
  isAlive(node: number): boolean {
    return this.alive[node] === true
  }
  /** Alive and a ring member (joined, not left). */
  isMember(node: number): boolean {
    return this.alive[node] === true && this.states[node]!.status === "Active"
  }
  nodeOf(id: string): number | undefined {
    return this.index.get(id)
  }
  /** The (first added) node at ring position `pos`. */
  nodeAt(pos: number): number | undefined {
    return this.byPos.get(pos)
  }
  liveNodes(): ReadonlyArray<number> {
    return this.liveList
  }

  /** Add a node (not yet joined unless `state` says otherwise). Returns its index. */
  addNode(peer: Chord.Peer, state?: Chord.ChordState): number {
    if (this.index.has(peer.id)) throw new Error(`duplicate node id ${peer.id}`)
    const node = this.peers.length
    this.peers.push(peer)
    this.states.push(state ?? Chord.init(this.config.chord, peer))
    this.alive.push(true)
    this.incarnation.push(0)
    this.index.set(peer.id, node)
    if (!this.byPos.has(peer.pos)) this.byPos.set(peer.pos, node)
    this.livePos.push(this.liveList.length)
    this.liveList.push(node)
    return node
  }

  /** Fail-stop: the node vanishes; its messages and timers with it. */
  fail(node: number): void {
    if (!this.alive[node]) return
    this.alive[node] = false
    const at = this.livePos[node]!
    const last = this.liveList.pop()!
    if (last !== node) {
      this.liveList[at] = last
      this.livePos[last] = at
    }
    this.livePos[node] = -1
  }

  /**
   * The node crashes and comes straight back, as a process restarted from scratch: a fresh,
   * not joined machine at the same id and position. Its timers and the messages on their way to
   * it are lost (a restarted process has new connections). It then needs `startTicking` and
   * `join`.
   */
  restart(node: number): void {
    if (!this.alive[node]) throw new Error(`node ${node} is not alive`)
    this.incarnation[node]!++
    this.states[node] = Chord.init(this.config.chord, this.peers[node]!)
    this.joinRetries.delete(node)
  }

  /** A uniformly random ring member, or undefined when none is found within a few draws. */
  randomMember(): number | undefined {
    const n = this.liveList.length
    if (n === 0) return undefined
    for (let tries = 0; tries < 64; tries++) {
      const node = this.liveList[this.prng.int(n)]!
      if (this.isMember(node)) return node
    }
    for (const node of this.liveList) if (this.isMember(node)) return node
    return undefined
  }

  /** The omniscient model over the current ring members. */
  model(): Model.ChordModel {
    const positions: Array<number> = []
    for (const node of this.liveList) if (this.isMember(node)) positions.push(this.peers[node]!.pos)
    return Model.make(positions)
  }

  /** Count messages sent and received by `node` from now on. */
  watch(node: number): Watch {
    const w = { sent: 0, received: 0 }
    this.watches.set(node, w)
    return w
  }
  unwatch(node: number): void {
    this.watches.delete(node)
  }

  // -------------------------------------------------------------------------------------------
  // Driving the machines

  /** Start the node's stabilize timer at `at` (the machine reschedules it from then on). */
  startTicking(node: number, at: number): void {
    this.push(at, node, KIND_STABILIZE, -1, null, -1)
  }

  join(node: number, via: number | null): void {
    const viaPeer = via === null ? null : this.peers[via]!
    this.deliver(node, { _tag: "JoinRequested", now: this.now, via: viaPeer })
  }

  /** The member looks its own position up through `via` (a seed) and merges rings if need be. */
  check(node: number, via: number): void {
    this.deliver(node, { _tag: "CheckRequested", now: this.now, via: this.peers[via]! })
  }

  leave(node: number): void {
    this.deliver(node, { _tag: "LeaveRequested", now: this.now })
  }

  /** Start a lookup for ring position `target` at `node`; `done` gets its outcome. */
  lookup(node: number, target: number, done: (outcome: LookupOutcome) => void): void {
    const rid = this.nextRid++
    this.lookupWaiters.set(rid, done)
    this.deliver(node, { _tag: "LookupRequested", now: this.now, rid, target })
  }

  /** Process events up to and including time `until` (or until `stop` holds, or the budget). */
  runUntil(until: number, stop?: () => boolean, eventsMax = Number.POSITIVE_INFINITY): void {
    let budget = eventsMax
    while (this.heap.peekAt() <= until && budget-- > 0) {
      this.runOne()
      if (stop?.()) return
    }
    if (this.heap.peekAt() > until && until !== Number.POSITIVE_INFINITY)
      this.now = Math.max(this.now, until)
  }

  /** Process events until `stop` holds or nothing is left (bounded by eventsMax). */
  runWhile(more: () => boolean, eventsMax = Number.POSITIVE_INFINITY): void {
    let budget = eventsMax
    while (more() && this.heap.size > 0 && budget-- > 0) this.runOne()
  }

  private runOne(): void {
    const ev = this.heap.pop()!
    this.now = ev.at
    if (!this.alive[ev.node] || ev.inc !== this.incarnation[ev.node]) return
    switch (ev.kind) {
      case KIND_MESSAGE: {
        this.stats.delivered++
        const w = this.watches.get(ev.node)
        if (w !== undefined) w.received++
        this.deliver(ev.node, {
          _tag: "MessageReceived",
          now: ev.at,
          from: this.peers[ev.from]!.id,
          message: ev.message!,
        })
        return
      }
      case KIND_STABILIZE:
        this.onTick?.(ev.node)
        this.deliver(ev.node, { _tag: "StabilizeTicked", now: ev.at, random: this.prng.float() })
        return
      default:
        this.deliver(ev.node, { _tag: "RpcTimedOut", now: ev.at, rid: ev.rid })
    }
  }

  private deliver(node: number, event: Chord.ChordEvent): void {
    const [next, commands] = Chord.step(this.states[node]!, event)
    this.states[node] = next
    this.stats.steps++
    for (const c of commands) {
      this.onCommand?.(node, c)
      this.execute(node, c)
    }
  }

  private execute(node: number, c: Chord.ChordCommand): void {
    switch (c._tag) {
      case "Send": {
        const to = this.index.get(c.to)
        this.stats.sent++
        const tag = c.message._tag
        this.stats.byTag.set(tag, (this.stats.byTag.get(tag) ?? 0) + 1)
        const w = this.watches.get(node)
        if (w !== undefined) w.sent++
        if (to === undefined || !this.alive[to]) {
          this.stats.dropped++
          return
        }
        const sample = -this.config.latencyMeanMs * Math.log(1 - this.prng.float())
        const latency = Math.min(sample, this.config.latencyCapMs)
        this.push(this.now + latency, to, KIND_MESSAGE, node, c.message, -1)
        return
      }
      case "ScheduleTimer":
        if (c.timer._tag === "Stabilize") this.push(c.at, node, KIND_STABILIZE, -1, null, -1)
        else this.push(c.at, node, KIND_DEADLINE, -1, null, c.timer.rid)
        return
      case "LookupCompleted":
      case "LookupFailed": {
        const done = this.lookupWaiters.get(c.rid)
        if (done === undefined) return
        this.lookupWaiters.delete(c.rid)
        done(
          c._tag === "LookupCompleted"
            ? {
                _tag: "Completed",
                owner: c.owner,
                successors: c.successors,
                hops: c.hops,
                timeouts: c.timeouts,
              }
            : { _tag: "Failed", reason: c.reason, hops: c.hops, timeouts: c.timeouts },
        )
        return
      }
      case "JoinCompleted":
        this.joinRetries.delete(node)
        this.onJoined?.(node, c.hops)
        return
      case "JoinFailed":
        this.retryJoin(node)
        return
      case "HandOver":
        return
    }
  }

  private retryJoin(node: number): void {
    const tries = (this.joinRetries.get(node) ?? 0) + 1
    const via = this.randomMember()
    if (tries > this.config.joinRetriesMax || via === undefined) {
      this.joinRetries.delete(node)
      this.fail(node)
      this.onJoinAbandoned?.(node)
      return
    }
    this.joinRetries.set(node, tries)
    this.join(node, via)
  }

  private push(
    at: number,
    node: number,
    kind: number,
    from: number,
    message: Chord.ChordMessage | null,
    rid: number,
  ): void {
    const inc = this.incarnation[node]!
    this.heap.push({ at, seq: this.seq++, node, kind, from, message, rid, inc })
  }

  // -------------------------------------------------------------------------------------------
  // Observations against the omniscient model

  /** The first entry of a node's successor list that is still a member (what it would reach). */
  firstLiveSuccessor(node: number): number | undefined {
    for (const p of this.states[node]!.successors) {
      const i = this.index.get(p.id)
      if (i !== undefined && this.isMember(i)) return i
    }
    return undefined
  }

  /** Members whose successor (first list entry) or predecessor differs from the model's. */
  ringErrors(model: Model.ChordModel = this.model()): { successors: number; predecessors: number } {
    let successors = 0
    let predecessors = 0
    for (const node of this.liveList) {
      if (!this.isMember(node)) continue
      const s = this.states[node]!
      const pos = this.peers[node]!.pos
      const alone = model.positions.length === 1
      const succ = s.successors[0]
      if (succ === undefined || succ.pos !== (alone ? pos : Model.nextOf(model, pos))) successors++
      const pred = s.predecessor
      if (alone ? pred !== null && pred.pos !== pos : pred?.pos !== Model.previousOf(model, pos)) {
        predecessors++
      }
    }
    return { successors, predecessors }
  }

  /**
   * Overwrite every finger of member `node` with the model's true finger (null where the model
   * says "self"). An oracle, outside the protocol: no message is sent. It stands in for the
   * paper's churn simulator, which refreshed every finger entry each time a node stabilized
   * (section 6.5), where our machine refreshes one finger per tick.
   */
  setTrueFingers(node: number, model: Model.ChordModel): void {
    const s = this.states[node]!
    if (!this.isMember(node)) return
    const m = s.config.fingerBits
    const fingers: Array<Chord.Peer | null> = []
    for (let k = 0; k < m; k++) {
      const truth = Model.successorOf(model, Chord.fingerStart(s.self.pos, k, m))
      const owner = truth === s.self.pos ? undefined : this.byPos.get(truth)
      fingers.push(owner === undefined ? null : this.peers[owner]!)
    }
    this.states[node] = { ...s, fingers }
  }

  /** Fingers of `node` that differ from the model's (null where the model says "self"). */
  fingerErrors(node: number, model: Model.ChordModel = this.model()): number {
    const s = this.states[node]!
    const m = s.config.fingerBits
    let wrong = 0
    for (let k = 0; k < m; k++) {
      const truth = Model.successorOf(model, Chord.fingerStart(s.self.pos, k, m))
      const f = s.fingers[k]
      if (truth === s.self.pos ? f !== null : f?.pos !== truth) wrong++
    }
    return wrong
  }

  /** Members with a finger or successor-list entry naming a node that is no longer a member. */
  staleReferences(): number {
    let stale = 0
    for (const node of this.liveList) {
      if (!this.isMember(node)) continue
      const s = this.states[node]!
      const dead = (p: Chord.Peer | null) => {
        if (p === null) return false
        const i = this.index.get(p.id)
        return i === undefined || !this.isMember(i)
      }
      if (s.fingers.some(dead) || s.successors.some(dead)) stale++
    }
    return stale
  }

  /**
   * Is the ring connected? Follow each member's first live successor: all members must lead into
   * one and the same cycle. Returns the number of distinct cycles found (1 = connected; 0 = no
   * members) and whether some member has no live successor at all.
   */
  ringCycles(): { cycles: number; stranded: number; cycleLength: number } {
    const members = this.liveList.filter((n) => this.isMember(n))
    const color = new Map<number, number>() // node -> cycle id it leads to
    let cycles = 0
    let stranded = 0
    let cycleLength = 0
    for (const start of members) {
      if (color.has(start)) continue
      const path: Array<number> = []
      const onPath = new Map<number, number>()
      let cur: number | undefined = start
      let reached = -1
      while (cur !== undefined && path.length <= members.length) {
        const known = color.get(cur)
        if (known !== undefined) {
          reached = known
          break
        }
        const at = onPath.get(cur)
        if (at !== undefined) {
          reached = cycles++
          cycleLength = Math.max(cycleLength, path.length - at)
          break
        }
        onPath.set(cur, path.length)
        path.push(cur)
        cur = this.firstLiveSuccessor(cur)
      }
      if (cur === undefined) {
        stranded++
        reached = -2
      }
      for (const n of path) color.set(n, reached)
    }
    return { cycles, stranded, cycleLength }
  }
}

// ---------------------------------------------------------------------------------------------
// Building rings

/** A node id and its ring position (hash.position of the id's UTF-8 bytes). */
export const peerOf = (id: string): Chord.Peer => ({ id: NodeId(id), pos: position(utf8Bytes(id)) })

/** Distinct peers named `${prefix}${i}`, skipping the (astronomically rare) position collisions. */
export const makePeers = (prefix: string, count: number): Array<Chord.Peer> => {
  const seen = new Set<number>()
  const out: Array<Chord.Peer> = []
  for (let i = 0; out.length < count; i++) {
    const p = peerOf(`${prefix}${i}`)
    if (seen.has(p.pos)) continue
    seen.add(p.pos)
    out.push(p)
  }
  return out
}

/** The sorted ring of `peers` with a binary-search successor function (models/chord.ts). */
export const sortedRing = (peers: ReadonlyArray<Chord.Peer>): Chord.SortedRing => {
  const sorted = [...peers].sort((a, b) => a.pos - b.pos)
  const model = Model.make(sorted.map((p) => p.pos))
  return { peers: sorted, successorIndex: (pos) => Model.successorIndex(model, pos) }
}

/**
 * A simulator whose nodes start from the converged ring of `peers` (successor lists, predecessors
 * and fingers computed from the omniscient model), as the paper's large-scale runs did.
 * Nodes do not tick until `startTicking` is called.
 */
export const buildStabilized = (
  config: ChordSimConfig,
  peers: ReadonlyArray<Chord.Peer>,
): ChordSim => {
  const sim = new ChordSim(config)
  const ring = sortedRing(peers)
  for (let i = 0; i < ring.peers.length; i++) {
    sim.addNode(ring.peers[i]!, Chord.stabilized(config.chord, ring, i))
  }
  return sim
}

/** Start every live node's stabilize timer at a uniformly random phase within one interval. */
export const startAllTicking = (sim: ChordSim): void => {
  const interval = sim.config.chord.stabilizeIntervalMs
  for (const node of sim.liveNodes()) sim.startTicking(node, sim.now + sim.prng.float() * interval)
}

/** A uniformly random 52-bit ring position from the simulator's generator. */
export const randomPosition = (prng: Prng): number =>
  prng.nextU32() * 2 ** 20 + (prng.nextU32() >>> 12)

// ---------------------------------------------------------------------------------------------
// Experiments (section 6 of the paper). Each is a pure function of its options and seed; the
// `progress` callback only reports how far it got.

export type ProgressFn = (done: number, total: number) => void

const noProgress: ProgressFn = () => {}

/** ⌈log2 n⌉, at least 1. */
export const log2Ceil = (n: number): number => Math.max(1, Math.ceil(Math.log2(n)))

/** The successor-list length the experiments use: r = 2⌈log2 N⌉ (section 5.2: r = Ω(log N)). */
export const successorListFor = (nodes: number): number => 2 * log2Ceil(nodes)

const percentile = (sorted: ReadonlyArray<number>, q: number): number =>
  sorted.length === 0
    ? Number.NaN
    : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!

const mean = (xs: ReadonlyArray<number>): number =>
  xs.length === 0 ? Number.NaN : xs.reduce((a, b) => a + b, 0) / xs.length

/** Lookups in flight at once in the lookup phases (a bound, and realistic concurrency). */
const LOOKUPS_IN_FLIGHT = 64

/**
 * What every lookup phase counts, outcome by outcome: one helper (`startLookup`) feeds it for
 * the closed-loop phases (`runLookups`: path length, mass failure) and the open-loop one (churn).
 */
interface LookupTally {
  /** Lookups started. */
  issued: number
  /** Lookups whose outcome came back (completed or gave up); the rest were abandoned. */
  ended: number
  /** Lookups that gave up (LookupFailed). */
  gaveUp: number
  /** Lookups that suffered at least one timeout, whatever their outcome. */
  withTimeouts: number
  /** Hops of every completed lookup, in order of completion. */
  readonly hops: Array<number>
  /** Timeouts of every ended lookup, in order of completion. */
  readonly timeouts: Array<number>
}

const newTally = (): LookupTally => ({
  issued: 0,
  ended: 0,
  gaveUp: 0,
  withTimeouts: 0,
  hops: [],
  timeouts: [],
})

/**
 * Start one lookup of `target` at `origin`, counted in `tally`; `judge` sees its outcome once it
 * has been counted. A lookup whose origin dies never ends (it is not counted as ended).
 */
const startLookup = (
  sim: ChordSim,
  tally: LookupTally,
  origin: number,
  target: number,
  judge: (outcome: LookupOutcome) => void,
): void => {
  tally.issued++
  sim.lookup(origin, target, (outcome) => {
    tally.ended++
    tally.timeouts.push(outcome.timeouts)
    if (outcome.timeouts > 0) tally.withTimeouts++
    if (outcome._tag === "Completed") tally.hops.push(outcome.hops)
    else tally.gaveUp++
    judge(outcome)
  })
}

/**
 * Run `count` lookups (origin and target from `pick`), at most LOOKUPS_IN_FLIGHT at a time, to
 * completion, counted in `tally`; `done` sees each outcome. Lookups whose origin dies are
 * abandoned (never reported).
 */
const runLookups = (
  sim: ChordSim,
  count: number,
  pick: (i: number) => { origin: number; target: number },
  tally: LookupTally,
  done: (i: number, target: number, outcome: LookupOutcome) => void,
  progress: ProgressFn,
): void => {
  let issued = 0
  let finished = 0
  const issue = () => {
    const i = issued++
    const { origin, target } = pick(i)
    startLookup(sim, tally, origin, target, (outcome) => {
      finished++
      if (finished % 256 === 0) progress(finished, count)
      done(i, target, outcome)
      if (issued < count) issue()
    })
  }
  for (let i = 0; i < Math.min(LOOKUPS_IN_FLIGHT, count); i++) issue()
  sim.runWhile(() => finished < count)
  progress(count, count)
}

const keyTarget = (seed: number, i: number): number => position(utf8Bytes(`key-${seed}-${i}`))

export interface PathResult {
  readonly nodes: number
  readonly lookups: number
  readonly mean: number
  readonly p1: number
  readonly p99: number
  readonly max: number
  /** The paper's prediction, ½·log2 N. */
  readonly halfLog2N: number
  /** Lookups that returned someone other than the true owner, or failed. */
  readonly wrong: number
  /** Lookups that suffered a timeout (the exponential latency tail makes a few). */
  readonly withTimeouts: number
}

/**
 * Section 6.3, path length: a converged ring of N nodes (built from the omniscient model), then
 * `lookups` lookups of random keys from random nodes, each run as messages through the machines.
 * Path length = queries answered (hops), as Chord's iterative lookup counts them.
 */
export const pathLength = (
  options: { readonly nodes: number; readonly lookups: number; readonly seed: number },
  progress: ProgressFn = noProgress,
): PathResult => {
  const { nodes, lookups, seed } = options
  const peers = makePeers(`p${seed}-${nodes}-`, nodes)
  const sim = buildStabilized(
    defaultSimConfig(seed, { successorListLength: successorListFor(nodes) }),
    peers,
  )
  const model = Model.make(peers.map((p) => p.pos))
  // Hops of the lookups that found the true owner (the tally's hops include wrong answers).
  const hops: Array<number> = []
  let wrong = 0
  const tally = newTally()
  const live = sim.liveNodes()
  runLookups(
    sim,
    lookups,
    (i) => ({ origin: live[sim.prng.int(live.length)]!, target: keyTarget(seed, i) }),
    tally,
    (_i, target, outcome) => {
      if (outcome._tag !== "Completed" || outcome.owner.pos !== Model.successorOf(model, target)) {
        wrong++
        return
      }
      hops.push(outcome.hops)
    },
    progress,
  )
  hops.sort((a, b) => a - b)
  return {
    nodes,
    lookups,
    mean: mean(hops),
    p1: percentile(hops, 0.01),
    p99: percentile(hops, 0.99),
    max: hops[hops.length - 1] ?? Number.NaN,
    halfLog2N: Math.log2(nodes) / 2,
    wrong,
    withTimeouts: tally.withTimeouts,
  }
}

export interface FailurePhase {
  /** Fraction of lookups that did not reach a live holder of the key, replication 1 and 3. */
  readonly failed1: number
  readonly failed3: number
  /** Fraction of keys whose every replica died (the floor: ≈ p and ≈ p^3). */
  readonly lost1: number
  readonly lost3: number
  /** Fraction of lookups that did not find the true live owner (routing, not data, failed). */
  readonly routingFailed: number
  readonly meanHops: number
  readonly meanTimeouts: number
}

export interface FailureRow {
  readonly fraction: number
  readonly nodes: number
  readonly failedNodes: number
  readonly immediate: FailurePhase
  /** Stabilization rounds until every successor, predecessor and finger is right again. */
  readonly stabilizationRounds: number
  readonly converged: boolean
  readonly afterStabilization: FailurePhase
}

/**
 * Section 6.4, simultaneous node failures: a converged ring of N nodes holds keys on the first 1
 * (or 3) successors of their position; a random fraction p of the nodes fails at once. Lookups
 * run immediately (stale tables, routing around dead nodes by timeouts) and again after the
 * ring has stabilized (real stabilize / notify / fix-fingers messages). A lookup succeeds when
 * the first live node of the successor list it returns is the true live owner and holds a
 * replica of the key (section 5.2: a reader walks the returned successor list).
 */
export const massFailure = (
  options: {
    readonly nodes: number
    readonly lookups: number
    readonly seed: number
    readonly fractions: ReadonlyArray<number>
  },
  progress: ProgressFn = noProgress,
): Array<FailureRow> => {
  const rows: Array<FailureRow> = []
  const { nodes, lookups, seed, fractions } = options
  const r = successorListFor(nodes)
  // Units of progress: per fraction, two lookup phases and the stabilization (weighted as one).
  const unit = lookups
  const total = fractions.length * 3 * unit
  fractions.forEach((p, fi) => {
    const base = fi * 3 * unit
    const peers = makePeers(`f${seed}-${nodes}-`, nodes)
    const sim = buildStabilized(
      defaultSimConfig(seed * 1000 + fi, { successorListLength: r }),
      peers,
    )
    const model0 = Model.make(peers.map((q) => q.pos))
    const victims = sim.prng.shuffle([...sim.liveNodes()]).slice(0, Math.round(p * nodes))
    for (const v of victims) sim.fail(v)
    const liveModel = sim.model()
    const phase = (index: 0 | 1): FailurePhase => {
      let failed1 = 0
      let failed3 = 0
      let lost1 = 0
      let lost3 = 0
      let routingFailed = 0
      const tally = newTally()
      runLookups(
        sim,
        lookups,
        (i) => ({ origin: sim.randomMember()!, target: keyTarget(seed, i) }),
        tally,
        (_i, target, outcome) => {
          const replicas = Model.successorsOf(model0, target, 3).map((pos) => sim.nodeAt(pos))
          const dead = replicas.map((n) => n === undefined || !sim.isMember(n))
          const all1 = dead[0] === true
          const all3 = dead.every((d) => d)
          if (all1) lost1++
          if (all3) lost3++
          let reached: Chord.Peer | undefined
          if (outcome._tag === "Completed") {
            reached = outcome.successors.find((q) => {
              const n = sim.nodeOf(q.id)
              return n !== undefined && sim.isMember(n)
            })
          }
          const routed =
            reached !== undefined && reached.pos === Model.successorOf(liveModel, target)
          if (!routed) routingFailed++
          if (!routed || all1) failed1++
          if (!routed || all3) failed3++
        },
        (done) => progress(base + index * 2 * unit + done, total),
      )
      return {
        failed1: failed1 / lookups,
        failed3: failed3 / lookups,
        lost1: lost1 / lookups,
        lost3: lost3 / lookups,
        routingFailed: routingFailed / lookups,
        meanHops: mean(tally.hops),
        meanTimeouts: mean(tally.timeouts),
      }
    }
    const immediate = phase(0)
    // Stabilize with the real protocol until successors, predecessors and fingers are right.
    startAllTicking(sim)
    const interval = sim.config.chord.stabilizeIntervalMs
    const roundsMax = 3 * r
    let rounds = 0
    let converged = false
    for (; rounds < roundsMax; rounds++) {
      progress(base + unit + Math.round((rounds / roundsMax) * unit), total)
      const errors = sim.ringErrors(liveModel)
      if (errors.successors === 0 && errors.predecessors === 0 && sim.staleReferences() === 0) {
        converged = true
        break
      }
      sim.runUntil(sim.now + interval)
    }
    // The same keys again (a paired comparison); the originators are drawn afresh.
    const afterStabilization = phase(1)
    rows.push({
      fraction: p,
      nodes,
      failedNodes: victims.length,
      immediate,
      stabilizationRounds: rounds,
      converged,
      afterStabilization,
    })
  })
  progress(total, total)
  return rows
}

/**
 * How the churn experiment maintains fingers: "one" is the machine's own fix-fingers (one finger
 * lookup per stabilize tick, so a full pass takes about log2 N ticks); "all" additionally sets
 * every finger of a node to the true one at each of its ticks (`ChordSim.setTrueFingers`), as
 * the paper's simulator updated all finger entries on every stabilization (section 6.5).
 */
export type ChurnFingers = "one" | "all"

/** When lookups start: exactly one per second, or a Poisson process of rate 1/s (the paper's). */
export type ChurnArrivals = "fixed" | "poisson"

export interface ChurnRow {
  readonly seed: number
  /** Joins per stabilization round, and failures per round (the same rate). */
  readonly ratePerRound: number
  readonly rounds: number
  readonly fingers: ChurnFingers
  readonly arrivals: ChurnArrivals
  readonly joins: number
  readonly failures: number
  readonly lookups: number
  /** Lookups that returned someone other than the true owner at completion, or gave up. */
  readonly failed: number
  readonly failedFraction: number
  readonly wrongOwner: number
  readonly gaveUp: number
  /** Lookups that sent at least one query to a node that did not answer (a dead node). */
  readonly metDeadNode: number
  /**
   * The paper's count (section 6.5: its simulator never retried, so a query sent to a node that
   * was down failed the whole lookup): lookups that met a dead node, returned a wrong owner, or
   * gave up.
   */
  readonly failedNoRetry: number
  readonly failedNoRetryFraction: number
  /** Lookups whose originator failed before they finished (not counted either way). */
  readonly abandoned: number
  readonly meanHops: number
  readonly meanTimeouts: number
  readonly finalMembers: number
}

/**
 * Section 6.5, lookups during stabilization: N nodes (500 in the paper) under continuous churn.
 * Joins and failures are Poisson processes, each at `rate` per stabilization interval (30 s on
 * average, uniform in [15, 45] s); one lookup per second (`arrivals`) of a random key from a
 * random member. A lookup fails when it gives up or its answer is not the true owner among the
 * members at the moment it completes; under the paper's count it also fails when any of its
 * queries went to a dead node. Key loss is not counted: only routing state inconsistency, as
 * in the paper. Every join and failure runs through the real protocol.
 */
export const churn = (
  options: {
    readonly nodes: number
    readonly seed: number
    readonly rates: ReadonlyArray<number>
    readonly rounds: number
    readonly fingers?: ChurnFingers
    readonly arrivals?: ChurnArrivals
  },
  progress: ProgressFn = noProgress,
): Array<ChurnRow> => {
  const { nodes, seed, rates, rounds } = options
  const fingers = options.fingers ?? "one"
  const arrivals = options.arrivals ?? "fixed"
  const rows: Array<ChurnRow> = []
  rates.forEach((rate, ri) => {
    const config = defaultSimConfig(seed * 1000 + ri, {
      successorListLength: successorListFor(nodes),
    })
    const sim = buildStabilized(config, makePeers(`c${seed}-`, nodes))
    startAllTicking(sim)
    const interval = config.chord.stabilizeIntervalMs
    const duration = rounds * interval
    const exp = (meanMs: number) => -meanMs * Math.log(1 - sim.prng.float())
    const lookupGap = () => (arrivals === "poisson" ? exp(1000) : 1000)
    let nextJoin = rate > 0 ? exp(interval / rate) : Number.POSITIVE_INFINITY
    let nextFail = rate > 0 ? exp(interval / rate) : Number.POSITIVE_INFINITY
    let nextLookup = lookupGap()
    let joins = 0
    let failures = 0
    let wrongOwner = 0
    let failedNoRetry = 0
    const tally = newTally()
    let model: Model.ChordModel | null = null
    sim.onJoined = () => {
      model = null
    }
    sim.onJoinAbandoned = () => {
      model = null
    }
    const currentModel = (): Model.ChordModel => {
      if (model === null) model = sim.model()
      return model
    }
    if (fingers === "all") sim.onTick = (node) => sim.setTrueFingers(node, currentModel())
    while (sim.now < duration) {
      const t = Math.min(nextJoin, nextFail, nextLookup)
      if (t >= duration) break
      sim.runUntil(t)
      if (t === nextLookup) {
        nextLookup += lookupGap()
        const origin = sim.randomMember()
        if (origin === undefined) continue
        const target = randomPosition(sim.prng)
        startLookup(sim, tally, origin, target, (outcome) => {
          const right =
            outcome._tag === "Completed" &&
            outcome.owner.pos === Model.successorOf(currentModel(), target)
          if (outcome._tag === "Completed" && !right) wrongOwner++
          if (!right || outcome.timeouts > 0) failedNoRetry++
        })
        if (tally.issued % 64 === 0) progress(ri * duration + sim.now, rates.length * duration)
      } else if (t === nextJoin) {
        nextJoin += exp(interval / rate)
        const via = sim.randomMember()
        if (via === undefined) continue
        const node = sim.addNode(peerOf(`c${seed}-r${ri}-j${joins}`))
        joins++
        sim.startTicking(node, sim.now + sim.prng.float() * interval)
        sim.join(node, via)
      } else {
        nextFail += exp(interval / rate)
        const victim = sim.randomMember()
        if (victim === undefined || sim.liveCount <= 2) continue
        sim.fail(victim)
        failures++
        model = null
      }
    }
    // Let the last lookups finish (bounded: a lookup ends within its timeout budget).
    const maxLookupMs = (config.chord.lookupTimeoutsMax + 1) * config.chord.rpcTimeoutMs * 2
    sim.runUntil(sim.now + maxLookupMs)
    const failed = wrongOwner + tally.gaveUp
    const fraction = (x: number) => (tally.ended > 0 ? x / tally.ended : Number.NaN)
    rows.push({
      seed,
      ratePerRound: rate,
      rounds,
      fingers,
      arrivals,
      joins,
      failures,
      lookups: tally.ended,
      failed,
      failedFraction: fraction(failed),
      wrongOwner,
      gaveUp: tally.gaveUp,
      metDeadNode: tally.withTimeouts,
      failedNoRetry,
      failedNoRetryFraction: fraction(failedNoRetry),
      abandoned: tally.issued - tally.ended,
      meanHops: mean(tally.hops),
      meanTimeouts: mean(tally.timeouts),
      finalMembers: sim.model().positions.length,
    })
  })
  progress(1, 1)
  return rows
}

export interface JoinRow {
  readonly nodes: number
  readonly joins: number
  /** Hops of the join lookup (find_successor of the joiner's own position). */
  readonly lookupHopsMean: number
  /** Messages sent and received by the joiner from JoinRequested until it is linked. */
  readonly messagesToLinkMean: number
  /** Stabilization rounds from JoinRequested until linked (successor and predecessor agree). */
  readonly roundsToLinkMean: number
  /** Messages sent and received by the joiner until its whole finger table is exact. */
  readonly messagesToFingersMean: number
  readonly roundsToFingersMean: number
  /** Joiners that did not get linked / exact fingers within the round bound. */
  readonly notLinked: number
  readonly fingersNotExact: number
  readonly log2N: number
}

/**
 * Messages per join (section 4.4 and Theorem 5 of the paper: O(log² N) with fingers, O(log N) to
 * find the successor). A converged ring of N ticking nodes; `joins` new nodes join through random
 * members at random moments of the first round, through the real protocol. For each joiner we
 * count the messages it sends and receives until (a) it is linked: its successor and
 * predecessor are the true ones and they point back at it; (b) its finger table is exact.
 */
export const joinCost = (
  options: { readonly nodes: number; readonly joins: number; readonly seed: number },
  progress: ProgressFn = noProgress,
): JoinRow => {
  const { nodes, joins, seed } = options
  const config = defaultSimConfig(seed, { successorListLength: successorListFor(nodes) })
  const sim = buildStabilized(config, makePeers(`j${seed}-${nodes}-`, nodes))
  startAllTicking(sim)
  const interval = config.chord.stabilizeIntervalMs
  const roundsMax = 3 * log2Ceil(nodes) + 10
  const positions = sim.liveNodes().map((n) => sim.peer(n).pos)
  let model = Model.make(positions)
  interface Joiner {
    readonly node: number
    readonly at: number
    readonly watch: Watch
    hops: number
    linkedAt: number
    linkMessages: number
    fingersAt: number
    fingerMessages: number
  }
  const joiners: Array<Joiner> = []
  const byNode = new Map<number, Joiner>()
  sim.onJoined = (node, hops) => {
    const j = byNode.get(node)
    if (j === undefined) return
    j.hops = hops
    positions.push(sim.peer(node).pos)
    model = Model.make(positions)
  }
  const starts = Array.from({ length: joins }, () => sim.now + sim.prng.float() * interval).sort(
    (a, b) => a - b,
  )
  starts.forEach((at, i) => {
    sim.runUntil(at)
    const via = sim.randomMember()!
    const node = sim.addNode(peerOf(`j${seed}-${nodes}-new${i}`))
    const j: Joiner = {
      node,
      at: sim.now,
      watch: sim.watch(node),
      hops: Number.NaN,
      linkedAt: Number.NaN,
      linkMessages: Number.NaN,
      fingersAt: Number.NaN,
      fingerMessages: Number.NaN,
    }
    joiners.push(j)
    byNode.set(node, j)
    sim.startTicking(node, sim.now + sim.prng.float() * interval)
    sim.join(node, via)
  })
  const linked = (j: Joiner): boolean => {
    if (!sim.isMember(j.node)) return false
    const me = sim.peer(j.node)
    const s = sim.state(j.node)
    const succPos = Model.nextOf(model, me.pos)
    const predPos = Model.previousOf(model, me.pos)
    if (s.successors[0]?.pos !== succPos || s.predecessor?.pos !== predPos) return false
    const pred = sim.nodeAt(predPos)
    const succ = sim.nodeAt(succPos)
    if (pred === undefined || succ === undefined) return false
    return sim.state(pred).successors[0]?.id === me.id && sim.state(succ).predecessor?.id === me.id
  }
  const deadline = sim.now + roundsMax * interval
  const checkMs = 1000
  let open = joiners.length
  while (open > 0 && sim.now < deadline) {
    sim.runUntil(sim.now + checkMs)
    open = 0
    for (const j of joiners) {
      if (Number.isNaN(j.linkedAt)) {
        if (linked(j)) {
          j.linkedAt = sim.now
          j.linkMessages = j.watch.sent + j.watch.received
        }
      }
      if (
        Number.isNaN(j.fingersAt) &&
        sim.isMember(j.node) &&
        sim.fingerErrors(j.node, model) === 0
      ) {
        j.fingersAt = sim.now
        j.fingerMessages = j.watch.sent + j.watch.received
      }
      if (Number.isNaN(j.linkedAt) || Number.isNaN(j.fingersAt)) open++
    }
    progress(sim.now - (deadline - roundsMax * interval), roundsMax * interval)
  }
  progress(1, 1)
  const done = (xs: Array<number>) => xs.filter((x) => !Number.isNaN(x))
  return {
    nodes,
    joins,
    lookupHopsMean: mean(done(joiners.map((j) => j.hops))),
    messagesToLinkMean: mean(done(joiners.map((j) => j.linkMessages))),
    roundsToLinkMean: mean(done(joiners.map((j) => (j.linkedAt - j.at) / interval))),
    messagesToFingersMean: mean(done(joiners.map((j) => j.fingerMessages))),
    roundsToFingersMean: mean(done(joiners.map((j) => (j.fingersAt - j.at) / interval))),
    notLinked: joiners.filter((j) => Number.isNaN(j.linkedAt)).length,
    fingersNotExact: joiners.filter((j) => Number.isNaN(j.fingersAt)).length,
    log2N: Math.log2(nodes),
  }
}
