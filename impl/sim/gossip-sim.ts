/**
 * A deterministic simulator of the membership machines alone (impl/core/membership.ts,
 * unchanged): many nodes gossiping over a virtual network in virtual time. One seeded generator
 * decides every tick phase, latency and loss, so a run is a pure function of its seed, its
 * configuration and the calls made on it, and replays exactly.
 *
 * Network model: each message is delayed by a uniform integer latency in
 * [latencyMinMs, latencyMaxMs] (so messages reorder), lost with probability `lossRate` when
 * sent, and dropped on delivery when a partition separates sender and receiver or the receiver
 * is crashed. Each node ticks once per gossip interval at its own random phase.
 *
 * Crash and restart: a crashed node loses its machine and timers; what the driver persists
 * survives: its own last status and its last view (as Cassandra's peers table). `restart` boots
 * a fresh machine over them with the next generation; `restart(i, { wipe: true })` boots one
 * that remembers nothing (a replaced disk), which is how a removed node tries to come back.
 *
 * Deliberately not here: the storage machine (impl/sim/sim.ts simulates that), clock skew
 * (membership only compares arrival times on one node's clock), duplication.
 */
import { Queue } from "./queue.ts"
import type { NodeId } from "../core/ids.ts"
import { NodeId as mkNodeId } from "../core/ids.ts"
import * as Membership from "../core/membership.ts"
import type * as Phi from "../core/phi.ts"
import { Prng } from "./prng.ts"

export interface NetworkConfig {
  readonly latencyMinMs: number
  readonly latencyMaxMs: number
  readonly lossRate: number
}

export const defaultNetwork: NetworkConfig = { latencyMinMs: 5, latencyMaxMs: 50, lossRate: 0 }

export interface GossipSimConfig {
  readonly seed: number
  readonly nodes: number
  /** The first `seedNodes` nodes are the seeds every node knows. Default 1. */
  readonly seedNodes?: number
  readonly intervalMs?: number
  readonly network?: NetworkConfig
  /**
   * "seedOnly": every member starts "up" knowing only the seeds (a cold start without peers
   * tables). "converged": every member starts "up" knowing every member.
   */
  readonly start: "seedOnly" | "converged"
  /** Nodes 0..members-1 start as members; the rest start outside, knowing only the seeds. */
  readonly members?: number
  readonly phi?: Partial<Phi.Config>
  readonly threshold?: number
}

type Item =
  | {
      readonly _tag: "Deliver"
      readonly at: number
      readonly seq: number
      readonly to: number
      readonly from: number
      readonly message: Membership.Message
    }
  | {
      readonly _tag: "Tick"
      readonly at: number
      readonly seq: number
      readonly node: number
      readonly incarnation: number
    }

export interface SimNode {
  readonly index: number
  readonly id: NodeId
  readonly address: string
  /** The running machine; undefined while crashed. */
  state: Membership.State | undefined
  incarnation: number
  generation: number
  /** What the driver persists: the own status and the last view. */
  persistedStatus: "joining" | "up" | "leaving" | undefined
  peersTable: ReadonlyArray<Membership.Entry>
}

export type Intent =
  | { readonly _tag: "JoinRequested" }
  | { readonly _tag: "MarkUp" }
  | { readonly _tag: "LeaveRequested" }
  | { readonly _tag: "RemoveRequested"; readonly node: NodeId }

const addressOf = (i: number): string => `10.0.${i >> 8}.${i & 255}:7000`

export class GossipSim {
  now = 0
  readonly intervalMs: number
  readonly nodes: ReadonlyArray<SimNode>
  readonly seeds: ReadonlyArray<Membership.SeedInfo>
  readonly counters = { sent: 0, lost: 0, dropped: 0, delivered: 0 }
  network: NetworkConfig
  /** Called after every step of a machine (for invariant checks and convergence watches). */
  onStep: ((node: SimNode) => void) | undefined = undefined
  private readonly rng: Prng
  private readonly queue = new Queue<Item>()
  private seq = 0
  /** Partition group per node; messages cross only within a group. */
  private groups: Array<number>
  private readonly indexOf = new Map<NodeId, number>()

