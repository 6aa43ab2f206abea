/**
 * The deterministic simulator: many storage nodes (impl/core/node.ts, unchanged) on a virtual
 * network with virtual time. One seeded generator decides every latency, loss and duplication,
 * so a run is a pure function of (seed, configuration, the sequence of calls made on it) and
 * replays exactly.
 *
 * Network model: each message is delayed by a uniform latency in [latencyMinMs, latencyMaxMs]
 * (so messages reorder), plus a node's extra delay when it is slow (`slow`), lost with
 * probability `lossRate` and delivered twice with probability `duplicateRate`. Partitions may
 * be asymmetric (`block(a, b)` cuts a→b only) and come in two kinds:
 *  - drop (the default): a message sent across the cut is lost;
 *  - hold (`{ hold: true }`), what TCP does behind a cut link: a message arriving across the cut
 *    waits in a FIFO per connection (a→b), and after `heal()` the whole queue is delivered in
 *    order, however late, before anything else on that connection. Messages still held when
 *    their receiver crashes are dropped (its connections reset). A crashed *sender's* held
 *    messages are still delivered: the sim models them as bytes already in the kernel's send
 *    buffer, which outlive the process (the transport's user-space queue would die with it, but
 *    here every Send leaves at once), so a dead incarnation's messages can arrive long after.
 *
 * Nodes: `stop` crashes a node (volatile state, timers and held commands are lost; its store
 * survives, minus what was not durable yet) and `restart` boots a fresh machine over the store
 * and the membership view it had, as the real driver keeps that view in its store.
 * `pause` is SIGSTOP: the node keeps its state but processes nothing; everything that falls due
 * meanwhile (messages to it, its timers and ticks, its persists becoming durable, client
 * requests sent to it) waits, and after `resume` it is processed in the order it fell due (so
 * per connection in arrival order) before anything newer. Its peers keep sending to it and,
 * hearing no heartbeats, come to suspect it. Each node's clock may be skewed (`clockSkewMs`).
 *
 * Commands run through the executor the real driver uses (impl/core/executor.ts): a store write
 * is visible at once and durable after `persistDelayMs` (0: at once), and every Send, Reply and
 * Removed after it, in this step or any later one, waits until it is durable. A machine
 * exception (`Node.step` throws) crash-stops that node, as the real driver does, and is counted
 * in `counters.stepErrors` (the messages in `stepErrors`); by default it then fails the run with
 * a MachineError, and with `onMachineError: "crash-stop"` the run goes on without the node and
 * the property asserts the counter is 0 at the end. Never swallowed either way.
 *
 * Deliberately not here: wall-clock time, threads, real I/O.
 */
import { NodeDown } from "../core/failure.ts"
import { Queue } from "./queue.ts"
import { position } from "../core/hash.ts"
import type { NodeId } from "../core/ids.ts"
import { NodeId as mkNodeId } from "../core/ids.ts"
import type {
  ClientOp,
  ClientResult,
  Command,
  Event,
  OperatorOp,
  PeerMessage,
  StoreView,
  TimerKind,
} from "../core/messages.ts"
import * as Chord from "../core/chord.ts"
import * as Executor from "../core/executor.ts"
import * as Membership from "../core/membership.ts"
import * as Merkle from "../core/merkle.ts"
import { keeps } from "../core/node-ae.ts"
import * as Node from "../core/node.ts"
import { commandsOf, type Ready } from "../core/ready.ts"
import * as Ring from "../core/ring.ts"
import type * as Version from "../core/version.ts"
import { MemoryStore } from "./memory-store.ts"
import { Prng } from "./prng.ts"

export interface NetworkConfig {
  readonly latencyMinMs: number
  readonly latencyMaxMs: number
  readonly lossRate: number
  readonly duplicateRate: number
}

