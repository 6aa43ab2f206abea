/**
 * One storage machine of a 4-node cluster (n0 of n0..n3, 8 tokens each), for the properties
 * that step `Node.step` directly, and keys it does or does not replicate.
 */
import { NodeId } from "../../impl/core/ids.ts"
import * as Node from "../../impl/core/node.ts"
import * as Ring from "../../impl/core/ring.ts"
import type * as Version from "../../impl/core/version.ts"

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
