/**
 * The omniscient Chord reference: given every live node's ring position, who the true successor
 * of a position is, who owns a key, and which N nodes hold its replicas.
 *
 * A sorted array of positions and a scan. `successorScan` is the definition (walk the array,
 * first position ≥ p, else wrap to the smallest); `successorIndex` is the same answer by binary
 * search, for simulators that ask it millions of times; properties/chord.test.ts checks that the
 * two agree (the model's own laws). Nothing here knows about fingers, messages or time.
 */
import { position, RING_SIZE } from "../impl/core/hash.ts"

export interface ChordModel {
  /** Live node positions, ascending, distinct. */
  readonly positions: ReadonlyArray<number>
}

/** Build the model from live positions (order and duplicates do not matter). */
export const make = (positions: Iterable<number>): ChordModel => {
  const sorted = [...new Set(positions)].sort((a, b) => a - b)
  for (const p of sorted) {
    if (!(Number.isInteger(p) && p >= 0 && p < RING_SIZE)) throw new Error(`bad position ${p}`)
  }
  return { positions: sorted }
}

/** The definition: index of the first node at or after `pos`, wrapping to 0. Linear. */
export const successorScan = (model: ChordModel, pos: number): number => {
  for (let i = 0; i < model.positions.length; i++) if (model.positions[i]! >= pos) return i
  return 0
}

/** Same answer as successorScan, by binary search. */
export const successorIndex = (model: ChordModel, pos: number): number => {
  const ps = model.positions
  let lo = 0
  let hi = ps.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if (ps[mid]! < pos) lo = mid + 1
    else hi = mid
  }
  return lo === ps.length ? 0 : lo
}

/** Position of the first node at or after `pos` (the owner of ring position `pos`). */
export const successorOf = (model: ChordModel, pos: number): number => {
  if (model.positions.length === 0) throw new Error("empty ring")
  return model.positions[successorIndex(model, pos)]!
}

/** The node that follows the node at `nodePos` (its true successor; itself when alone). */
export const nextOf = (model: ChordModel, nodePos: number): number =>
  successorOf(model, (nodePos + 1) % RING_SIZE)

/** The node that precedes the node at `nodePos` (its true predecessor; itself when alone). */
export const previousOf = (model: ChordModel, nodePos: number): number => {
  const ps = model.positions
  const i = successorIndex(model, nodePos)
  return ps[(i - 1 + ps.length) % ps.length]!
}

/** The owner of a key (its bytes, as hash.position takes them). */
export const ownerOf = (model: ChordModel, keyBytes: string): number =>
  successorOf(model, position(keyBytes))

/** The first `n` distinct nodes at or after `pos`: the replica set with replication n. */
export const successorsOf = (model: ChordModel, pos: number, n: number): Array<number> => {
  const ps = model.positions
  const out: Array<number> = []
  const start = successorIndex(model, pos)
  for (let i = 0; i < Math.min(n, ps.length); i++) out.push(ps[(start + i) % ps.length]!)
  return out
}
