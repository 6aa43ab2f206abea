/**
 * The storage node's anti-entropy glue (impl/core/node.ts): the anti-entropy machine
 * (impl/core/anti-entropy.ts) it runs and the Merkle trees it keeps (impl/core/merkle.ts),
 * built from the store a page of keys per step; every write keeps them in step with the store
 * (node-store.ts).
 *
 * Owns: `ae`, `aeTrees` and `aeBuild` (which trees are kept, and the one being built;
 * node-store.ts updates both as the node writes), `stats.aeRepairs`. Must not: choose its
 * partners or which keys a tree holds (node-placement.ts answers both for either routing mode;
 * node-membership.ts and node-chord.ts set the targets), write a repaired object but through
 * `mergeLocal`, or scan more than two pages of the store in one step (a tick's page, and the
 * first page of a build the tick's exchange starts).
 */
import type { Out } from "./ready.ts"
import { absurd } from "effect/Function"
import { position } from "./hash.ts"
import type { NodeId } from "./ids.ts"
import type { StoreView } from "./messages.ts"
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
 * The tree of `range`, once built kept up to date by every write (node-store.ts, O(depth ·
 * fanout) per write). `shape` given (a peer's request): that shape, so that two replicas
 * compare trees of one shape however many keys each holds. Absent (this node starts an
 * exchange): the one it has, unless the keys outgrew it, else one sized to its keys.
 *
 * A tree not kept yet is built from the store a page of `aeBuildBatch` keys per step (its first
 * page at once, the rest on the ticks that follow: `tickAntiEntropy`), one build at a time:
 * "Building" until it is done. A store that fits one page has its tree in this very step.
 */
const treeFor = (
  state: State,
  store: StoreView,
  range: Merkle.Range,
  shape?: Merkle.Shape,
): Merkle.Tree | "Building" | undefined => {
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
  if (state.aeBuild !== undefined) return "Building"
  state.aeBuild =
    shape === undefined
      ? { range, peer, phase: "Count", count: 0, tree: undefined, cursor: undefined }
      : {
          range,
          peer,
          phase: "Hash",
          count: 0,
          tree: Merkle.begin(range, shape),
          cursor: undefined,
        }
  return buildPage(state, store) ?? "Building"
}

/**
 * One page of the build in progress: the next `aeBuildBatch` keys of the store. A tree this node sizes itself is counted first (a pass of
 * pages), then hashed (another); a store that fits one page is counted and hashed at once, as
 * one build. Returns the tree when this page completed it (it is then kept).
 */
const buildPage = (state: State, store: StoreView): Merkle.Tree | undefined => {
  const b = state.aeBuild
  // After a write in this step the store view lags behind it (the driver applies the step's
  // writes once it returns): the next tick takes the page.
  if (b === undefined || state.written.size > 0) return undefined
  const batch = state.config.aeBuildBatch
  const page = store.scan(b.cursor, batch)
  const done = page.length < batch
  const last = done ? undefined : page[page.length - 1]![0]
  const holds = (key: string) => antiEntropyHolds(state, key)(b.peer)
  const held = page.filter(([key]) => holds(key))
  if (b.phase === "Count") {
    if (done && b.cursor === undefined) {
      return keep(state, b.peer, Merkle.build(b.range, Merkle.shapeFor(held.length), held))
    }
    b.count += held.length
    b.cursor = last
    if (done) {
      b.phase = "Hash"
      b.tree = Merkle.begin(b.range, Merkle.shapeFor(b.count))
    }
    return undefined
  }
  Merkle.add(b.tree!, held)
  b.cursor = last
  return done ? keep(state, b.peer, Merkle.finish(b.tree!)) : undefined
}

/** A finished tree is kept (and the build is over). */
const keep = (state: State, peer: NodeId | null, tree: Merkle.Tree): Merkle.Tree => {
  state.aeBuild = undefined
  if (state.aeTrees.size >= TREES_MAX) state.aeTrees.clear()
  state.aeTrees.set(shapeId(tree.range, tree.shape), { tree, peer })
  return tree
}

/** The ring changed: no tree holds the right keys any more (each is rebuilt when next needed). */
export const dropTrees = (state: State): void => {
  state.aeTrees.clear()
  state.aeBuild = undefined
}

/** A tick: the build in progress takes its next page, then the machine may start an exchange. */
export const tickAntiEntropy = (state: State, now: number, store: StoreView, out: Out): void => {
  buildPage(state, store)
  stepAntiEntropy(state, { _tag: "TickElapsed", now }, store, out)
}

export const stepAntiEntropy = (
  state: State,
  event: AntiEntropy.Event,
  store: StoreView,
  out: Out,
): void => {
  const view: AntiEntropy.View = {
    get: store.get,
    tree: (range, shape) => treeFor(state, store, range, shape),
  }
  const [, commands] = AntiEntropy.step(state.ae, event, view)
  for (const c of commands) {
    switch (c._tag) {
      case "Send":
        out.sendAfterPersist({
          _tag: "Send",
          to: c.to,
          message: { _tag: "AntiEntropy", message: c.message, at: event.now },
        })
        break
      case "SetTimer":
        out.setTimer({ _tag: "SetTimer", rid: c.rid, kind: "AntiEntropy", at: c.at })
        break
      case "Repair":
        if (mergeLocal(state, store, c.key, c.obj, out)) state.stats.aeRepairs++
        break
      default:
        absurd(c)
    }
  }
}