export interface SimConfig {
  readonly seed: number
  readonly nodes: number
  readonly network: NetworkConfig
  /** Overrides of the node machine's defaults (n, r, w, timeouts …). */
  readonly node?: Partial<Omit<Node.Config, "self" | "members">>
  /** How often each node receives TickElapsed. */
  readonly tickMs?: number
  /** Per-node wall-clock offset in ms (node i's clock reads now + clockSkewMs[i]). */
  readonly clockSkewMs?: ReadonlyArray<number>
  /**
   * Time for a write to become durable (0: at once). Until then it is visible to its node but a
   * crash loses it, and every Send, Reply and Removed after it waits (impl/core/executor.ts).
   */
  readonly persistDelayMs?: number
  /**
   * A machine exception (`Node.step` threw) always crash-stops its node and is counted. Then
   * "throw" (the default) also fails the run: a MachineError leaves the call that was running
   * the simulation. "crash-stop": the run goes on without the node, as a cluster goes on
   * without a process that exited; the property asserts `counters.stepErrors` is 0 at the end.
   */
  readonly onMachineError?: "throw" | "crash-stop"
  /** Sees every event a node is about to step, with the node's id (traces, tests). */
  readonly onEvent?: (node: NodeId, event: Event) => void
  /** Sees every step's commands as one list (`commandsOf`: send, persist, afterPersist, timers). */
  readonly onCommands?: (node: NodeId, event: Event, commands: ReadonlyArray<Command>) => void
  /** Sees every step's Ready, as the machine returned it (transcripts). */
  readonly onReady?: (node: NodeId, event: Event, ready: Ready) => void
  /**
   * After every step, compare each Merkle tree the node keeps with one built afresh from its
   * store, and fail the run (a MachineError) where one differs: every write path must keep the
   * trees in step (impl/core/node-store.ts). O(keys) per kept tree per step, so off by default;
   * DHT_CHECK_TREES=1 in the environment turns it on for every simulation (a whole suite).
   */
  readonly checkTrees?: boolean
}

export interface StoreSnapshot {
  readonly store: MemoryStore
  readonly savedMembers: ReadonlyArray<Membership.Entry> | undefined
  readonly incarnation: number
}

/** A machine exception, thrown out of the simulation (onMachineError "throw"). */
export class MachineError extends Error {}

export const defaultNetwork: NetworkConfig = {
  latencyMinMs: 1,
  latencyMaxMs: 10,
  lossRate: 0,
  duplicateRate: 0,
}

/** One client operation as the history records it (invoke, then ok/fail). */
export interface Operation {
  readonly id: number
  readonly node: NodeId
  readonly op: ClientOp
  readonly invokedAt: number
  result?: ClientResult
  completedAt?: number
}

/**
 * The bootstrap cluster of `nodes` nodes n0, n1, …: their ids, the machine configuration they
 * share (`node` over the defaults, each node a member of weight 1) and its ring. Shared by the
 * simulator and the machine layer's cluster (properties/helpers/machines.ts).
 */
export const bootstrap = (
  nodes: number,
  node: Partial<Omit<Node.Config, "self" | "members">> | undefined,
): {
  readonly ids: ReadonlyArray<NodeId>
  readonly nodeConfig: Omit<Node.Config, "self">
  readonly bootRing: Ring.Ring
} => {
  const ids = Array.from({ length: nodes }, (_, i) => mkNodeId(`n${i}`))
  const nodeConfig = { ...Node.defaults, ...node, members: ids.map((id) => ({ id, weight: 1 })) }
  return { ids, nodeConfig, bootRing: Ring.make(nodeConfig.members, nodeConfig.tokensPerNode) }
}

/*
 * The history's bookkeeping, shared by the simulator and the machine layer's cluster
 * (properties/helpers/machines.ts): an operation's id is its index in the history, and the
 * machine's `client` reference of the request.
 */

/**
 * Record a client operation invoked at `node` at `now` and hand it to `start` with its id;
 * `start` returns false when the node is down, and the operation then fails at once.
 */
export const invokeOperation = (
  history: Array<Operation>,
  node: NodeId,
  op: ClientOp,
  now: number,
  start: (client: number) => boolean,
): Operation => {
  const operation: Operation = { id: history.length, node, op, invokedAt: now }
  history.push(operation)
  if (!start(operation.id)) {
    operation.result = { _tag: "Failed", error: new NodeDown({ node }) }
    operation.completedAt = now
  }
  return operation
}

/**
 * Record an operator intent (leave, remove) at `node` and `start` it; it stays pending if the
 * node is down. Its record holds no client operation (an empty-key Get stands in).
 */
