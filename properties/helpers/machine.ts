/**
 * One storage machine of a 4-node cluster (n0 of n0..n3, 8 tokens each), for the properties
 * that step `Node.step` directly, and keys it does or does not replicate.
 */
import fc from "fast-check"
import { NodeId } from "../../impl/core/ids.ts"
import type { Ready } from "../../impl/core/ready.ts"
import type { MemoryStore } from "../../impl/sim/memory-store.ts"
import type { Event } from "../../impl/core/messages.ts"
import * as Node from "../../impl/core/node.ts"
import * as Ring from "../../impl/core/ring.ts"
import * as Version from "../../impl/core/version.ts"

export const ids = ["n0", "n1", "n2", "n3"].map(NodeId)
export const self = ids[0]!
export const config: Node.Config = {
  ...Node.defaults,
  self,
  members: ids.map((id) => ({ id, weight: 1 })),
  tokensPerNode: 8,
}
export const ring = Ring.make(config.members, config.tokensPerNode)

/** Up to `count` keys `${prefix}${i}` that `self` replicates (or, `replicated` false, does not). */
export const keysWhere = (prefix: string, replicated: boolean, count: number): Array<string> =>
  Array.from({ length: 500 }, (_, i) => `${prefix}${i}`)
    .filter((k) => Ring.preferenceList(ring, k, 3).includes(self) === replicated)
    .slice(0, count)

/**
 * A purged object as the models expect it: every entry's values dropped, its clock kept. Stated
 * here rather than imported from node-replica.ts, so that a mutant of the implementation's
 * `purged` cannot change the expectation too.
 */
export const purged = (obj: Version.Obj): Version.Obj => ({
  entries: obj.entries.map((e) => ({ actor: e.actor, counter: e.counter, values: [] })),
})

/** A write that lands on the node from a peer: a point of a history, or a delete of what it holds. */
export type Land = { _tag: "Land"; key: number; point: number; tomb: boolean }

export const landArb = (keyCount: number): fc.Arbitrary<Land> =>
  fc.record({
    _tag: fc.constant("Land" as const),
    key: fc.nat(keyCount - 1),
    point: fc.nat(20),
    tomb: fc.boolean(),
  })

/** A delete of `obj` by n2 at wall-clock time `at` ms (1: long past any grace). */
export const tombstoneOf = (obj: Version.Obj, at = 1): Version.Obj =>
  Version.update(obj, Version.context(obj), { value: null, ts: at * 1024 }, "n2")

/**
 * The event of a landing write (a read repair from n1: how it merges is KV-10's business):
 * `held` is what the node holds of the key, `point` the history's object, `deletedAt` when a
 * delete of what is held happened.
 */
export const landing = (
  m: Land,
  key: string,
  held: Version.Obj,
  point: Version.Obj,
  now: number,
  deletedAt: number,
): Event => ({
  _tag: "MessageReceived",
  now,
  from: ids[1]!,
  message: { _tag: "Repair", key, obj: m.tomb ? tombstoneOf(held, deletedAt) : point, at: now },
})

// ---------------------------------------------------------------------------------------------
// Stepping

/** Step the machine, then apply its store writes as a driver does (the next step reads them). */
export const stepAndApply = (state: Node.State, event: Event, store: MemoryStore): Ready => {
  const ready = Node.step(state, event, store)[1]
  for (const c of ready.persist) store.apply(c)
  return ready
}

/** A heartbeat from `from` (liveness for the failure detector; not a tick). */
export const heartbeat = (from: NodeId, now: number): Event => ({
  _tag: "MessageReceived",
  now,
  from,
  message: { _tag: "Heartbeat" },
})
