/**
 * The consistent-hash ring: virtual nodes (tokens), weights and preference lists.
 *
 * Each physical node owns `round(tokensPerNode * weight)` tokens at `position(nodeId + "#" + i)`.
 * A key at position p is owned by the first token clockwise at or after p (wrapping past 2^52 to
 * the start); its preference list is the first N *distinct physical* nodes met walking clockwise
 * from there (Dynamo, DeCandia et al. SOSP 2007, section 4.2-4.3).
 *
 * Deliberately not here: liveness. Routing around down nodes (sloppy quorum) is the
 * coordinator's business; the ring only answers "who should hold this key".
 *
 * Owns: a ring, an immutable value built once per membership view (sorted tokens and their
 * nodes). Must not: consult liveness or membership state (the caller builds a ring from a view).
 *
 * Invariants kept: RING-2 (preference lists equal the naive reference ring's), RING-3 (N distinct
 * nodes whenever N <= node count), RING-4 (ownership fractions sum to one).
 */
import { position, RING_SIZE } from "./hash.ts"
import type { NodeId } from "./ids.ts"

export interface Member {
  /** Stable identity of the physical node. */
  readonly id: NodeId
  /** Relative capacity; a weight-2 node gets twice the tokens. Default 1. */
  readonly weight: number
}

export interface Ring {
  /** Token positions, ascending, unique. */
  readonly tokens: Float64Array
  /** owners[i] = index into `nodes` of the node that holds tokens[i]. */
  readonly owners: Uint32Array
  /** Physical nodes, sorted by id. */
  readonly nodes: ReadonlyArray<NodeId>
  readonly tokensPerNode: number
}

/** Default virtual nodes per unit of weight; see docs/performance.md for the balance it gives. */
export const DEFAULT_TOKENS_PER_NODE = 256

/** The token positions of one node: a pure function of its id, weight and the token count. */
export const tokensOf = (member: Member, tokensPerNode: number): ReadonlyArray<number> => {
  const count = Math.max(1, Math.round(tokensPerNode * member.weight))
  const out: Array<number> = []
  for (let i = 0; i < count; i++) out.push(position(`${member.id}#${i}`))
  return out
}

/** Build a ring. Token collisions (astronomically rare at 2^52) go to the smaller node id. */
export const make = (
  members: ReadonlyArray<Member>,
  tokensPerNode: number = DEFAULT_TOKENS_PER_NODE,
): Ring => {
  const nodes = [...new Set(members.map((m) => m.id))].sort()
  const index = new Map(nodes.map((id, i) => [id, i]))
  const pairs: Array<[number, number]> = []
  for (const member of members) {
    const owner = index.get(member.id)!
    for (const token of tokensOf(member, tokensPerNode)) pairs.push([token, owner])
  }
  pairs.sort((a, b) => a[0] - b[0] || a[1] - b[1])
  const tokens: Array<number> = []
  const owners: Array<number> = []
  for (const [token, owner] of pairs) {
    if (tokens.length > 0 && tokens[tokens.length - 1] === token) continue
    tokens.push(token)
    owners.push(owner)
  }
  return {
    tokens: Float64Array.from(tokens),
    owners: Uint32Array.from(owners),
    nodes,
    tokensPerNode,
  }
}

/** Index of the first token at or after `pos`, wrapping to 0. Ring must be non-empty. */
export const successorIndex = (ring: Ring, pos: number): number => {
  const tokens = ring.tokens
  let lo = 0
  let hi = tokens.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if (tokens[mid]! < pos) lo = mid + 1
    else hi = mid
  }
  return lo === tokens.length ? 0 : lo
}

/**
 * The first `n` distinct physical nodes clockwise from position `pos` (fewer if the ring has
 * fewer nodes). The walk is bounded by the token count.
 */
export const preferenceListAt = (ring: Ring, pos: number, n: number): ReadonlyArray<NodeId> => {
  const out: Array<NodeId> = []
  const count = ring.tokens.length
  if (count === 0) return out
  const want = Math.min(n, ring.nodes.length)
  let i = successorIndex(ring, pos)
  for (let steps = 0; steps < count && out.length < want; steps++) {
    const node = ring.nodes[ring.owners[i]!]!
    if (!out.includes(node)) out.push(node)
    i = i + 1 === count ? 0 : i + 1
  }
  return out
}

/** Preference list of a key (a byte string). */
export const preferenceList = (ring: Ring, key: string, n: number): ReadonlyArray<NodeId> =>
  preferenceListAt(ring, position(key), n)

/**
 * Fraction of the ring each node owns as primary: the arc (previous token, token] belongs to the
 * token's node. Sums to 1 for a non-empty ring.
 */
export const ownership = (ring: Ring): ReadonlyMap<NodeId, number> => {
  const out = new Map<NodeId, number>(ring.nodes.map((id) => [id, 0]))
  const count = ring.tokens.length
  for (let i = 0; i < count; i++) {
    const token = ring.tokens[i]!
    const previous = i === 0 ? ring.tokens[count - 1]! - RING_SIZE : ring.tokens[i - 1]!
    const node = ring.nodes[ring.owners[i]!]!
    out.set(node, out.get(node)! + (count === 1 ? RING_SIZE : token - previous) / RING_SIZE)
  }
  return out
}

/**
 * Fraction of the ring each node replicates (holds as any of the N preference-list members).
 * Each arc (previous token, token] has one preference list; every node on it gets the arc.
 */
export const replicaOwnership = (ring: Ring, n: number): ReadonlyMap<NodeId, number> => {
  const out = new Map<NodeId, number>(ring.nodes.map((id) => [id, 0]))
  const count = ring.tokens.length
  for (let i = 0; i < count; i++) {
    const token = ring.tokens[i]!
    const previous = i === 0 ? ring.tokens[count - 1]! - RING_SIZE : ring.tokens[i - 1]!
    const share = (count === 1 ? RING_SIZE : token - previous) / RING_SIZE
    for (const node of preferenceListAt(ring, token, n)) out.set(node, out.get(node)! + share)
  }
  return out
}