  constructor(readonly config: GossipSimConfig) {
    this.rng = new Prng(config.seed)
    this.intervalMs = config.intervalMs ?? 1000
    this.network = config.network ?? defaultNetwork
    const count = config.nodes
    const members = config.members ?? count
    this.groups = new Array<number>(count).fill(0)
    this.seeds = Array.from({ length: Math.min(count, config.seedNodes ?? 1) }, (_, i) => ({
      id: mkNodeId(`n${i}`),
      peerAddress: addressOf(i),
    }))
    const known: Array<Membership.Entry> = []
    for (let i = 0; i < members && config.start === "converged"; i++) {
      known.push({
        id: mkNodeId(`n${i}`),
        peerAddress: addressOf(i),
        clientAddress: `10.0.${i >> 8}.${i & 255}:6379`,
        weight: 1,
        status: "up",
        generation: 1,
        version: 1,
        heartbeat: 0,
      })
    }
    this.nodes = Array.from({ length: count }, (_, i) => {
      const node: SimNode = {
        index: i,
        id: mkNodeId(`n${i}`),
        address: addressOf(i),
        state: undefined,
        incarnation: 0,
        generation: 0,
        persistedStatus: i < members ? "up" : undefined,
        // Its own entry comes from its status, not from the table (as after a restart).
        peersTable: i < members ? known.filter((e) => e.id !== `n${i}`) : [],
      }
      this.indexOf.set(node.id, i)
      return node
    })
    for (const node of this.nodes) this.boot(node)
  }

  // -------------------------------------------------------------------------------------------
  // Nodes and faults

  node(i: number): SimNode {
    const node = this.nodes[i]
    if (node === undefined) throw new Error(`no node ${i}`)
    return node
  }

  isRunning(i: number): boolean {
    return this.node(i).state !== undefined
  }

  /** Crash node i: its machine and timers are gone; its persisted status and view survive. */
  crash(i: number): void {
    const node = this.node(i)
    if (node.state === undefined) return
    this.persist(node)
    node.state = undefined
    node.incarnation++
  }

  /** Boot a crashed node again with the next generation; `wipe` forgets everything. */
  restart(i: number, options: { readonly wipe?: boolean } = {}): void {
    const node = this.node(i)
    if (node.state !== undefined) return
    if (options.wipe === true) {
      node.persistedStatus = undefined
      node.peersTable = []
    }
    node.incarnation++
    this.boot(node)
  }

  /** Split the nodes into groups (group number per node index); unlisted nodes join group 0. */
  partition(groups: ReadonlyArray<number>): void {
    this.groups = this.nodes.map((_, i) => groups[i] ?? 0)
  }

  /** Remove every partition. */
  heal(): void {
    this.groups = this.groups.map(() => 0)
  }

  /** Deliver an operator intent (or MarkUp) to a running node now; ignored if it is crashed. */
  intent(i: number, intent: Intent): void {
    const node = this.node(i)
    if (node.state === undefined) return
    this.step(node, { ...intent, now: this.now })
  }

  // -------------------------------------------------------------------------------------------
  // Running

  /** Process everything scheduled up to `now + ms`, then advance the clock there. */
  runFor(ms: number): void {
    const until = this.now + ms
    for (;;) {
      const next = this.queue.peek()
      if (next === undefined || next.at > until) break
      this.process()
    }
    this.now = until
  }

  /**
   * Run until `done()` holds (checked after every step) or `limitMs` passes. Returns the time
   * at which it held, or undefined.
   */
  runUntil(done: () => boolean, limitMs: number): number | undefined {
    const until = this.now + limitMs
    if (done()) return this.now
    for (;;) {
      const next = this.queue.peek()
      if (next === undefined || next.at > until) break
      this.process()
      if (done()) return this.now
    }
    this.now = until
    return undefined
  }

  /** The running nodes' views projected on what must converge (heartbeats excluded). */
  projection(i: number): string {
    const state = this.node(i).state
    if (state === undefined) return ""
    return [...state.entries.values()]
      .map((e) => `${e.id}|${e.status}|${e.generation}|${e.version}`)
      .sort()
      .join(",")
  }

  /** Do all running nodes hold the same view (up to heartbeats)? */
  agreed(): boolean {
    let first: string | undefined
    for (const node of this.nodes) {
      if (node.state === undefined) continue
      const p = this.projection(node.index)
      if (first === undefined) first = p
      else if (p !== first) return false
    }
    return true
  }

  // -------------------------------------------------------------------------------------------
  // Internals

  private boot(node: SimNode): void {
    node.generation++
    node.state = Membership.init(
      {
        self: {
          id: node.id,
          peerAddress: node.address,
          clientAddress: node.address.replace(/:7000$/, ":6379"),
          weight: 1,
        },
        seeds: this.seeds,
        generation: node.generation,
        status: node.persistedStatus,
        knownMembers: node.peersTable,
        randomSeed: this.rng.nextU32(),
        phi: { firstHeartbeatEstimateMs: this.intervalMs, ...this.config.phi },
        threshold: this.config.threshold,
      },
      this.now,
    )
    this.schedule({
      _tag: "Tick",
      at: this.now + this.rng.int(this.intervalMs),
      seq: this.seq++,
      node: node.index,
      incarnation: node.incarnation,
    })
  }

