/**
 * The driver: feeds real events to the storage machine (impl/core/node.ts, unchanged) and
 * carries out its commands. This is the whole of the "runtime" between the machine and the
 * world; it holds no protocol logic.
 *
 * Events: client requests (`submit`, from the RESP server), decoded peer messages (`receive`,
 * from the transport), timers the machine set, and a TickElapsed every tickMs. `now` is
 * Date.now() at the moment the event is stepped.
 *
 * Commands run in order, with the machine's durability contract: every command after a
 * `Persist` (or another store write: PersistHint, DropHint, Drop) waits until that write is
 * durable. Store writes themselves are issued at once (the store batches the writes of one turn
 * into one commit); the Sends, Replies and `Removed` behind them are
 * held in a FIFO of segments, one per persist still in flight, and released in order as the
 * persists become durable. When nothing is in flight (always, with the memory store) commands
 * run synchronously, with no promise on the path. Holding is global, not per request: a later
 * event's Send never overtakes an earlier event's held Send, so a value read from a write that
 * is not yet durable cannot leave the node before that write is durable either.
 *
 * SetTimer is never held: a timer only ever fires an event, which is as safe early as late.
 *
 * A failed commit means the store and the machine disagree; the node stops (crash-stop, which
 * the protocol tolerates) through `onFatal`. `Removed` (this node left the cluster) stops it
 * through `onRemoved`, after the messages before it were handed to the transport.
 */
import type { NodeId } from "../core/ids.ts"
import type * as Membership from "../core/membership.ts"
import type {
  ClientOp,
  OperatorOp,
  ClientResult,
  Command,
  Event,
  PeerMessage,
  StoreView,
  TimerKind,
} from "../core/messages.ts"
import * as Node from "../core/node.ts"
import type { Log } from "./log.ts"
import type { StoreShape } from "./store.ts"

export interface DriverOptions {
  readonly machine: Node.Config
  readonly store: StoreShape
  readonly tickMs: number
  readonly log: Log
  /**
   * Hand a message to the transport (queues; never throws). `address`: where `to` listens, when
   * known (from the command, else from the machine's membership view).
   */
  readonly send: (to: NodeId, message: PeerMessage, address: string | undefined) => void
  /** A persist failed to commit: stop the node. */
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
  /** Events whose step threw (a machine bug); the node carries on. */
  readonly stepErrors: number
}

/** Commands released together once one persist (and every one before it) is durable. */
interface Segment {
  done: boolean
  readonly held: Array<Command>
}

export class Driver {
  private state: Node.State
  private readonly store: StoreShape
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
  /** Persists in flight, oldest first; commands after a persist wait in its segment. */
  private readonly segments: Array<Segment> = []
  private readonly timers = new Set<NodeJS.Timeout>()
  private ticker: NodeJS.Timeout | undefined
  private stopped = false
  private stepErrors = 0

  constructor(options: DriverOptions) {
    this.store = options.store
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
    this.state = Node.init(options.machine, Date.now())
    this.ticker = setInterval(() => this.tick(), options.tickMs)
    this.ticker.unref()
  }

  /** Run a client operation; `onResult` is called exactly once, unless the node stops first. */
  submit(op: ClientOp, onResult: (result: ClientResult) => void): void {
    const client = this.nextClientRef++
    this.waiting.set(client, onResult)
    this.step({ _tag: "ClientRequested", now: Date.now(), client, op })
  }

  /** Run an operator intent (join, leave, remove); `onResult` as for `submit`. */
  operator(op: OperatorOp, onResult: (result: ClientResult) => void): void {
    const client = this.nextClientRef++
    this.waiting.set(client, onResult)
    this.step({ _tag: "OperatorRequested", now: Date.now(), client, op })
  }

  /** The members as this node sees them, sorted by id. */
  members(): ReadonlyArray<Membership.Entry> {
    return Node.members(this.state)
  }

  /** A decoded message from a peer. */
  receive(from: NodeId, message: PeerMessage): void {
    this.step({ _tag: "MessageReceived", now: Date.now(), from, message })
  }