export const invokeOperator = (
  history: Array<Operation>,
  node: NodeId,
  now: number,
  start: (client: number) => void,
): Operation => {
  const operation: Operation = {
    id: history.length,
    node,
    op: { _tag: "Get", key: "" },
    invokedAt: now,
  }
  history.push(operation)
  start(operation.id)
  return operation
}

/** The machine's Reply to `client` at `now`: the first result completes its operation. */
export const completeOperation = (
  history: ReadonlyArray<Operation>,
  client: number,
  result: ClientResult,
  now: number,
): void => {
  const operation = history[client]
  if (operation === undefined || operation.result !== undefined) return
  operation.result = result
  operation.completedAt = now
}

/** A client or operator request that waits for a paused node. */
type Request =
  | { readonly _tag: "Client"; readonly client: number; readonly op: ClientOp }
  | { readonly _tag: "Operator"; readonly client: number; readonly op: OperatorOp }

type Scheduled =
  | {
      readonly _tag: "Deliver"
      readonly to: NodeId
      readonly from: NodeId
      readonly message: PeerMessage
    }
  | {
      readonly _tag: "Timer"
      readonly node: NodeId
      readonly incarnation: number
      readonly rid: number
      readonly kind: TimerKind
    }
  | { readonly _tag: "Tick"; readonly node: NodeId; readonly incarnation: number }
  /** A store write became durable: apply it to the disk and release what waits behind it. */
  | {
      readonly _tag: "Durable"
      readonly node: NodeId
      readonly incarnation: number
      readonly command: Executor.StoreWrite
      readonly done: () => void
    }
  /** A request that reached a paused node (only ever in a backlog). */
  | {
      readonly _tag: "Request"
      readonly node: NodeId
      readonly incarnation: number
      readonly request: Request
    }
  /** A held connection was healed: deliver its queue, in order. */
  | { readonly _tag: "Release"; readonly link: string }
  /** A paused node was resumed: process its backlog, in order. */
  | { readonly _tag: "Resume"; readonly node: NodeId; readonly incarnation: number }

/** A message behind a held connection. */
interface Held {
  readonly from: NodeId
  readonly to: NodeId
  readonly message: PeerMessage
}

export interface BlockOptions {
  /** Hold messages across the cut (TCP behind a cut link) instead of dropping them. */
  readonly hold?: boolean
}

interface Item {
  readonly at: number
  readonly seq: number
  readonly what: Scheduled
}

interface SimNode {
  readonly id: NodeId
  /** Booted as a joining member (not in the bootstrap cluster). */
  readonly joining: boolean
  /** This node's clock reads virtual time plus this offset. */
  readonly skewMs: number
  state: Node.State | undefined
  incarnation: number
  /** What the node sees: durable data plus writes not yet durable (lost on a crash). */
  store: MemoryStore
  /** What survives a crash. */
  durable: MemoryStore
  /** Runs this incarnation's commands (replaced at every boot). */
  executor: Executor.Executor
  /** SIGSTOPped: processes nothing until resumed. */
  paused: boolean
  /**
   * The membership view the node had when it stopped: what the real driver keeps in its store
   * (saveMembership) and boots with, so that a restarted node knows the members that joined.
   */
  savedMembers: ReadonlyArray<Membership.Entry> | undefined
  /** What fell due while paused (or since resumed, until processed), in order. */
  readonly backlog: Array<Scheduled>
}

