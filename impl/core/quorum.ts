/**
 * Quorum accounting for one request, in the manner of riak_kv_get_core: add results, ask whether
 * there are enough, or whether enough has become impossible. Pure data; the coordinator owns it.
 *
 * Invariant kept: KV-3 (a request succeeds only after `need` distinct replicas answered).
 */
import type { NodeId } from "./ids.ts"

export interface Tally {
  /** How many distinct successes are needed. */
  readonly need: number
  /** Replicas asked, including the coordinator itself when it is one. */
  readonly asked: ReadonlyArray<NodeId>
  /** Distinct replicas that answered with success. */
  readonly ok: ReadonlyArray<NodeId>
}

export const make = (need: number, asked: ReadonlyArray<NodeId>): Tally => ({
  need,
  asked,
  ok: [],
})

/** Count a success from `node`; duplicates and answers from nodes never asked are ignored. */
export const addOk = (tally: Tally, node: NodeId): Tally =>
  tally.asked.includes(node) && !tally.ok.includes(node)
    ? { ...tally, ok: [...tally.ok, node] }
    : tally

export const enough = (tally: Tally): boolean => tally.ok.length >= tally.need

/** Every replica asked has answered. */
export const complete = (tally: Tally): boolean => tally.ok.length >= tally.asked.length