  stats(): DriverStats {
    return {
      machine: { ...this.state.stats },
      inFlight: this.waiting.size,
      persistsInFlight: this.segments.length,
      stepErrors: this.stepErrors,
    }
  }

  /** The cluster as this node sees it, plus its local counts (DHT.STATUS). */
  status(): ReturnType<typeof Node.statusReport> & { keys: number; hints: number } {
    return {
      ...Node.statusReport(this.state, Date.now()),
      keys: this.store.size(),
      hints: this.store.hintCount(),
    }
  }

  /** Peers the machine currently believes up. */
  believedUp(peer: NodeId): boolean {
    return Node.believedUp(this.state, peer, Date.now())
  }

  /** Stop ticking and firing timers; results still outstanding are never delivered. */
  stop(): void {
    this.stopped = true
    if (this.ticker !== undefined) clearInterval(this.ticker)
    this.ticker = undefined
    for (const timer of this.timers) clearTimeout(timer)
    this.timers.clear()
    this.waiting.clear()
  }

  private tick(): void {
    this.step({ _tag: "TickElapsed", now: Date.now() })
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
    let commands: ReadonlyArray<Command>
    try {
      const [state, out] = Node.step(this.state, event, this.storeView)
      this.state = state
      commands = out
    } catch (e) {
      this.stepErrors++
      const detail = e instanceof Error ? (e.stack ?? e.message) : String(e)
      this.log.error(`step(${event._tag}) threw; the event is dropped: ${detail}`)
      return
    }
    this.execute(commands)
  }

  private execute(commands: ReadonlyArray<Command>): void {
    for (const command of commands) {
      switch (command._tag) {
        case "Persist": {
          const durable = this.store.put(command.key, command.obj)
          if (durable !== undefined) this.holdBehind(durable)
          break
        }
        case "PersistHint": {
          const durable = this.store.putHint(command.owner, command.key, command.obj)
          if (durable !== undefined) this.holdBehind(durable)
          break
        }
        case "DropHint": {
          const durable = this.store.dropHint(command.owner, command.key, command.obj)
          if (durable !== undefined) this.holdBehind(durable)
          break
        }
        case "Drop": {
          const durable = this.store.drop(command.key, command.obj)
          if (durable !== undefined) this.holdBehind(durable)
          break
        }
        case "SetTimer":
          this.setTimer(command.rid, command.kind, command.at)
          break
        default: {
          const last = this.segments[this.segments.length - 1]
          if (last === undefined) this.run(command)
          else last.held.push(command)
        }
      }
    }
  }

  /** Open a segment: commands from now on wait until `durable` (and every earlier one). */
  private holdBehind(durable: Promise<void>): void {
    const segment: Segment = { done: false, held: [] }
    this.segments.push(segment)
    durable.then(
      () => {
        segment.done = true
        this.release()
      },
      (e: unknown) => {
        const detail = e instanceof Error ? e.message : String(e)
        this.log.error(`a write failed to commit: ${detail}`)
        this.stop()
        this.onFatal(`store commit failed: ${detail}`)
      },
    )
  }

  /** Run the held commands of every leading segment whose persist is durable, in order. */
  private release(): void {
    while (this.segments.length > 0 && this.segments[0]!.done && !this.stopped) {
      const segment = this.segments.shift()!
      for (const command of segment.held) this.run(command)
    }
  }

  private run(command: Command): void {
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
      case "Persist":
      case "PersistHint":
      case "DropHint":
      case "Drop":
      case "SetTimer":
        // Issued by `execute`, never held.
        return
    }
  }

  private setTimer(rid: number, kind: TimerKind, at: number): void {
    if (this.stopped) return
    const timer = setTimeout(
      () => {
        this.timers.delete(timer)
        this.step({ _tag: "TimerFired", now: Date.now(), rid, kind })
      },
      Math.max(0, at - Date.now()),
    )
    timer.unref()
    this.timers.add(timer)
  }
}
