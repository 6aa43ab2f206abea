/**
 * The storage node's anti-entropy glue (impl/core/node.ts): which Merkle trees it keeps and
 * with whom it compares them (impl/core/anti-entropy.ts, impl/core/merkle.ts).
 */
import { position } from "./hash.ts"
import type { NodeId } from "./ids.ts"
import type { Command, StoreView } from "./messages.ts"
import * as AntiEntropy from "./anti-entropy.ts"
import * as Merkle from "./merkle.ts"
import * as Ring from "./ring.ts"
import * as Version from "./version.ts"
import { reconcile, type State } from "./node-state.ts"

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

/**
 * The tree of the keys this node shares with the range's peer, rebuilt from the store when a
 * write happened since it was built (O(keys); an incremental tree is the next step).
 */
const TREE_REBUILD_MS = 5_000

const treeFor = (state: State, store: StoreView, range: Merkle.Range): Merkle.Tree | undefined => {
  const peer = state.ae.targets.find((t) => Merkle.sameRange(t.range, range))?.peer
  // Chord routing: a range is a node's own arc (predecessor, self], kept in sync by that node
  // with its successors; a successor answers for whatever arc it is asked about.
  if (peer === undefined && state.chord === undefined) return undefined
  const id = Merkle.rangeId(range)
  const cached = state.aeTrees.get(id)
  // A tree a few seconds stale only delays a repair (keys written since are compared later or
  // synced anyway); rebuilding on every write would stall a busy node (O(keys) per build).
  if (
    cached !== undefined &&
    (cached.version === state.storeVersion || state.now - cached.builtAt < TREE_REBUILD_MS)
  ) {
    return cached.tree
  }
  const n = state.config.n
  const all = store.scan(undefined, Number.MAX_SAFE_INTEGER)
  const shared =
    state.chord !== undefined
      ? all.filter(([key]) => Merkle.contains(range, key))
      : all.filter(([key]) => {
          const replicas = Ring.preferenceList(state.ring, key, n)
          return (
            replicas.includes(state.config.self) && peer !== undefined && replicas.includes(peer)
          )
        })
  // Arcs asked about come and go with the neighbourhood: keep the cache small.
  if (state.aeTrees.size >= 16) state.aeTrees.clear()
  const tree = Merkle.build(range, Merkle.shapeFor(shared.length), shared)
  state.aeTrees.set(id, { tree, version: state.storeVersion, builtAt: state.now })
  return tree
}

export const stepAntiEntropy = (
  state: State,
  event: AntiEntropy.Event,
  store: StoreView,
  out: Array<Command>,
): void => {
  const view: AntiEntropy.View = { get: store.get, tree: (range) => treeFor(state, store, range) }
  const [, commands] = AntiEntropy.step(state.ae, event, view)
  for (const c of commands) {
    switch (c._tag) {
      case "Send":
        out.push({ _tag: "Send", to: c.to, message: { _tag: "AntiEntropy", message: c.message } })
        break
      case "SetTimer":
        out.push({ _tag: "SetTimer", rid: c.xid, kind: "AntiEntropy", at: c.at })
        break
      case "Repair": {
        const local = store.get(c.key) ?? Version.empty
        const merged = reconcile(state, c.key, Version.sync(local, c.obj))
        if (!Version.equals(merged, local)) {
          state.stats.aeRepairs++
          out.push({ _tag: "Persist", key: c.key, obj: merged })
        }
        break
      }
    }
  }
}
