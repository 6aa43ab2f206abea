/**
 * The deterministic simulator: many storage nodes (impl/core/node.ts, unchanged) on a virtual
 * network with virtual time. One seeded generator decides every latency, loss and duplication,
 * so a run is a pure function of (seed, configuration, the sequence of calls made on it) and
 * replays exactly.
 *
 * Network model: each message is delayed by a uniform latency in [latencyMinMs, latencyMaxMs]
 * (so messages reorder), plus a node's extra delay when it is slow (`slow`), lost with
 * probability `lossRate`, delivered twice with probability `duplicateRate`, and dropped when a
 * partition separates the two nodes (partitions may be asymmetric: `block(a, b)` stops a→b
 * only). Each node's clock may be skewed (`clockSkewMs`), and persists may take time to become
 * durable (`persistDelayMs`), a crash losing what was not. A stopped node receives nothing, its timers are
 * gone, and its volatile state is lost; its store survives (the disk), and `restart` boots a
 * fresh machine over it. Persists are durable at once (a crash between two commands of one
 * batch is not modelled here; the ordering contract makes acks follow their persists).
 *
 * Deliberately not here: wall-clock time, threads, real I/O.
 */
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
  TimerKind,
} from "../core/messages.ts"
import * as Chord from "../core/chord.ts"
import * as Node from "../core/node.ts"
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
   * crash loses it, and every command after it in its batch waits, as in the real driver.
   */
  readonly persistDelayMs?: number
}

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
  /** A persist became durable: apply it and run the rest of its batch. */
  | {
      readonly _tag: "Durable"
      readonly node: NodeId
      readonly incarnation: number
      readonly commands: ReadonlyArray<Command>
      readonly index: number
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
  readonly durable: MemoryStore
}

export class Simulation {
  now = 0
  readonly ids: ReadonlyArray<NodeId>
  readonly history: Array<Operation> = []
  /** Messages sent, dropped and duplicated, for coverage counters and reports. */
  readonly counters = { sent: 0, dropped: 0, duplicated: 0, delivered: 0 }
  network: NetworkConfig
  private readonly rng: Prng
  private readonly queue = new Queue<Item>()
  private seq = 0
  private readonly nodes = new Map<NodeId, SimNode>()
  private readonly blocked = new Set<string>()
  private readonly slowMs = new Map<NodeId, number>()
  private readonly tickMs: number
  private readonly nodeConfig: Omit<Node.Config, "self">
  private readonly bootRing: Ring.Ring

  constructor(readonly config: SimConfig) {
    this.rng = new Prng(config.seed)
    this.network = config.network
    this.tickMs = config.tickMs ?? 100
    this.ids = Array.from({ length: config.nodes }, (_, i) => mkNodeId(`n${i}`))
    this.nodeConfig = {
      ...Node.defaults,
      ...config.node,
      members: this.ids.map((id) => ({ id, weight: 1 })),
    }
    this.bootRing = Ring.make(this.nodeConfig.members, this.nodeConfig.tokensPerNode)
    this.ids.forEach((id, i) => {
      const skewMs = config.clockSkewMs?.[i] ?? 0
      const node: SimNode = {
        id,
        skewMs,
        joining: false,
        state: undefined,
        incarnation: 0,
        store: new MemoryStore(),
        durable: new MemoryStore(),
      }
      this.nodes.set(id, node)
      this.boot(node)
    })
  }

  // -------------------------------------------------------------------------------------------
  // Faults

  isUp(id: NodeId): boolean {
    return this.node(id).state !== undefined
  }

  /** Crash a node: volatile state and timers are lost, the store survives. */
  stop(id: NodeId): void {
    const node = this.node(id)
    node.state = undefined
    node.incarnation++
    // Writes that were not durable yet are gone.
    if ((this.config.persistDelayMs ?? 0) > 0) node.store = node.durable.clone()
  }

  restart(id: NodeId): void {
    const node = this.node(id)
    if (node.state !== undefined) return
    node.incarnation++
    this.boot(node)
  }

  /** Drop every message from `a` to `b` (one direction) until healed. */
  block(a: NodeId, b: NodeId): void {
    this.blocked.add(`${a}>${b}`)
  }

  /** Split the cluster into groups that cannot talk to each other (both directions). */
  partition(groups: ReadonlyArray<ReadonlyArray<NodeId>>): void {
    for (const g of groups) {
      for (const h of groups) {
        if (g === h) continue
        for (const a of g) for (const b of h) this.block(a, b)
      }
    }
  }

