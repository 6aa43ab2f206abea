/**
 * The machine layer's cluster (SPEC-3): storage machines (impl/core/node.ts, `Node.init` and
 * `Node.step`) stepped directly by the property, with no simulator in between. What the
 * simulator decides by latencies drawn from a seed, the property decides here: fast-check
 * generates a stream of choices (and shrinks it), and each choice picks which in-flight
 * message is delivered next, among every message of every connection — so any reordering
 * happens, and a shrunk counterexample delivers in sending order wherever order did not matter.
 *
 * The world is deliberately plain: zero latency (time moves only when nothing is in flight, to
 * the next timer or tick; a client call returns as soon as its answer lands, and what is still
 * in flight is delivered later, among the next operations' messages, in an order chosen again),
 * every store write durable at once (commands run through the real executor,
 * impl/core/executor.ts, in order), no clock skew. Faults are the property's: `stop` crashes a
 * node (its store and its membership view survive, as the driver keeps them), `restart` boots
 * a fresh machine over them, `partition` cuts links (messages across a cut, or to a stopped
 * node, are lost), `heal` mends them; `addNode` starts a joiner, `operator` asks a node to
 * leave or remove a member. A machine exception fails the property at once.
 *
 * `Cluster` is the surface the model suites drive, which the simulator (impl/sim/sim.ts) has
 * too, so that one suite runs its commands on either layer.
 */
import fc from "fast-check"
import * as Executor from "../../impl/core/executor.ts"
import * as Hlc from "../../impl/core/hlc.ts"
import { NodeId } from "../../impl/core/ids.ts"
import * as Membership from "../../impl/core/membership.ts"
import type { ClientOp, Command, Event, OperatorOp, PeerMessage } from "../../impl/core/messages.ts"
import * as Node from "../../impl/core/node.ts"
import { commandsOf } from "../../impl/core/ready.ts"
import * as Ring from "../../impl/core/ring.ts"
import * as Version from "../../impl/core/version.ts"
import { MemoryStore } from "../../impl/sim/memory-store.ts"
import {
  bootstrap,
  completeOperation,
  invokeOperation,
  invokeOperator,
  type Operation,
} from "../../impl/sim/sim.ts"

/** What a model suite needs of a cluster, on whichever layer it runs. */
export interface Cluster {
  readonly ids: ReadonlyArray<NodeId>
  readonly now: number
  isUp(id: NodeId): boolean
  stop(id: NodeId): void
  restart(id: NodeId): void
  partition(groups: ReadonlyArray<ReadonlyArray<NodeId>>): void
  heal(): void
  invoke(id: NodeId, op: ClientOp): Operation
  call(id: NodeId, op: ClientOp, maxMs?: number): Operation
  runFor(ms: number): void
  untilServing(id: NodeId, maxMs?: number): boolean
  stateOf(id: NodeId): Node.State | undefined
  stored(id: NodeId, key: string): Version.Obj | undefined
  storeOf(id: NodeId): MemoryStore
  replicasOf(key: string): ReadonlyArray<NodeId>
}

/** Dead objects (tombstones, expired values) and hints stored anywhere: what reclamation owes. */
export const deadOrHinted = (cluster: Cluster): number => {
  let dead = 0
  for (const id of cluster.ids) {
    const store = cluster.storeOf(id)
    for (const [, obj] of store.scan(undefined, 10_000)) {
      if (Version.deadSince(obj, cluster.now, Hlc.wallMs) !== undefined) dead++
    }
    dead += store.hints(10_000).length
  }
  return dead
}

/** Every key's replicas hold the same object. */
export const replicasAgree = (cluster: Cluster, keys: ReadonlyArray<string>): boolean =>
  keys.every((k) => {
    const objs = cluster.replicasOf(k).map((id) => cluster.stored(id, k) ?? Version.empty)
    return objs.every((o) => Version.equals(o, objs[0]!))
  })

/**
 * How a property boots its cluster on one layer: the data it generates for it (a seed for the
 * simulator, a choice stream for the machines) and the constructor.
 */
export interface Boot<A> {
  readonly arb: fc.Arbitrary<A>
  readonly make: (a: A, node: Partial<Omit<Node.Config, "self" | "members">>) => Cluster
}

/** The choice stream a `Machines` cluster is driven by (cycled; shrinks towards in-order). */
export const choicesArb: fc.Arbitrary<ReadonlyArray<number>> = fc.array(fc.nat(1 << 16), {
  minLength: 1,
  maxLength: 64,
})

export interface MachinesConfig {
  readonly nodes: number
  readonly choices: ReadonlyArray<number>
  /** Overrides of the machine's defaults (n, r, w, mode, timeouts …). */
  readonly node?: Partial<Omit<Node.Config, "self" | "members">>
  /** How often each node receives TickElapsed (ms). */
  readonly tickMs?: number
  /** Sees every step's commands, as the machine returned them. */
  readonly onCommands?: (node: NodeId, event: Event, commands: ReadonlyArray<Command>) => void
}

