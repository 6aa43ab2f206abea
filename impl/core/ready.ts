/**
 * What one step of the node asks its driver to do, in an explicit shape (like etcd-raft's
 * `Ready`): the durability contract is in which list a command is in, not in where it sits in
 * one list.
 *
 *  - `send`: messages and replies that may leave without waiting for this step's writes (still
 *    FIFO behind everything an earlier step's writes hold back): read requests, forwards,
 *    claims, gossip, anything that neither reports nor carries a write of this step;
 *  - `persist`: the store writes, issued at once (the next step reads them);
 *  - `afterPersist`: messages and replies released only once every write in `persist` (and every
 *    earlier write) is durable: an ack or reply that reports a write, or carries a value this
 *    step wrote (KV-1, DUR-1);
 *  - `timers`: never held (a timer only fires an event, which is as safe early as late).
 *
 * The handlers fill it through the builder `Out`, choosing the list deliberately at each call
 * site. The builder is the Ready itself, so a step allocates the four arrays and nothing else.
 *
 * Owns: nothing but the lists of one step. Must not: reorder a list.
 */
import type { Command } from "./messages.ts"

/** Commands that change the local store. */
export type StoreWrite = Extract<Command, { _tag: "Persist" | "PersistHint" | "DropHint" | "Drop" }>

/** Commands that leave the node. */
export type Outbound = Extract<Command, { _tag: "Send" | "Reply" | "Removed" }>

export type SetTimer = Extract<Command, { _tag: "SetTimer" }>

export interface Ready {
  /** May leave without waiting for this step's writes (FIFO behind earlier held ones). */
  readonly send: ReadonlyArray<Outbound>
  /** Store writes, issued at once. */
  readonly persist: ReadonlyArray<StoreWrite>
  /** Only once every write in `persist` (and every earlier write) is durable. */
  readonly afterPersist: ReadonlyArray<Outbound>
  /** Never held. */
  readonly timers: ReadonlyArray<SetTimer>
}

/** The builder a step's handlers fill: each call names the list it goes to. */
/**
 * The one empty list every fresh `Out` starts with: most steps fill one or two of the four
 * lists, so a list is allocated only on its first push (steps are the per-message path). Never
 * pushed to: `Out` replaces it before pushing.
 */
const NONE: Array<never> = []

export class Out implements Ready {
  send: Array<Outbound> = NONE
  persist: Array<StoreWrite> = NONE
  afterPersist: Array<Outbound> = NONE
  timers: Array<SetTimer> = NONE

  /** A message that neither reports nor carries a write of this step. */
  sendNow(command: Outbound): void {
    if (this.send === NONE) this.send = [command]
    else this.send.push(command)
  }

  /** A store write (only impl/core/node-store.ts and the replica's hint writes call this). */
  write(command: StoreWrite): void {
    if (this.persist === NONE) this.persist = [command]
    else this.persist.push(command)
  }

  /** A message that reports or carries a write: leaves once this step's writes are durable. */
  sendAfterPersist(command: Outbound): void {
    if (this.afterPersist === NONE) this.afterPersist = [command]
    else this.afterPersist.push(command)
  }

  setTimer(command: SetTimer): void {
    if (this.timers === NONE) this.timers = [command]
    else this.timers.push(command)
  }
}

export const empty: Ready = { send: [], persist: [], afterPersist: [], timers: [] }

/**
 * A Ready as one list, in the order that the list rule (a Send after a write waits for it)
 * executes exactly as the Ready rule does: send, persist, afterPersist, timers.
 */
export const commandsOf = (ready: Ready): Array<Command> => [
  ...ready.send,
  ...ready.persist,
  ...ready.afterPersist,
  ...ready.timers,
]