export class Simulation {
  now = 0
  readonly ids: ReadonlyArray<NodeId>
  readonly history: Array<Operation> = []
  /** What the network and the nodes did, for coverage counters and reports. */
  readonly counters = {
    sent: 0,
    dropped: 0,
    duplicated: 0,
    delivered: 0,
    /** Messages that arrived across a held cut and waited in its connection's queue. */
    held: 0,
    /** Held messages delivered after the heal. */
    heldDelivered: 0,
    /** Calls to `pause` that paused a running node. */
    pauses: 0,
    /** Messages to a paused node processed after it resumed. */
    deferredMessages: 0,
    /** Timers, ticks and durable writes of a paused node processed after it resumed. */
    deferredOther: 0,
    /** Machine exceptions (`Node.step` threw); each crash-stopped its node. */
    stepErrors: 0,
    /** Steps after which the kept Merkle trees were checked against the store (checkTrees). */
    treeChecks: 0,
  }
  /** What each machine exception said (node, event, message), in order. */
  readonly stepErrors: Array<string> = []
  network: NetworkConfig
  private readonly rng: Prng
  private readonly queue = new Queue<Item>()
  private seq = 0
  private readonly nodes = new Map<NodeId, SimNode>()
  /** Cut connections ("a>b") and what happens to messages across them. */
  private readonly blocked = new Map<string, "drop" | "hold">()
  /** Messages waiting behind a held cut, per connection, in arrival order. */
  private readonly held = new Map<string, Array<Held>>()
  private readonly slowMs = new Map<NodeId, number>()
  private readonly tickMs: number
  private readonly checkTrees: boolean
  private readonly nodeConfig: Omit<Node.Config, "self">
  private readonly bootRing: Ring.Ring

  constructor(readonly config: SimConfig) {
    this.rng = new Prng(config.seed)
    this.network = config.network
    this.tickMs = config.tickMs ?? 100
    this.checkTrees = config.checkTrees ?? process.env.DHT_CHECK_TREES === "1"
    const boot = bootstrap(config.nodes, config.node)
    this.ids = boot.ids
    this.nodeConfig = boot.nodeConfig
    this.bootRing = boot.bootRing
    this.ids.forEach((id, i) => {
      const skewMs = config.clockSkewMs?.[i] ?? 0
      const node = this.newNode(id, skewMs, false)
      this.nodes.set(id, node)
      this.boot(node)
    })
  }

  // -------------------------------------------------------------------------------------------
  // Faults

  isUp(id: NodeId): boolean {
    return this.node(id).state !== undefined
  }

  isPaused(id: NodeId): boolean {
    return this.node(id).paused
  }

  /**
   * Crash a node: volatile state, timers, held commands and its backlog are lost, messages held
   * for it are dropped; the store survives, minus writes that were not durable yet.
   */
  stop(id: NodeId): void {
    const node = this.node(id)
    if (node.state !== undefined) {
      node.savedMembers = [...Membership.view(node.state.membership).values()]
    }
    node.state = undefined
    node.incarnation++
    node.executor.stop()
    node.paused = false
    for (const what of node.backlog.splice(0)) if (what._tag === "Deliver") this.counters.dropped++
    for (const [link, queue] of this.held) {
      if (queue[0]?.to !== id) continue
      this.counters.dropped += queue.length
      this.held.delete(link)
    }
    // Writes that were not durable yet are gone.
    if ((this.config.persistDelayMs ?? 0) > 0) node.store = node.durable.clone()
  }

  /** Running members other than `id`, as bootstrap members for a joiner; the boot ones if none. */
  private seedsFor(id: NodeId): ReadonlyArray<Ring.Member> {
    const live = this.ids.filter((x) => x !== id && this.isUp(x))
    return live.length > 0 ? live.map((x) => ({ id: x, weight: 1 })) : this.nodeConfig.members
  }

  /** How many times the node was stopped or started (its generation is this plus one). */
  incarnationOf(id: NodeId): number {
    return this.node(id).incarnation
  }

  /** A copy of a node's durable state, as a backup of its data directory would hold it. */
  snapshot(id: NodeId): StoreSnapshot {
    const node = this.node(id)
    const members =
      node.state === undefined
        ? node.savedMembers
        : [...Membership.view(node.state.membership).values()]
    return { store: node.durable.clone(), savedMembers: members, incarnation: node.incarnation }
  }

  /**
   * Put a stopped node's data directory back to an earlier copy (its store, saved view and
   * generation counter); `restart` then boots it from there.
   */
  restoreFrom(id: NodeId, copy: StoreSnapshot): void {
    const node = this.node(id)
    if (node.state !== undefined) throw new Error(`restoreFrom: ${id} is running`)
    node.store = copy.store.clone()
    node.durable = copy.store.clone()
    node.savedMembers = copy.savedMembers
    node.incarnation = copy.incarnation
  }