  heal(): void {
    this.blocked.clear()
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
    const node: SimNode = {
      id,
      skewMs: 0,
      joining: true,
      state: undefined,
      incarnation: 0,
      store: new MemoryStore(),
      durable: new MemoryStore(),
    }
    this.nodes.set(id, node)
    ;(this.ids as Array<NodeId>).push(id)
    this.boot(node)
    return id
  }

  /** An operator intent (leave, remove) issued at node `at`. */
  operator(at: NodeId, op: OperatorOp): Operation {
    const operation: Operation = {
      id: this.history.length,
      node: at,
      op: { _tag: "Get", key: "" },
      invokedAt: this.now,
    }
    this.history.push(operation)
    const node = this.node(at)
    if (node.state !== undefined) {
      this.apply(node, {
        _tag: "OperatorRequested",
        now: this.clock(node),
        client: operation.id,
        op,
      })
    }
    return operation
  }

  // -------------------------------------------------------------------------------------------
  // Clients

  /** Invoke an operation at node `id` now; the returned record completes as the sim runs. */
  invoke(id: NodeId, op: ClientOp): Operation {
    const operation: Operation = { id: this.history.length, node: id, op, invokedAt: this.now }
    this.history.push(operation)
    const node = this.node(id)
    if (node.state === undefined) {
      operation.result = { _tag: "Failed", reason: "Timeout", message: `node ${id} is down` }
      operation.completedAt = this.now
      return operation
    }
    this.apply(node, { _tag: "ClientRequested", now: this.clock(node), client: operation.id, op })
    return operation
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
        this.counters.delivered++
        this.apply(node, {
          _tag: "MessageReceived",
          now: this.clock(node),
          from: what.from,
          message: what.message,
        })
        return
      }
      case "Timer": {
        const node = this.node(what.node)
        if (node.incarnation !== what.incarnation || node.state === undefined) return
        this.apply(node, {
          _tag: "TimerFired",
          now: this.clock(node),
          rid: what.rid,
          kind: what.kind,
        })
        return
      }
      case "Durable": {
        const node = this.node(what.node)
        if (node.incarnation !== what.incarnation || node.state === undefined) return
        node.durable.apply(what.commands[what.index]!)
        this.executeFrom(node, what.commands, what.index + 1)
        return
      }
      case "Tick": {
        const node = this.node(what.node)
        if (node.incarnation !== what.incarnation || node.state === undefined) return
        this.apply(node, { _tag: "TickElapsed", now: this.clock(node) })
        this.schedule(this.now + this.tickMs, what)
        return
      }
    }
  }

  private boot(node: SimNode): void {
    node.state = Node.init(
      {
        ...this.nodeConfig,
        self: node.id,
        // A joiner restarts as a joiner (as `dht node --join` would): it streams again.
        joining: node.joining,
        generation: node.incarnation + 1,
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

  private apply(node: SimNode, event: Event): void {
    const [, commands] = Node.step(node.state!, event, node.store)
    this.executeFrom(node, commands, 0)
  }

  /** Execute a batch in order; a persist holds back the rest until it is durable. */
  private executeFrom(node: SimNode, commands: ReadonlyArray<Command>, start: number): void {
    const delay = this.config.persistDelayMs ?? 0
    for (let i = start; i < commands.length; i++) {
      const command = commands[i]!
      if (delay > 0 && node.store.isDurable(command)) {
        node.store.apply(command)
        this.schedule(this.now + delay, {
          _tag: "Durable",
          node: node.id,
          incarnation: node.incarnation,
          commands,
          index: i,
        })
        return
      }
      this.execute(node, command)
    }
  }

  private execute(node: SimNode, command: Command): void {
    switch (command._tag) {
      case "Persist":
      case "PersistHint":
      case "DropHint":
      case "Drop":
        node.store.apply(command)
        node.durable.apply(command)
        return
      case "Removed":
        // A removed node stops serving, as the real driver does.
        this.stop(node.id)
        return
      case "Send":
        return this.send(node.id, command.to, command.message)
      case "Reply": {
        const operation = this.history[command.client]
        if (operation === undefined || operation.result !== undefined) return
        operation.result = command.result
        operation.completedAt = this.now
        return
      }
      case "SetTimer":
        // The machine speaks its own clock; convert back to virtual time.
        this.schedule(Math.max(command.at - node.skewMs, this.now), {
          _tag: "Timer",
          node: node.id,
          incarnation: node.incarnation,
          rid: command.rid,
          kind: command.kind,
        })
        return
    }
  }

  private send(from: NodeId, to: NodeId, message: PeerMessage): void {
    this.counters.sent++
    if (this.blocked.has(`${from}>${to}`) || this.rng.chance(this.network.lossRate)) {
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