interface Machine {
  readonly id: NodeId
  /** Booted as a member joining the cluster (not in the bootstrap members). */
  readonly joining: boolean
  state: Node.State | undefined
  incarnation: number
  readonly store: MemoryStore
  executor: Executor.Executor
  savedMembers: ReadonlyArray<Membership.Entry> | undefined
  nextTickAt: number
}

/** A machine not booted yet, with an empty store (`boot` sets its executor and state). */
const newMachine = (id: NodeId, joining: boolean): Machine => ({
  id,
  joining,
  state: undefined,
  incarnation: 0,
  store: new MemoryStore(),
  executor: undefined as unknown as Executor.Executor,
  savedMembers: undefined,
  nextTickAt: 0,
})

interface Flight {
  readonly from: NodeId
  readonly to: NodeId
  readonly message: PeerMessage
}

interface Timer {
  readonly node: NodeId
  readonly incarnation: number
  readonly at: number
  readonly seq: number
  readonly event: Event & { _tag: "TimerFired" }
}

/** Deliveries in one instant before the cluster is taken to be looping. */
const MAX_DELIVERIES = 200_000

export class Machines implements Cluster {
  now = 0
  readonly ids: ReadonlyArray<NodeId>
  readonly history: Array<Operation> = []
  /** Delivered messages, and of those delivered ahead of an older one in flight. */
  readonly counters = { delivered: 0, overtaking: 0, lost: 0 }
  private readonly machines = new Map<NodeId, Machine>()
  private readonly nodeConfig: Omit<Node.Config, "self">
  private readonly bootRing: Ring.Ring
  private readonly tickMs: number
  private inFlight: Array<Flight> = []
  private timers: Array<Timer> = []
  private seq = 0
  private choice = 0
  private readonly cut = new Set<string>()

  constructor(readonly config: MachinesConfig) {
    this.tickMs = config.tickMs ?? 100
    const boot = bootstrap(config.nodes, config.node)
    this.ids = boot.ids
    this.nodeConfig = boot.nodeConfig
    this.bootRing = boot.bootRing
    this.ids.forEach((id, i) => {
      const m = newMachine(id, false)
      this.machines.set(id, m)
      this.boot(m, 1 + ((i * 37) % this.tickMs))
    })
  }

  // -------------------------------------------------------------------------------------------
  // Faults

  isUp(id: NodeId): boolean {
    return this.machine(id).state !== undefined
  }

  stop(id: NodeId): void {
    const m = this.machine(id)
    if (m.state === undefined) return
    m.savedMembers = [...Membership.view(m.state.membership).values()]
    m.state = undefined
    m.incarnation++
    m.executor.stop()
  }

  restart(id: NodeId): void {
    const m = this.machine(id)
    if (m.state !== undefined) return
    m.incarnation++
    this.boot(m, this.now + 1)
  }

  partition(groups: ReadonlyArray<ReadonlyArray<NodeId>>): void {
    for (const g of groups)
      for (const h of groups) {
        if (g === h) continue
        for (const a of g) for (const b of h) this.cut.add(`${a}>${b}`)
      }
  }

  heal(): void {
    this.cut.clear()
  }

  /** Start a new node that joins the cluster through the members running now. */
  addNode(): NodeId {
    const id = NodeId(`n${this.machines.size}`)
    const m = newMachine(id, true)
    this.machines.set(id, m)
    ;(this.ids as Array<NodeId>).push(id)
    this.boot(m, this.now + 1)
    return id
  }

  /** An operator intent (leave, remove) at node `at`; its answer completes the record. */
  operator(at: NodeId, op: OperatorOp): Operation {
    return invokeOperator(this.history, at, this.now, (client) => {
      const m = this.machine(at)
      if (m.state !== undefined) {
        this.step(m, { _tag: "OperatorRequested", now: this.now, client, op })
      }
    })
  }

  // -------------------------------------------------------------------------------------------
  // Clients and observation

  invoke(id: NodeId, op: ClientOp): Operation {
    // A client's next operation starts at least a millisecond after anything before it, as in
    // the simulator, where every message takes time. Here a delivery takes none, so without
    // this two sequential writes through coordinators that never heard of each other (a sloppy
    // quorum's read can miss the first) could carry the same wall time, and last-write-wins
    // between those siblings would be a tie, not the later write (KV-5, FC_SEED=-712211338).
    this.now += 1
    return invokeOperation(this.history, id, op, this.now, (client) => {
      const m = this.machine(id)
      if (m.state === undefined) return false
      this.step(m, { _tag: "ClientRequested", now: this.now, client, op })
      return true
    })
  }

  call(id: NodeId, op: ClientOp, maxMs = 60_000): Operation {
    const operation = this.invoke(id, op)
    this.runUntil(() => operation.result !== undefined, maxMs)
    return operation
  }

  stateOf(id: NodeId): Node.State | undefined {
    return this.machine(id).state
  }

  stored(id: NodeId, key: string): Version.Obj | undefined {
    return this.machine(id).store.get(key)
  }

