/**
 * The driver: feeds real events to the storage machine (impl/core/node.ts, unchanged) and
 * carries out its commands. This is the whole of the "runtime" between the machine and the
 * world; it holds no protocol logic.
 *
 * Events: client requests (`submit`, from the RESP server), decoded peer messages (`receive`,
 * from the transport), timers the machine set, and a TickElapsed every tickMs. `now` is the
 * node clock's time at the moment the event is stepped. The clock and its timers are the
 * `NodeClock` service (impl/node/runtime.ts): the system clock on a real node, Effect's
 * TestClock in properties/driver-clock.test.ts; the driver reads no other clock.
 *
 * Commands run through the executor the simulator uses too (impl/core/executor.ts), which
 * keeps the machine's durability contract: store writes (Persist, PersistHint, DropHint, Drop)
 * are issued at once (the store batches the writes of one turn into one commit), and every
 * Send, Reply and `Removed` after one waits until it and every write before it are durable.
 * Holding is global, not per request: a later event's Send never overtakes an earlier event's
 * held Send. When nothing is in flight (always, with the memory store) commands run
 * synchronously, with no promise on the path. SetTimer is never held.
 *
 * Crash-stop on anything the node cannot vouch for: a failed commit (the store and the machine
 * disagree) and a machine exception (`Node.step` threw: a bug; the state may be half-updated,
 * so carrying on could acknowledge what it never stored) both stop the driver at once (nothing
 * held is released, no timer fires) and call `onFatal`, so the process exits; the protocol
 * tolerates a crashed node. `Removed` (this node left the cluster) stops it through `onRemoved`,
 * after the messages before it were handed to the transport.
 */
import type { NodeId } from "../core/ids.ts"
import type * as Membership from "../core/membership.ts"
import type {
  ClientOp,
  OperatorOp,
  ClientResult,
  Event,
  PeerMessage,
  StoreView,
  TimerKind,
} from "../core/messages.ts"
import * as Executor from "../core/executor.ts"
import * as Node from "../core/node.ts"
import type { Log } from "./log.ts"
import type { Cancel, ClockShape } from "./runtime.ts"
import type { StoreShape } from "./store.ts"

export interface DriverOptions {
  readonly machine: Node.Config
  readonly store: StoreShape
  /** Time and timers (impl/node/runtime.ts). */
  readonly clock: ClockShape
  readonly tickMs: number
  readonly log: Log
  /**
   * Hand a message to the transport (queues; never throws). `address`: where `to` listens, when
   * known (from the command, else from the machine's membership view).
   */
  readonly send: (to: NodeId, message: PeerMessage, address: string | undefined) => void
  /**
   * The driver stopped for good (a persist failed to commit, or the machine threw): stop the
   * node, i.e. exit the process.
   */
  readonly onFatal: (reason: string) => void
  /** The cluster removed this node (it left, or an operator removed it): stop the node. */
  readonly onRemoved: () => void
  /** Membership as this node sees it changed (a status or an address): for logs and sockets. */
  readonly onMembership?: (
    members: ReadonlyArray<Membership.Entry>,
    previous: ReadonlyArray<Membership.Entry>,
  ) => void
}

export interface DriverStats {
  readonly machine: Readonly<Node.Stats>
  /** Requests submitted by clients whose result is still outstanding. */
  readonly inFlight: number
  /** Persists issued and not yet durable. */
  readonly persistsInFlight: number
}

export class Driver {
  private state: Node.State
  private readonly store: StoreShape
  private readonly clock: ClockShape
  private readonly tickMs: number
  private readonly storeView: StoreView
  private readonly log: Log
  private readonly send: DriverOptions["send"]
  private readonly onFatal: (reason: string) => void
  private readonly onRemoved: () => void
  private readonly onMembership: DriverOptions["onMembership"]
  /** Members' ids, statuses and addresses at the last tick, to notice changes. */
  private membershipSignature = ""
  private lastMembers: ReadonlyArray<Membership.Entry> = []
  private readonly waiting = new Map<number, (result: ClientResult) => void>()
  private nextClientRef = 1
  /** Runs the machine's commands under the durability contract. */
  private readonly executor: Executor.Executor
  /** Cancels of the timers set and not yet fired. */
  private readonly timers = new Set<Cancel>()
  private ticker: Cancel | undefined
  private stopped = false

  constructor(options: DriverOptions) {
    this.store = options.store
    this.clock = options.clock
    this.tickMs = options.tickMs
    this.storeView = {
      get: options.store.get,
      hint: options.store.hint,
      hintsFor: options.store.hintsFor,
      hints: options.store.hints,
      scan: options.store.scan,
    }
    this.log = options.log
    this.send = options.send
    this.onFatal = options.onFatal
    this.onRemoved = options.onRemoved
    this.onMembership = options.onMembership
    this.executor = new Executor.Executor({
      write: (command) => this.write(command),
      run: (command) => this.run(command),
      setTimer: (command) => this.setTimer(command.rid, command.kind, command.at),
      writeFailed: (e) => {
        const detail = e instanceof Error ? e.message : String(e)
        this.fatal(`store commit failed: ${detail}`)
      },
    })
    this.state = Node.init(options.machine, this.clock.now())
    this.armTicker()
  }

  /** Run a client operation; `onResult` is called exactly once, unless the node stops first. */
  submit(op: ClientOp, onResult: (result: ClientResult) => void): void {
    const client = this.nextClientRef++
    this.waiting.set(client, onResult)
    this.step({ _tag: "ClientRequested", now: this.clock.now(), client, op })
  }

