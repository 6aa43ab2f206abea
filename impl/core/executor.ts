/**
 * The executor of the machine's durability contract, shared by the simulator (impl/sim/sim.ts)
 * and the real driver (impl/node/driver.ts), so that both hold commands back by the same rule.
 * It takes one step's Ready (impl/core/ready.ts) at a time:
 *
 *  - `send` runs at once, or, while earlier steps' writes are not yet durable, waits behind them
 *    (holding is global, not per step: a later step's Send never overtakes an earlier step's
 *    held one, so a value read from a write that is not yet durable cannot leave the node
 *    before that write is durable either);
 *  - every store write in `persist` (Persist, PersistHint, DropHint, Drop) is issued at once
 *    (the machine's next step reads it);
 *  - `afterPersist` waits until every write in `persist` and every earlier write is durable, so
 *    no acknowledgement leaves before the data it acknowledges (KV-1);
 *  - `timers` are never held: a timer only ever fires an event, which is as safe early as late.
 *
 * The same rule on one list (a Send, Reply or Removed waits behind every store write before
 * it) gives the same releases for `commandsOf(ready)` (send, persist, afterPersist, timers);
 * `executeCommands` runs that form, for tests and tools that build lists.
 *
 * What "durable" means is the caller's: a write returns undefined when it is durable at once (the
 * memory store, a simulator without persist latency), or a Pending that reports once it is
 * (the driver: LMDB's commit promise; the simulator: an event on its own queue, so that runs stay
 * deterministic). A
 * write that fails to become durable stops the executor (nothing held is ever released) and
 * reports through `writeFailed`: the store and the machine now disagree, and the node must stop.
 *
 * Owns: the commands held back and the writes not yet durable. Must not: do I/O of its own or
 * read a clock (it only orders the callbacks it is given), or release a held command before
 * every write ahead of it is durable.
 */
import type { Command } from "./messages.ts"
import type { Outbound, Ready, SetTimer, StoreWrite } from "./ready.ts"

export type { Outbound, Ready, SetTimer, StoreWrite } from "./ready.ts"

export const isStoreWrite = (command: Command): command is StoreWrite =>
  command._tag === "Persist" ||
  command._tag === "PersistHint" ||
  command._tag === "DropHint" ||
  command._tag === "Drop"

/**
 * A write on its way to durability: called once by the executor, it arranges for `onDurable`
 * to be called once the write is durable, or `onFailed` if it never will be. For a promise:
 * `(ok, failed) => promise.then(ok, failed)`; the simulator schedules an event.
 */
export type Pending = (onDurable: () => void, onFailed: (error: unknown) => void) => void

/** undefined: durable already. */
export type Durability = Pending | undefined

export interface Io {
  /** Issue a store write now (visible to the machine at once); say when it is durable. */
  readonly write: (command: StoreWrite) => Durability
  /** Carry out a Send, Reply or Removed: every store write before it is durable. */
  readonly run: (command: Outbound) => void
  readonly setTimer: (command: SetTimer) => void
  /** A write failed to become durable; the executor has stopped. */
  readonly writeFailed: (error: unknown) => void
}

/** The commands released once one write (and every one before it) is durable. */
interface Segment {
  done: boolean
  readonly held: Array<Outbound>
}

export class Executor {
  /** Writes not yet durable, oldest first; the commands after each wait in its segment. */
  private readonly segments: Array<Segment> = []
  private stopped = false
  private releasing = false

  constructor(private readonly io: Io) {}

  /** Store writes issued and not yet durable. */
  get inFlight(): number {
    return this.segments.length
  }

  get isStopped(): boolean {
    return this.stopped
  }

  /** Run one step's Ready under the contract above. */
  execute(ready: Ready): void {
    for (let i = 0; i < ready.send.length; i++) this.outbound(ready.send[i]!)
    for (let i = 0; i < ready.persist.length; i++) this.write(ready.persist[i]!)
    for (let i = 0; i < ready.afterPersist.length; i++) this.outbound(ready.afterPersist[i]!)
    for (let i = 0; i < ready.timers.length; i++) {
      if (this.stopped) return
      this.io.setTimer(ready.timers[i]!)
    }
  }

  /** Run one list of commands, in order: a Send, Reply or Removed waits behind every write before it. */
  executeCommands(commands: ReadonlyArray<Command>): void {
    for (const command of commands) {
      if (isStoreWrite(command)) this.write(command)
      else if (command._tag === "SetTimer") {
        if (!this.stopped) this.io.setTimer(command)
      } else this.outbound(command)
    }
  }

  private write(command: StoreWrite): void {
    if (this.stopped) return
    const durable = this.io.write(command)
    if (durable !== undefined) this.holdBehind(durable)
  }

  /** Run `command` now, or hold it behind the last write not yet durable. */
  private outbound(command: Outbound): void {
    if (this.stopped) return
    const last = this.segments[this.segments.length - 1]
    if (last === undefined) this.io.run(command)
    else last.held.push(command)
  }

  /**
   * Stop: nothing held is released, and durability reported from now on is ignored (a crash,
   * or the node shutting down).
   */
  stop(): void {
    this.stopped = true
    this.segments.length = 0
  }

  /** Open a segment: commands from now on wait until `durable` (and every earlier one). */
  private holdBehind(durable: Pending): void {
    const segment: Segment = { done: false, held: [] }
    this.segments.push(segment)
    durable(
      () => {
        if (this.stopped) return
        segment.done = true
        this.release()
      },
      (error: unknown) => {
        if (this.stopped) return
        this.stop()
        this.io.writeFailed(error)
      },
    )
  }

  /**
   * Run the held commands of every leading segment whose write is durable, in order. A segment
   * stays first until all its commands ran, so that a command a re-entrant step emits meanwhile
   * (a Reply's callback submitting the client's next request) queues behind them.
   */
  private release(): void {
    if (this.releasing) return
    this.releasing = true
    try {
      while (!this.stopped && this.segments.length > 0 && this.segments[0]!.done) {
        const segment = this.segments[0]!
        for (let i = 0; i < segment.held.length; i++) {
          if (this.stopped) return
          this.io.run(segment.held[i]!)
        }
        this.segments.shift()
      }
    } finally {
      this.releasing = false
    }
  }
}
