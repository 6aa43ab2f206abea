/**
 * Quorum accounting for one request, in the manner of riak_kv_get_core: add results, ask whether
 * there are enough, or whether every replica asked has answered.
 *
 * Owns: nothing; a `Tally` is an immutable value (`addOk` returns a new one) that its coordinator
 * holds. Must not: choose the replicas or the quorum size (the coordinator passes both in).
 *
 * An answer may be heard without counting toward the quorum: a sloppy substitute that holds
 * nothing for the key says nothing about it (riak's notfound_ok = false for fallbacks), so
 * counting it could let a read of stale replicas pass as a quorum.
 *
 * Invariant kept: KV-3 (a request succeeds only after `need` distinct replicas answered).
 */
import type { NodeId } from "./ids.ts"

export interface Tally {
  /** How many distinct successes are needed. */
  readonly need: number
  /** Replicas asked, including the coordinator itself when it is one. */
  readonly asked: ReadonlyArray<NodeId>
  /** Distinct replicas whose answer counts toward the quorum. */
  readonly ok: ReadonlyArray<NodeId>
  /** Distinct replicas that answered at all. */
  readonly answered: ReadonlyArray<NodeId>
}

export const make = (need: number, asked: ReadonlyArray<NodeId>): Tally => ({
  need,
  asked,
  ok: [],
  answered: [],
})

/**
 * Record an answer from `node`; it counts toward the quorum unless `counts` is false.
 * Duplicates and answers from nodes never asked are ignored.
 */
export const addOk = (tally: Tally, node: NodeId, counts = true): Tally => {
  if (!tally.asked.includes(node) || tally.answered.includes(node)) return tally
  return {
    ...tally,
    ok: counts ? [...tally.ok, node] : tally.ok,
    answered: [...tally.answered, node],
  }
}

export const enough = (tally: Tally): boolean => tally.ok.length >= tally.need

/** Every replica asked has answered. */
export const complete = (tally: Tally): boolean => tally.answered.length >= tally.asked.length
