/**
 * Reference model of the causal key-value store for a sequential client: each key holds the
 * siblings (write id → value, null for a delete) that no later write has superseded. A read
 * returns them and its context is exactly their ids; a write with a context supersedes those
 * ids and adds itself; a blind write (plain SET) supersedes everything present.
 * properties/causal-model.test.ts runs the real cluster against it (CAUSAL-9).
 */
export type WriteId = number

export class CausalKvModel {
  private readonly keys = new Map<string, Map<WriteId, string | null>>()
  private nextId = 0

  siblings(key: string): ReadonlyMap<WriteId, string | null> {
    return this.keys.get(key) ?? new Map()
  }

  /** The context a read of `key` returns now: the ids of its siblings. */
  read(key: string): ReadonlySet<WriteId> {
    return new Set(this.siblings(key).keys())
  }

  write(key: string, value: string | null, context: ReadonlySet<WriteId> | "blind"): WriteId {
    const superseded = context === "blind" ? this.read(key) : context
    const next = new Map([...this.siblings(key)].filter(([id]) => !superseded.has(id)))
    const id = this.nextId++
    next.set(id, value)
    this.keys.set(key, next)
    return id
  }
}