  storeOf(id: NodeId): MemoryStore {
    return this.machine(id).store
  }

  /** The preferred replicas of `key` on the boot ring. */
  replicasOf(key: string): ReadonlyArray<NodeId> {
    return Ring.preferenceList(this.bootRing, key, this.nodeConfig.n)
  }

  // -------------------------------------------------------------------------------------------
  // Running

  /**
   * Until `done` (checked before every delivery) or now + maxMs: deliver a chosen message while
   * any is in flight; when none is, move time to the next timer or tick. So a call returns as
   * soon as its answer lands, and what is still in flight stays there, to be delivered (in an
   * order chosen again) among the messages of the operations that follow.
   */
  runUntil(done: () => boolean, maxMs: number): boolean {
    const limit = this.now + maxMs
    let atNow = 0
    for (;;) {
      if (done()) return true
      if (this.inFlight.length > 0) {
        if (++atNow > MAX_DELIVERIES) throw new Error(`machines: no quiescence at ${this.now} ms`)
        this.deliverOne()
        continue
      }
      atNow = 0
      const next = Math.min(
        this.timers[0]?.at ?? Number.POSITIVE_INFINITY,
        ...[...this.machines.values()]
          .filter((m) => m.state !== undefined)
          .map((m) => m.nextTickAt),
      )
      if (next > limit) {
        this.now = Math.max(this.now, limit)
        return done()
      }
      this.now = Math.max(this.now, next)
      while (this.timers.length > 0 && this.timers[0]!.at <= this.now) {
        const t = this.timers.shift()!
        const m = this.machine(t.node)
        if (m.incarnation === t.incarnation && m.state !== undefined) {
          this.step(m, { ...t.event, now: this.now })
        }
      }
      for (const m of this.machines.values()) {
        if (m.state === undefined || m.nextTickAt > this.now) continue
        m.nextTickAt = this.now + this.tickMs
        this.step(m, { _tag: "TickElapsed", now: this.now })
      }
    }
  }

  /**
   * Run until node `id` serves (impl/core/node.ts `serving`: a restarted or joining node has
   * heard from a peer and caught up with its view), for at most `maxMs`; whether it does.
   */
  untilServing(id: NodeId, maxMs = 10_000): boolean {
    return this.runUntil(() => {
      const state = this.stateOf(id)
      return state !== undefined && Node.serving(state)
    }, maxMs)
  }

  runFor(ms: number): void {
    this.runUntil(() => false, ms)
  }

  /** Deliver the in-flight message the next choice picks (or lose it, across a cut). */
  private deliverOne(): void {
    const c = this.config.choices
    const i = c.length === 0 ? 0 : c[this.choice++ % c.length]! % this.inFlight.length
    if (i > 0) this.counters.overtaking++
    const [f] = this.inFlight.splice(i, 1)
    const to = this.machine(f!.to)
    if (to.state === undefined || this.cut.has(`${f!.from}>${f!.to}`)) {
      this.counters.lost++
      return
    }
    this.counters.delivered++
    this.step(to, { _tag: "MessageReceived", now: this.now, from: f!.from, message: f!.message })
  }

  private step(m: Machine, event: Event): void {
    const ready = Node.step(m.state!, event, m.store)[1]
    this.config.onCommands?.(m.id, event, commandsOf(ready))
    m.executor.execute(ready)
  }

  private boot(m: Machine, firstTickAt: number): void {
    const incarnation = m.incarnation
    m.executor = new Executor.Executor({
      write: (command) => {
        m.store.apply(command)
        return undefined
      },
      run: (command: Command) => {
        switch (command._tag) {
          case "Removed":
            return this.stop(m.id)
          case "Send":
            this.inFlight.push({ from: m.id, to: command.to, message: command.message })
            return
          case "Reply":
            return completeOperation(this.history, command.client, command.result, this.now)
        }
      },
      setTimer: (command) => {
        const timer: Timer = {
          node: m.id,
          incarnation,
          at: Math.max(command.at, this.now),
          seq: this.seq++,
          event: { _tag: "TimerFired", now: command.at, rid: command.rid, kind: command.kind },
        }
        let i = this.timers.length
        while (i > 0 && this.timers[i - 1]!.at > timer.at) i--
        this.timers.splice(i, 0, timer)
      },
      writeFailed: (error) => {
        throw error
      },
    })
    // A joiner restarts as a joiner, pointed at the members running now (as --peers would).
    const live = this.ids.filter((id) => id !== m.id && this.machines.get(id)?.state !== undefined)
    m.state = Node.init(
      {
        ...this.nodeConfig,
        self: m.id,
        joining: m.joining,
        ...(m.joining && live.length > 0 ? { members: live.map((id) => ({ id, weight: 1 })) } : {}),
        generation: m.incarnation + 1,
        savedMembers: m.savedMembers,
      },
      this.now,
    )
    m.nextTickAt = firstTickAt
  }

  private machine(id: NodeId): Machine {
    const m = this.machines.get(id)
    if (m === undefined) throw new Error(`no machine ${id}`)
    return m
  }
}