  restart(id: NodeId): void {
    const node = this.node(id)
    if (node.state !== undefined) return
    node.incarnation++
    this.boot(node)
  }

  /**
   * SIGSTOP a running node: it keeps its state and processes nothing until `resume`; what falls
   * due meanwhile waits for it, in order.
   */
  pause(id: NodeId): void {
    const node = this.node(id)
    if (node.state === undefined || node.paused) return
    node.paused = true
    this.counters.pauses++
  }

  /** SIGCONT: the node processes its backlog, in order, then carries on. */
  resume(id: NodeId): void {
    const node = this.node(id)
    if (!node.paused) return
    node.paused = false
    if (node.backlog.length > 0) {
      this.schedule(this.now, { _tag: "Resume", node: id, incarnation: node.incarnation })
    }
  }

  /**
   * Cut the connection from `a` to `b` (one direction) until healed: messages across it are
   * dropped, or with `hold` queued and delivered in order after the heal.
   */
  block(a: NodeId, b: NodeId, options: BlockOptions = {}): void {
    this.blocked.set(`${a}>${b}`, options.hold === true ? "hold" : "drop")
  }

  /** Split the cluster into groups that cannot talk to each other (both directions). */
  partition(groups: ReadonlyArray<ReadonlyArray<NodeId>>, options: BlockOptions = {}): void {
    for (const g of groups) {
      for (const h of groups) {
        if (g === h) continue
        for (const a of g) for (const b of h) this.block(a, b, options)
      }
    }
  }

  /** Reconnect everything; held connections deliver their queues, in order, first. */
  heal(): void {
    this.blocked.clear()
    for (const link of this.held.keys()) this.schedule(this.now, { _tag: "Release", link })
  }

  /** Messages waiting behind held cuts: on the connection from `a` to `b`, or on all. */
  heldCount(a?: NodeId, b?: NodeId): number {
    if (a !== undefined && b !== undefined) return this.held.get(`${a}>${b}`)?.length ?? 0
    let n = 0
    for (const queue of this.held.values()) n += queue.length
    return n
  }

  /** Make a node slow: every message to or from it takes `extraMs` longer (0 to undo). */
  slow(id: NodeId, extraMs: number): void {
    if (extraMs > 0) this.slowMs.set(id, extraMs)
    else this.slowMs.delete(id)
  }

  /** The stored object of `key` on node `id` (for convergence checks). */
  stored(id: NodeId, key: string): Version.Obj | undefined {
    return this.node(id).store.get(key)
  }

  /**
   * The preferred replicas of `key` in the bootstrap cluster (N and tokens as configured): where
   * the properties look for a key's copies. Membership changes are not reflected.
   */
  /**
   * Where a key's copies belong: on the boot ring; under Chord routing, the first N of every
   * node ever started (joiners included) clockwise from the key's position.
   */
  replicasOf(key: string): ReadonlyArray<NodeId> {
    if (this.nodeConfig.routing !== "chord") {
      return Ring.preferenceList(this.bootRing, key, this.nodeConfig.n)
    }
    const k = position(key)
    const byDistance = [...this.ids].sort(
      (a, b) => Chord.distance(k, position(a)) - Chord.distance(k, position(b)),
    )
    return byDistance.slice(0, this.nodeConfig.n)
  }

  storeOf(id: NodeId): MemoryStore {
    return this.node(id).store
  }

  stateOf(id: NodeId): Node.State | undefined {
    return this.node(id).state
  }

  /** Start a new node that joins the cluster (streams in, then becomes up). */
  addNode(): NodeId {
    const id = mkNodeId(`n${this.nodes.size}`)
    const node = this.newNode(id, 0, true)
    this.nodes.set(id, node)
    ;(this.ids as Array<NodeId>).push(id)
    this.boot(node)
    return id
  }

  /** An operator intent (leave, remove) issued at node `at`. */
  operator(at: NodeId, op: OperatorOp): Operation {
    return invokeOperator(this.history, at, this.now, (client) => {
      const node = this.node(at)
      if (node.state !== undefined) this.request(node, { _tag: "Operator", client, op })
    })
  }

  // -------------------------------------------------------------------------------------------
  // Clients