  private schedule(item: Item): void {
    this.queue.push(item)
  }

  private process(): void {
    const item = this.queue.pop()!
    this.now = item.at
    if (item._tag === "Tick") {
      const node = this.node(item.node)
      if (node.state === undefined || node.incarnation !== item.incarnation) return
      this.schedule({ ...item, at: item.at + this.intervalMs, seq: this.seq++ })
      this.step(node, { _tag: "TickElapsed", now: this.now })
      return
    }
    const node = this.node(item.to)
    if (node.state === undefined || this.groups[item.to] !== this.groups[item.from]) {
      this.counters.dropped++
      return
    }
    this.counters.delivered++
    this.step(node, {
      _tag: "MessageReceived",
      now: this.now,
      from: this.node(item.from).id,
      message: item.message,
    })
  }

  private step(node: SimNode, event: Membership.Event): void {
    const state = node.state!
    const [, commands] = Membership.step(state, event)
    for (const command of commands) this.send(node, command)
    this.persistStatus(node)
    this.onStep?.(node)
  }

  private send(from: SimNode, command: Membership.Command): void {
    this.counters.sent++
    const to = this.indexOf.get(command.to)
    if (to === undefined || this.rng.chance(this.network.lossRate)) {
      this.counters.lost++
      return
    }
    const { latencyMinMs, latencyMaxMs } = this.network
    this.schedule({
      _tag: "Deliver",
      at: this.now + latencyMinMs + this.rng.int(latencyMaxMs - latencyMinMs + 1),
      seq: this.seq++,
      to,
      from: from.index,
      message: command.message,
    })
  }

  /** The driver's duty: persist the own status whenever it changes. */
  private persistStatus(node: SimNode): void {
    const own = node.state === undefined ? undefined : Membership.selfEntry(node.state)
    if (own !== undefined && own.status !== "removed") node.persistedStatus = own.status
  }

  /** The peers table, written at crash time (equivalent to writing it on every change). */
  private persist(node: SimNode): void {
    if (node.state === undefined) return
    node.peersTable = [...node.state.entries.values()]
  }
}

// ---------------------------------------------------------------------------------------------
// Fault schedules as data

/**
 * One step of a fault schedule. Node references are positions taken modulo the node count, so
 * that any generated number is valid and shrinking a schedule never makes it ill-formed.
 */
export type FaultStep =
  | { readonly _tag: "Advance"; readonly ms: number }
  | { readonly _tag: "Crash"; readonly node: number }
  | { readonly _tag: "Restart"; readonly node: number; readonly wipe: boolean }
  /** Group number per node position (missing positions are group 0). */
  | { readonly _tag: "Partition"; readonly groups: ReadonlyArray<number> }
  | { readonly _tag: "Heal" }
  | { readonly _tag: "Join"; readonly node: number }
  | { readonly _tag: "MarkUp"; readonly node: number }
  | { readonly _tag: "Leave"; readonly node: number }
  | { readonly _tag: "Remove"; readonly issuer: number; readonly target: number }

export const applyStep = (sim: GossipSim, step: FaultStep): void => {
  const n = sim.nodes.length
  switch (step._tag) {
    case "Advance":
      return sim.runFor(step.ms)
    case "Crash":
      return sim.crash(step.node % n)
    case "Restart":
      return sim.restart(step.node % n, { wipe: step.wipe })
    case "Partition":
      return sim.partition(step.groups)
    case "Heal":
      return sim.heal()
    case "Join":
      return sim.intent(step.node % n, { _tag: "JoinRequested" })
    case "MarkUp":
      return sim.intent(step.node % n, { _tag: "MarkUp" })
    case "Leave":
      return sim.intent(step.node % n, { _tag: "LeaveRequested" })
    case "Remove":
      return sim.intent(step.issuer % n, {
        _tag: "RemoveRequested",
        node: sim.node(step.target % n).id,
      })
  }
}

export const describeStep = (step: FaultStep): string => {
  switch (step._tag) {
    case "Advance":
      return `advance ${step.ms}ms`
    case "Partition":
      return `partition [${step.groups.join(",")}]`
    case "Heal":
      return "heal"
    case "Restart":
      return `restart ${step.node}${step.wipe ? " (wiped)" : ""}`
    case "Remove":
      return `remove ${step.target} at ${step.issuer}`
    default:
      return `${step._tag.toLowerCase()} ${step.node}`
  }
}
