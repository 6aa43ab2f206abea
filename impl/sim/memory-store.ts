/**
 * An in-memory store of values and hints with the StoreView the machines read, and `apply` for
 * the durable commands they emit (Persist, PersistHint, DropHint). Used by the simulator (where
 * it is the node's "disk": it survives crashes) and by the memory layer of real nodes.
 */
import type { NodeId } from "../core/ids.ts"
import type { Command, Hint, StoreView } from "../core/messages.ts"
import * as Version from "../core/version.ts"

const hintId = (owner: string, key: string): string => `${key}\u0000${owner}`

export class MemoryStore implements StoreView {
  readonly values = new Map<string, Version.Obj>()
  /** Hints by "key\0owner", so that all hints of one key are easy to find. */
  readonly hintMap = new Map<string, Hint>()
  private readonly hintsByKey = new Map<string, Set<string>>()

  get = (key: string): Version.Obj | undefined => this.values.get(key)

  hint = (owner: NodeId, key: string): Version.Obj | undefined =>
    this.hintMap.get(hintId(owner, key))?.obj

  hintsFor = (key: string): ReadonlyArray<Hint> => {
    const ids = this.hintsByKey.get(key)
    return ids === undefined ? [] : [...ids].map((id) => this.hintMap.get(id)!)
  }

  hints = (limit: number): ReadonlyArray<Hint> => {
    const out: Array<Hint> = []
    for (const h of this.hintMap.values()) {
      if (out.length >= limit) break
      out.push(h)
    }
    return out
  }

  scan = (
    after: string | undefined,
    limit: number,
  ): ReadonlyArray<readonly [string, Version.Obj]> => {
    // Sorting per page is O(n log n): fine for the simulator's stores, not for production
    // (impl/node's LMDB store scans its B-tree in order).
    const keys = [...this.values.keys()].filter((k) => after === undefined || k > after).sort()
    return keys.slice(0, limit).map((k) => [k, this.values.get(k)!] as const)
  }

  /** A copy (objects are immutable values, so sharing them is safe). */
  clone(): MemoryStore {
    const copy = new MemoryStore()
    for (const [k, v] of this.values) copy.values.set(k, v)
    for (const h of this.hintMap.values()) {
      copy.apply({ _tag: "PersistHint", owner: h.owner, key: h.key, obj: h.obj })
    }
    return copy
  }

  /** Apply a durable command; returns false for commands that are not about storage. */
  apply(command: Command): boolean {
    switch (command._tag) {
      case "Persist":
        this.values.set(command.key, command.obj)
        return true
      case "Drop":
        // Only if nothing newer arrived since the hand-over began.
        if (Version.equals(this.values.get(command.key) ?? Version.empty, command.obj)) {
          this.values.delete(command.key)
        }
        return true
      case "PersistHint": {
        const id = hintId(command.owner, command.key)
        this.hintMap.set(id, { owner: command.owner, key: command.key, obj: command.obj })
        const ids = this.hintsByKey.get(command.key) ?? new Set<string>()
        this.hintsByKey.set(command.key, ids)
        ids.add(id)
        return true
      }
      case "DropHint": {
        const id = hintId(command.owner, command.key)
        const held = this.hintMap.get(id)
        // A newer hint merged in since the handoff was sent stays for the next round.
        if (held === undefined || !Version.equals(held.obj, command.obj)) return true
        this.hintMap.delete(id)
        const ids = this.hintsByKey.get(command.key)
        ids?.delete(id)
        if (ids?.size === 0) this.hintsByKey.delete(command.key)
        return true
      }
      default:
        return false
    }
  }
}
