/**
 * The storage node's anti-entropy glue (impl/core/node.ts): the anti-entropy machine
 * (impl/core/anti-entropy.ts) it runs and the Merkle trees it keeps (impl/core/merkle.ts);
 * every write keeps them in step with the store (node-store.ts).
 *
 * Owns: `ae`, `aeTrees` (which trees are kept; node-store.ts updates them as the node writes),
 * `stats.aeRepairs`. Must not: choose its partners or which keys a tree holds
 * (node-placement.ts answers both for either routing mode; node-membership.ts and
 * node-chord.ts set the targets), or write a repaired object but through `mergeLocal`.
 */
import { absurd } from "effect/Function"
import { position } from "./hash.ts"
import type { NodeId } from "./ids.ts"
import type { Command, StoreView } from "./messages.ts"
import * as AntiEntropy from "./anti-entropy.ts"
import * as Merkle from "./merkle.ts"
import type { Config } from "./node-config.ts"
import type { State } from "./node-state.ts"
import { mergeLocal } from "./node-store.ts"
import { antiEntropyHolds, antiEntropyPeerOf } from "./node-placement.ts"

/** The anti-entropy machine a node starts with: no targets until its ring or arc is known. */
export const initAntiEntropy = (config: Config, now: number): AntiEntropy.State =>
  AntiEntropy.init(
    {
      self: config.self,
      intervalMs: config.aeIntervalMs,
      exchangeTimeoutMs: config.requestTimeoutMs * 2,
      maxKeys: config.aeMaxKeys,
      ratePerSec: config.aeRatePerSec,
      burst: Math.max(config.aeMaxKeys, config.aeRatePerSec),
    },
    [],
    now,
  )

// ---------------------------------------------------------------------------------------------
// Anti-entropy (Dynamo section 4.7): Merkle exchanges with every replica peer

/**
 * The keys two nodes both replicate form one Merkle tree per pair. Its range is the whole ring
 * (start = end) starting at a position derived from the pair, so that both sides name it alike.
 */
export const pairRange = (a: NodeId, b: NodeId): Merkle.Range => {
  const start = position(a < b ? `${a}\u0000${b}` : `${b}\u0000${a}`)
  return { start, end: start }
}

/** Does the kept tree hold `key` (for checks of the trees against the store)? */
export const keeps = (state: State, peer: NodeId | null, key: string): boolean =>
  antiEntropyHolds(state, key)(peer)

/** Trees kept at most (arcs and shapes asked about come and go). */
const TREES_MAX = 16

const shapeId = (range: Merkle.Range, shape: Merkle.Shape) =>
  `${Merkle.rangeId(range)}/${shape.fanout}^${shape.depth}`

/**
 * The tree of `range`: built from the store once (O(keys)), then kept up to date by every
 * write (node-store.ts, O(depth · fanout) per write). `shape` given (a peer's request): that shape, so
 * that two replicas compare trees of one shape however many keys each holds. Absent (this node
 * starts an exchange): the one it has, unless the keys outgrew it, else one sized to its keys.
 */
const treeFor = (
  state: State,
  store: StoreView,
  range: Merkle.Range,
  shape?: Merkle.Shape,
): Merkle.Tree | undefined => {
  const peer = antiEntropyPeerOf(state, range)
  if (peer === undefined) return undefined
  if (shape !== undefined) {
    const cached = state.aeTrees.get(shapeId(range, shape))
    if (cached !== undefined) return cached.tree
  } else {
    const prefix = `${Merkle.rangeId(range)}/`
    for (const [id, cached] of state.aeTrees) {
      const capacity = cached.tree.shape.fanout ** cached.tree.shape.depth * 32
      if (id.startsWith(prefix) && cached.tree.size <= 4 * capacity) return cached.tree
    }
  }
  const entries = store
    .scan(undefined, Number.MAX_SAFE_INTEGER)
    .filter(([key]) => antiEntropyHolds(state, key)(peer))
  const chosen = shape ?? Merkle.shapeFor(entries.length)
  if (state.aeTrees.size >= TREES_MAX) state.aeTrees.clear()
  const tree = Merkle.build(range, chosen, entries)
  state.aeTrees.set(shapeId(range, chosen), { tree, peer })
  return tree
}

export const stepAntiEntropy = (
  state: State,
  event: AntiEntropy.Event,
  store: StoreView,
  out: Array<Command>,
): void => {
  const view: AntiEntropy.View = {
    get: store.get,
    tree: (range, shape) => treeFor(state, store, range, shape),
  }
  const [, commands] = AntiEntropy.step(state.ae, event, view)
  for (const c of commands) {
    switch (c._tag) {
      case "Send":
        out.push({
          _tag: "Send",
          to: c.to,
          message: { _tag: "AntiEntropy", message: c.message, at: event.now },
        })
        break
      case "SetTimer":
        out.push({ _tag: "SetTimer", rid: c.rid, kind: "AntiEntropy", at: c.at })
        break
      case "Repair":
        if (mergeLocal(state, store, c.key, c.obj, out)) state.stats.aeRepairs++
        break
      default:
        absurd(c)
    }
  }
}