  /** Run an operator intent (join, leave, remove); `onResult` as for `submit`. */
  operator(op: OperatorOp, onResult: (result: ClientResult) => void): void {
    const client = this.nextClientRef++
    this.waiting.set(client, onResult)
    this.step({ _tag: "OperatorRequested", now: this.clock.now(), client, op })
  }

  /** The members as this node sees them, sorted by id. */
  members(): ReadonlyArray<Membership.Entry> {
    return Node.members(this.state)
  }

  /** A decoded message from a peer. */
  receive(from: NodeId, message: PeerMessage): void {
    this.step({ _tag: "MessageReceived", now: this.clock.now(), from, message })
  }

  stats(): DriverStats {
    return {
      machine: { ...this.state.stats },
      inFlight: this.waiting.size,
      persistsInFlight: this.executor.inFlight,
    }
  }

  /** The cluster as this node sees it, plus its local counts (DHT.STATUS). */
  status(): ReturnType<typeof Node.statusReport> & { keys: number; hints: number } {
    return {
      ...Node.statusReport(this.state, this.clock.now()),
      keys: this.store.size(),
      hints: this.store.hintCount(),
    }
  }

  /**
   * Whether the machine serves requests: false while a restarted or joining node waits for a
   * peer to confirm its store and for its view to catch up (INFO reports it as `loading:1`).
   */
  serving(): boolean {
    return Node.serving(this.state)
  }

  /** Reclamation of dead keys as this node sees it (INFO's keyspace and stats). */
  reclaim(): ReturnType<typeof Node.reclaimReport> {
    return Node.reclaimReport(this.state)
  }

  /** Peers the machine currently believes up. */
  believedUp(peer: NodeId): boolean {
    return Node.believedUp(this.state, peer, this.clock.now())
  }

  /** Stop ticking and firing timers; results still outstanding are never delivered. */
  stop(): void {
    this.stopped = true
    this.executor.stop()
    this.ticker?.()
    this.ticker = undefined
    for (const cancel of this.timers) cancel()
    this.timers.clear()
    this.waiting.clear()
  }

  /**
   * The next TickElapsed, on a fixed cadence: tickMs after the previous tick was due, so the
   * time a tick's step takes does not push every later tick back. A tick that fell more than a
   * period behind (a paused process, a long step) is not caught up in a burst: the cadence
   * restarts from now.
   */
  private armTicker(due: number = this.clock.now() + this.tickMs): void {
    this.ticker = this.clock.schedule(due, () => {
      this.ticker = undefined
      this.tick()
      if (this.stopped) return
      const now = this.clock.now()
      const next = due + this.tickMs
      this.armTicker(next > now ? next : now + this.tickMs)
    })
  }

  private tick(): void {
    this.step({ _tag: "TickElapsed", now: this.clock.now() })
    if (this.stopped) return
    const members = Node.members(this.state)
    const signature = members.map((m) => `${m.id}:${m.status}@${m.peerAddress}`).join(",")
    if (signature === this.membershipSignature) return
    const previous = this.lastMembers
    this.membershipSignature = signature
    this.lastMembers = members
    // Remember the view across restarts (statuses and addresses change rarely).
    this.store.saveMembership({ members })
    this.onMembership?.(members, previous)
  }

  private step(event: Event): void {
    if (this.stopped) return
    let ready: Executor.Ready
    try {
      const [state, out] = Node.step(this.state, event, this.storeView)
      this.state = state
      ready = out
    } catch (e) {
      const detail = e instanceof Error ? (e.stack ?? e.message) : String(e)
      this.fatal(`machine exception in step(${event._tag}): ${detail}`)
      return
    }
    this.executor.execute(ready)
  }

  /** Crash-stop: nothing more runs, and the process is told to exit (`onFatal` logs why). */
  private fatal(reason: string): void {
    if (this.stopped) return
    this.stop()
    this.onFatal(reason)
  }

  /** Issue a store write; its promise, if the write is not durable yet. */
  private write(command: Executor.StoreWrite): Executor.Durability {
    const durable = ((): Promise<void> | undefined => {
      switch (command._tag) {
        case "Persist":
          return this.store.put(command.key, command.obj)
        case "PersistHint":
          return this.store.putHint(command.owner, command.key, command.obj)
        case "DropHint":
          return this.store.dropHint(command.owner, command.key, command.obj)
        case "Drop":
          return this.store.drop(command.key, command.obj)
      }
    })()
    if (durable === undefined) return undefined
    return (ok, failed) => durable.then(ok, failed)
  }

  private run(command: Executor.Outbound): void {
    switch (command._tag) {
      case "Send":
        this.send(
          command.to,
          command.message,
          command.address ?? Node.peerAddressOf(this.state, command.to),
        )
        return
      case "Removed":
        this.log.warn("this node has been removed from the cluster; stopping")
        this.onRemoved()
        return
      case "Reply": {
        const onResult = this.waiting.get(command.client)
        if (onResult === undefined) return
        this.waiting.delete(command.client)
        onResult(command.result)
        return
      }
    }
  }

  private setTimer(rid: number, kind: TimerKind, at: number): void {
    if (this.stopped) return
    const cancel = this.clock.schedule(at, () => {
      this.timers.delete(cancel)
      this.step({ _tag: "TimerFired", now: this.clock.now(), rid, kind })
    })
    this.timers.add(cancel)
  }
}
