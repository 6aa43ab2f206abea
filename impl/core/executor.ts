/**
 * The executor of the machine's durability contract, shared by the simulator (impl/sim/sim.ts)
 * and the real driver (impl/node/driver.ts), so that both hold commands back by the same rule:
 *
 *  - commands run in the order the machine emitted them, batch after batch;
 *  - a store write (Persist, PersistHint, DropHint, Drop) is issued at once (the machine's next
 *    step reads it), and every Send, Reply and Removed after it waits until that write and every
 *    write before it are durable, so no acknowledgement leaves before the data it acknowledges
 *    (KV-1);
 *  - holding is global, not per batch: a later event's Send never overtakes an earlier event's
 *    held Send, so a value read from a write that is not yet durable cannot leave the node
 *    before that write is durable either;
 *  - SetTimer is never held: a timer only ever fires an event, which is as safe early as late.
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

/** Commands that change the local store. */
export type StoreWrite = Extract<Command, { _tag: "Persist" | "PersistHint" | "DropHint" | "Drop" }>

/** Commands that leave the node and so wait behind every store write before them. */
export type Outbound = Extract<Command, { _tag: "Send" | "Reply" | "Removed" }>

export type SetTimer = Extract<Command, { _tag: "SetTimer" }>

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

  /** Run one step's commands, in order, under the contract above. */
  execute(commands: ReadonlyArray<Command>): void {
    for (const command of commands) {
      if (this.stopped) return
      if (isStoreWrite(command)) {
        const durable = this.io.write(command)
        if (durable !== undefined) this.holdBehind(durable)
      } else if (command._tag === "SetTimer") {
        this.io.setTimer(command)
      } else {
        const last = this.segments[this.segments.length - 1]
        if (last === undefined) this.io.run(command)
        else last.held.push(command)
      }
    }
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