  /** Invoke an operation at node `id` now; the returned record completes as the sim runs. */
  invoke(id: NodeId, op: ClientOp): Operation {
    return invokeOperation(this.history, id, op, this.now, (client) => {
      const node = this.node(id)
      if (node.state === undefined) return false
      this.request(node, { _tag: "Client", client, op })
      return true
    })
  }

  /** Invoke and run until it completes (bounded by `maxMs` of virtual time). */
  call(id: NodeId, op: ClientOp, maxMs = 60_000): Operation {
    const operation = this.invoke(id, op)
    this.runUntil(() => operation.result !== undefined, maxMs)
    return operation
  }

  // -------------------------------------------------------------------------------------------
  // Running

  /** Process events until `done()` holds or virtual time passes now + maxMs. */
  runUntil(done: () => boolean, maxMs: number): boolean {
    const limit = this.now + maxMs
    while (!done()) {
      const next = this.queue.peek()
      if (next === undefined || next.at > limit) {
        this.now = Math.max(this.now, limit)
        return false
      }
      this.processNext()
    }
    return true
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

  private processNext(): void {
    const item = this.queue.pop()!
    this.now = Math.max(this.now, item.at)
    const what = item.what
    switch (what._tag) {
      case "Deliver": {
        const node = this.node(what.to)
        if (node.state === undefined) {
          this.counters.dropped++
          return
        }
        const link = `${what.from}>${what.to}`
        const queue = this.held.get(link)
        // Behind a held cut, or behind messages still held on this connection: wait in order.
        if (this.blocked.get(link) === "hold" || queue !== undefined) {
          this.counters.held++
          if (queue === undefined) this.held.set(link, [what])
          else queue.push(what)
          return
        }
        return this.arrive(node, what)
      }
      case "Release": {
        if (this.blocked.get(what.link) === "hold") return // cut again: a later heal releases it
        const queue = this.held.get(what.link)
        if (queue === undefined) return
        this.held.delete(what.link)
        if (this.blocked.get(what.link) === "drop") {
          this.counters.dropped += queue.length
          return
        }
        for (const message of queue) {
          const node = this.node(message.to)
          if (node.state === undefined) {
            this.counters.dropped++
            continue
          }
          this.counters.heldDelivered++
          this.arrive(node, { _tag: "Deliver", ...message })
        }
        return
      }
      case "Resume": {
        const node = this.node(what.node)
        if (node.incarnation !== what.incarnation) return
        while (!node.paused && node.backlog.length > 0) {
          const next = node.backlog.shift()!
          if (next._tag === "Deliver") this.counters.deferredMessages++
          else if (next._tag !== "Request") this.counters.deferredOther++
          this.handle(node, next)
        }
        return
      }
      case "Timer":
      case "Tick":
      case "Durable": {
        const node = this.node(what.node)
        if (node.incarnation !== what.incarnation || node.state === undefined) return
        if (this.busy(node)) node.backlog.push(what)
        else this.handle(node, what)
        return
      }
      case "Request":
        // Requests only ever wait in a backlog.
        return
    }
  }

  /** A message reached its (live) receiver: processed now, or after the node's backlog. */
  private arrive(node: SimNode, what: Scheduled & { _tag: "Deliver" }): void {
    if (this.busy(node)) {
      node.backlog.push(what)
      return
    }
    this.handle(node, what)
  }

  /** Paused, or resumed with a backlog not yet processed: new work queues behind it. */
  private busy(node: SimNode): boolean {
    return node.paused || node.backlog.length > 0
  }

  /** Process one item at a running node. */
  private handle(node: SimNode, what: Scheduled): void {
    if (node.state === undefined) return
    switch (what._tag) {
      case "Deliver":
        this.counters.delivered++
        return this.apply(node, {
          _tag: "MessageReceived",
          now: this.clock(node),
          from: what.from,
          message: what.message,
        })
      case "Timer":
        if (node.incarnation !== what.incarnation) return
        return this.apply(node, {
          _tag: "TimerFired",
          now: this.clock(node),
          rid: what.rid,
          kind: what.kind,
        })
      case "Tick":
        if (node.incarnation !== what.incarnation) return
        this.apply(node, { _tag: "TickElapsed", now: this.clock(node) })
        this.schedule(this.now + this.tickMs, what)
        return
      case "Durable":
        if (node.incarnation !== what.incarnation) return
        node.durable.apply(what.command)
        what.done()
        return
      case "Request": {
        if (node.incarnation !== what.incarnation) return
        const { request } = what
        return this.apply(
          node,
          request._tag === "Client"
            ? {
                _tag: "ClientRequested",
                now: this.clock(node),
                client: request.client,
                op: request.op,
              }
            : {
                _tag: "OperatorRequested",
                now: this.clock(node),
                client: request.client,
                op: request.op,
              },
        )
      }
      case "Release":
      case "Resume":
        return
    }
  }

  /** A client or operator request reaches a live node: stepped now, or after its backlog. */
  private request(node: SimNode, request: Request): void {
    const what: Scheduled = {
      _tag: "Request",
      node: node.id,
      incarnation: node.incarnation,
      request,
    }
    if (this.busy(node)) node.backlog.push(what)
    else this.handle(node, what)
  }

  private newNode(id: NodeId, skewMs: number, joining: boolean): SimNode {
    const node: SimNode = {
      id,
      skewMs,
      joining,
      state: undefined,
      incarnation: 0,
      store: new MemoryStore(),
      durable: new MemoryStore(),
      executor: undefined as unknown as Executor.Executor,
      paused: false,
      savedMembers: undefined,
      backlog: [],
    }
    return node
  }

  private boot(node: SimNode): void {
    node.executor = this.executorFor(node)
    node.state = Node.init(
      {
        ...this.nodeConfig,
        self: node.id,
        // A joiner restarts as a joiner (as `dht node --join` would): it streams again.
        joining: node.joining,
        // A joiner is pointed at members that are running now, as an operator would list them
        // in --peers (the boot members may all have left or been removed since).
        ...(node.joining && this.nodeConfig.routing !== "chord"
          ? { members: this.seedsFor(node.id) }
          : {}),
        generation: node.incarnation + 1,
        savedMembers: node.savedMembers,
        // Chord routing: every node gets the boot cluster as seeds (its first node creates the
        // ring); nodes added later join through them.
        ...(this.nodeConfig.routing === "chord"
          ? {
              chordSeeds: this.ids
                .filter((id) => !this.nodes.get(id)?.joining)
                .map((id) => ({ id, pos: position(id) })),
            }
          : {}),
      },
      this.clock(node),
    )
    // Stagger first ticks so nodes do not beat in lockstep.
    const first = this.now + 1 + this.rng.int(this.tickMs)
    this.schedule(first, { _tag: "Tick", node: node.id, incarnation: node.incarnation })
  }

  /** Step the machine and hand its commands to the executor; an exception crash-stops it. */
  private apply(node: SimNode, event: Event): void {
    this.config.onEvent?.(node.id, event)
    let ready: Ready
    try {
      ready = Node.step(node.state!, event, node.store)[1]
    } catch (e) {
      this.counters.stepErrors++
      const detail = e instanceof Error ? (e.stack ?? e.message) : String(e)
      const report = `${node.id} at ${this.now} ms, step(${event._tag}) threw: ${detail}`
      this.stepErrors.push(report)
      this.stop(node.id)
      if ((this.config.onMachineError ?? "throw") === "throw") throw new MachineError(report)
      return
    }
    this.config.onReady?.(node.id, event, ready)
    if (this.config.onCommands !== undefined) {
      this.config.onCommands(node.id, event, commandsOf(ready))
    }
    node.executor.execute(ready)
    if (this.checkTrees && node.state !== undefined) this.checkTreesOf(node, event)
  }

  /** The trees `node` keeps against its store (checkTrees): a MachineError where one differs. */
  private checkTreesOf(node: SimNode, event: Event): void {
    const state = node.state!
    if (state.aeTrees.size === 0 && state.aeBuild?.phase !== "Hash") return
    this.counters.treeChecks++
    const wrong = treesOutOfStep(state, node.store)
    if (wrong.length === 0) return
    throw new MachineError(
      `${node.id} at ${this.now} ms, after step(${event._tag}): kept Merkle trees differ from ` +
        `the store: ${wrong.join(", ")}`,
    )
  }

  /** The executor of one incarnation of a node: the real driver's, over the simulated world. */
  private executorFor(node: SimNode): Executor.Executor {
    const incarnation = node.incarnation
    const delay = this.config.persistDelayMs ?? 0
    return new Executor.Executor({
      write: (command) => {
        node.store.apply(command)
        if (delay <= 0) {
          node.durable.apply(command)
          return undefined
        }
        return (done) =>
          this.schedule(this.now + delay, {
            _tag: "Durable",
            node: node.id,
            incarnation,
            command,
            done,
          })
      },
      run: (command) => {
        switch (command._tag) {
          case "Removed":
            // A removed node stops serving, as the real driver does.
            return this.stop(node.id)
          case "Send":
            return this.send(node.id, command.to, command.message)
          case "Reply":
            return completeOperation(this.history, command.client, command.result, this.now)
        }
      },
      setTimer: (command) =>
        // The machine speaks its own clock; convert back to virtual time.
        this.schedule(Math.max(command.at - node.skewMs, this.now), {
          _tag: "Timer",
          node: node.id,
          incarnation,
          rid: command.rid,
          kind: command.kind,
        }),
      // The simulated disk never fails.
      writeFailed: () => {},
    })
  }

  private send(from: NodeId, to: NodeId, message: PeerMessage): void {
    this.counters.sent++
    if (this.blocked.get(`${from}>${to}`) === "drop" || this.rng.chance(this.network.lossRate)) {
      this.counters.dropped++
      return
    }
    const copies = this.rng.chance(this.network.duplicateRate) ? 2 : 1
    if (copies === 2) this.counters.duplicated++
    for (let i = 0; i < copies; i++) {
      const { latencyMinMs: lo, latencyMaxMs: hi } = this.network
      const extra = (this.slowMs.get(from) ?? 0) + (this.slowMs.get(to) ?? 0)
      const at = this.now + lo + this.rng.int(hi - lo + 1) + extra
      this.schedule(at, { _tag: "Deliver", to, from, message })
    }
  }

  private clock(node: SimNode): number {
    return this.now + node.skewMs
  }

  private schedule(at: number, what: Scheduled): void {
    this.queue.push({ at, seq: this.seq++, what })
  }

  private node(id: NodeId): SimNode {
    const node = this.nodes.get(id)
    if (node === undefined) throw new Error(`no simulated node ${id}`)
    return node
  }
}

/**
 * The anti-entropy trees of a node that are out of step with its store (AE-9): each kept tree
 * against one built afresh from the keys it holds, and the tree being built against the keys
 * its scan has passed (leaves and size only: its internal digests are hashed when it is done).
 * Names the trees that differ; none when every tree is in step (or none is kept).
 */
export const treesOutOfStep = (state: Node.State, store: StoreView): Array<string> => {
  const build = state.aeBuild?.phase === "Hash" ? state.aeBuild : undefined
  if (state.aeTrees.size === 0 && build === undefined) return []
  const all = store.scan(undefined, Number.MAX_SAFE_INTEGER)
  const wrong: Array<string> = []
  for (const [name, kept] of state.aeTrees) {
    const entries = all.filter(([key]) => keeps(state, kept.peer, key))
    const fresh = Merkle.build(kept.tree.range, kept.tree.shape, entries)
    if (!Merkle.sameDigest(Merkle.root(kept.tree), Merkle.root(fresh))) wrong.push(name)
  }
  if (build !== undefined) {
    const cursor = build.cursor
    const passed = all.filter(
      ([key]) => cursor !== undefined && key <= cursor && keeps(state, build.peer, key),
    )
    const tree = build.tree!
    const fresh = Merkle.add(Merkle.begin(tree.range, tree.shape), passed)
    const leaves = (t: Merkle.Tree) => t.levels[t.shape.depth]!.join()
    if (leaves(tree) !== leaves(fresh) || tree.size !== fresh.size) {
      wrong.push(`${Merkle.rangeId(tree.range)} (being built, up to ${cursor})`)
    }
  }
  return wrong
}
