/**
 * Placement of one key's copies on the ring: the preferred replicas, the sloppy substitutes
 * that stand in for replicas believed down (AP), and who a read asks.
 *
 * Owns nothing: pure functions of the node's state (rings, failure detector, configuration).
 * Must not: send, persist, or decide a request's outcome.
 */
import * as Ring from "./ring.ts"
import type * as Version from "./version.ts"
import type { Command } from "./messages.ts"
import type { NodeId } from "./ids.ts"
import {
  believedUp,
  fail,
  type Origin,
  type Placement,
  type State,
  type Target,
} from "./node-state.ts"

/**
 * The nodes that receive a key's copies. CP: the N preferred replicas. AP (sloppy quorum,
 * Dynamo section 4.6): each preferred replica believed down is replaced by the next healthy node
 * further clockwise, which holds the copy as a hint for it.
 */
export const targetsOf = (
  state: State,
  key: string,
  now: number,
  placement: Placement = undefined,
): ReadonlyArray<Target> => {
  if (placement !== undefined) return placement.map((node) => ({ node, hintFor: undefined }))
  const n = state.config.n
  const walk = Ring.preferenceList(state.ring, key, state.ring.nodes.length)
  const preferred = walk.slice(0, n)
  if (state.config.mode === "cp") return preferred.map((node) => ({ node, hintFor: undefined }))
  const spares = walk.slice(n).filter((node) => believedUp(state, node, now))
  return preferred.map((node) =>
    believedUp(state, node, now) || spares.length === 0
      ? { node, hintFor: undefined }
      : { node: spares.shift()!, hintFor: node },
  )
}

/**
 * Who a read asks: every preferred replica (believed up or not: belief lags reality, and a
 * replica that answers is the best witness) plus, in AP, the substitutes that may hold hints.
 * `waitFor`: the ones believed up.
 */
export const readSet = (state: State, key: string, now: number, placement: Placement) => {
  const targets = targetsOf(state, key, now, placement)
  const preferred = placement ?? Ring.preferenceList(state.ring, key, state.config.n)
  const substitutes = new Set(
    targets.filter((t) => t.hintFor !== undefined).map((t) => t.node),
  ) as ReadonlySet<NodeId>
  const asked = [...preferred, ...substitutes]
  const waitFor = asked.filter((node) => believedUp(state, node, now))
  return { asked, substitutes, waitFor }
}

/** CP mode: can this node see a majority of the cluster (itself included)? */
export const seesMajority = (state: State, now: number): boolean => {
  const all = state.peers.length + 1
  const up = 1 + state.peers.filter((p) => believedUp(state, p, now)).length
  return up * 2 > all
}

/**
 * A key with fewer known replicas than the quorum asks for (a Chord ring still forming, whose
 * lookup returned a short successor list) fails the request: the quorum is never lowered.
 */
export const tooFewReplicas = (
  state: State,
  origin: Origin,
  which: "R" | "W",
  need: number,
  have: number,
  out: Array<Command>,
): boolean => {
  if (have >= need) return false
  fail(
    state,
    origin,
    "QuorumNotMet",
    `quorum not met: ${have} replica(s) known for this key, fewer than ${which}=${need} ` +
      "(the ring is still forming?); retry",
    out,
  )
  return true
}

/** A substitute that holds nothing for the key knows nothing about it: not a quorum member. */
export const counts = (substitutes: ReadonlySet<NodeId>, from: NodeId, obj: Version.Obj): boolean =>
  !substitutes.has(from) || obj.entries.length > 0
