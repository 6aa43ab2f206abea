/**
 * Merkle trees over one key range, and the diff protocol that compares two of them over the
 * network (Dynamo, DeCandia et al. SOSP 2007, section 4.7 "Handling permanent failures: replica
 * synchronization"; the leaf-bucket layout follows riak_core's hashtree and Cassandra's
 * MerkleTree: a fixed tree over ring positions, not over the keys themselves).
 *
 * Shape. A tree covers the range (start, end] of ring positions (start === end: the whole
 * ring), exactly the token ranges of impl/core/ring.ts. The range is cut into
 * `fanout^depth` leaf buckets of equal width by the key's ring position, so both replicas put
 * a key in the same bucket without agreeing on anything but (range, shape).
 *  - key digest = two MurmurHash3_x86_32 (seeds KEY_SEED_HI, KEY_SEED_LO) of a canonical,
 *    injective serialisation of (key, object) — `serialise` below;
 *  - leaf       = XOR of the key digests in the bucket. XOR is commutative and associative, so
 *    the leaf does not depend on insertion order, and self-inverse, so a key is removed by
 *    XOR-ing its old digest again: `update` is O(depth · fanout) instead of a leaf rescan;
 *  - internal   = the two MurmurHash3_x86_32 (same seeds) of the little-endian bytes of its
 *    children's digests, in child order (hi word, lo word per child).
 * An object with no entries contributes nothing: it is treated exactly like an absent key.
 *
 * Collisions. Digests are 64 bits (two 32-bit halves with different seeds). For non-adversarial
 * data the chance that two different contents give the same leaf, node or key digest is about
 * 2^-64 per comparison; at 10^12 comparisons that is ~5·10^-8. A collision costs little: the
 * tree only decides *what to compare*, never *which value wins* (that is `Version.sync`), so a
 * collision can only hide one difference until the key is written again or read (read repair).
 * MurmurHash3 is not cryptographic and its seeds are public: a client that can choose values
 * could craft a collision and hide a divergence from anti-entropy (not corrupt data).
 *
 * The diff protocol is data, not a conversation held in memory: the initiator sends
 * `TreeLevelRequest{level, indices}`, the peer answers `TreeLevelResponse{hashes}`, the
 * initiator compares and descends only into the children of nodes that differ, and at the
 * leaves sends `KeysRequest{buckets, digests}`; the peer answers `KeysResponse{entries}` with
 * its objects for the keys whose digests differ. Every function below is pure, so a machine
 * (impl/core/anti-entropy.ts) can run the protocol over a network that drops, duplicates and
 * reorders. At most `limit` differing nodes are followed per level and at most `limit` keys are
 * returned, always the first in (bucket, key) order — the order the convergence bound of AE-3
 * relies on.
 *
 * Mutation: `update` changes the tree in place and returns it (the write path is hot, the same
 * choice as impl/core/node.ts); a tree belongs to one owner, `clone` takes a snapshot.
 *
 * Deliberately not here: which peer or range to compare, timeouts, budgets (anti-entropy.ts);
 * persisting trees (a tree is rebuilt from the store at start, `build`); tombstone purge.
 *
 * Invariants kept: AE-1 (equal contents give equal roots; the diff finds exactly the differing
 * keys), AE-2 (the diff descends only into differing subtrees), AE-4 (incremental update equals
 * rebuild), AE-5 (a key exchange returns at most `limit` keys, the first differing ones).
 *
 * Why trees and the diff protocol are one file of over 500 lines: the protocol's messages are
 * addressed in the tree's own coordinates (level, node index, leaf bucket, key digest), and
 * AE-1, AE-2 and AE-5 are properties of the two together, which properties/merkle.test.ts
 * checks through this one module; about 60 of its lines are this comment.
 * Owns: trees (level hashes and per-bucket key digests; `update` and `add` change the tree they
 * are given) and the diff protocol's message shapes. Must not: read the store, choose peers or
 * ranges (anti-entropy.ts and node-ae.ts do), or let a tree drift from the store unnoticed
 * (`update` throws when the old object is not what the tree holds).
 *
 */
import {
  murmur3Final,
  murmur3Round,
  murmur3Scramble,
  murmur3 as murmur3Str,
  position,
  RING_SIZE,
} from "./hash.ts"
import * as Version from "./version.ts"
import type { Obj } from "./version.ts"

// ---------------------------------------------------------------------------------------------
// Ranges and shapes

/** The arc (start, end] of ring positions; start === end is the whole ring. */
export interface Range {
  readonly start: number
  readonly end: number
}

export interface Shape {
  /** Children per internal node, >= 2. */
  readonly fanout: number
  /** Levels below the root; the leaves are level `depth`, fanout^depth of them. */
  readonly depth: number
}

/**
 * 16^3 = 4096 leaves: a range of 10^5 keys has ~24 keys per leaf, so one differing leaf costs
 * ~24 digests on the wire; a tree is 4369 nodes (35 KB), and a diff takes 4 round trips.
 */
export const DEFAULT_SHAPE: Shape = { fanout: 16, depth: 3 }

/** Most leaves a tree may have: bounds memory (16 bytes per leaf and more per internal node). */
export const MAX_LEAVES = 2 ** 20

/** The shallowest tree of `fanout` whose leaves hold about `keysPerLeaf` of `expectedKeys`. */
export const shapeFor = (expectedKeys: number, keysPerLeaf = 32, fanout = 16): Shape => {
  let depth = 0
  while (fanout ** depth * keysPerLeaf < expectedKeys && fanout ** (depth + 1) <= MAX_LEAVES) {
    depth++
  }
  return { fanout, depth }
}

const mod = (x: number): number => ((x % RING_SIZE) + RING_SIZE) % RING_SIZE

/** Number of positions in the range. */
export const span = (range: Range): number =>
  range.start === range.end ? RING_SIZE : mod(range.end - range.start)

/** 0 for the first position after `start`; in-range positions are below `span(range)`. */
const offset = (range: Range, pos: number): number => mod(pos - range.start - 1)

export const containsPosition = (range: Range, pos: number): boolean =>
  offset(range, pos) < span(range)

export const contains = (range: Range, key: string): boolean =>
  containsPosition(range, position(key))

export const sameRange = (a: Range, b: Range): boolean => a.start === b.start && a.end === b.end

export const sameShape = (a: Shape, b: Shape): boolean =>
  a.fanout === b.fanout && a.depth === b.depth

/** A stable string id for a range, for callers that keep one tree per range in a Map. */
export const rangeId = (range: Range): string => `${range.start}:${range.end}`

const isPosition = (x: unknown): x is number =>
  typeof x === "number" && Number.isInteger(x) && x >= 0 && x < RING_SIZE

export const validRange = (range: Range): boolean =>
  isPosition(range.start) && isPosition(range.end)

export const validShape = (shape: Shape): boolean =>
  Number.isInteger(shape.fanout) &&
  Number.isInteger(shape.depth) &&
  shape.fanout >= 2 &&
  shape.depth >= 0 &&
  shape.fanout ** shape.depth <= MAX_LEAVES

// ---------------------------------------------------------------------------------------------
// Digests

/** 64 bits as two unsigned 32-bit words. */
export type Digest = readonly [hi: number, lo: number]

/** Seeds of the two halves; part of the format (changing them changes every digest). */
export const KEY_SEED_HI = 0x41450001
export const KEY_SEED_LO = 0x41450002

export const sameDigest = (a: Digest | undefined, b: Digest | undefined): boolean =>
  a === b || (a !== undefined && b !== undefined && a[0] === b[0] && a[1] === b[1])

/**
 * A string as bytes, injectively: byte strings (every char <= 0xff, the contract for keys and
 * values) as they are, tagged "b"; anything else as its UTF-16 code units, two bytes each,
 * tagged "w" (actor ids are not promised to be bytes). Length-prefixed, so concatenation stays
 * unambiguous.
 */
const field = (s: string): string => {
  let wide = false
  for (let i = 0; i < s.length && !wide; i++) wide = s.charCodeAt(i) > 0xff
  if (!wide) return `b${s.length}:${s}`
  let bytes = ""
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    bytes += String.fromCharCode(c >>> 8, c & 0xff)
  }
  return `w${bytes.length}:${bytes}`
}

/**
 * The canonical bytes of (key, object). Objects are canonical already (entries sorted by actor,
 * values newest first), so equal objects (`Version.equals`) serialise equally, and the encoding
 * is injective (every part is tagged and length-prefixed), so different objects never do.
 */
export const serialise = (key: string, obj: Obj): string => {
  let out = `${field(key)}e${obj.entries.length};`
  for (const e of obj.entries) {
    out += `${field(e.actor)}c${e.counter};v${e.values.length};`
    for (const s of e.values) {
      out += `${s.value === null ? "n" : field(s.value)}t${s.ts}${s.exp === undefined ? "" : `e${s.exp}`}`
      out += s.counter === undefined ? ";" : `k${field(JSON.stringify(s.counter))};`
    }
  }
  return out
}

const isAbsent = (obj: Obj | undefined | null): boolean =>
  obj === undefined || obj === null || obj.entries.length === 0

/** Digest of one key's object; undefined for an absent or empty object (no contribution). */
export const keyDigest = (key: string, obj: Obj | undefined | null): Digest | undefined => {
  if (isAbsent(obj)) return undefined
  const bytes = serialise(key, obj!)
  return [murmur3Str(bytes, KEY_SEED_HI), murmur3Str(bytes, KEY_SEED_LO)]
}

// MurmurHash3_x86_32 (Appleby). The string form is hash.ts's; the word form hashes the
// little-endian bytes of 32-bit words without building a string (internal nodes, hot path).

/** MurmurHash3_x86_32 of the little-endian bytes of words[from .. from+count). */
export const murmur3Words = (
  words: Uint32Array,
  from: number,
  count: number,
  seed: number,
): number => {
  let h = seed >>> 0
  for (let i = from; i < from + count; i++) h = murmur3Round(h, murmur3Scramble(words[i]!))
  return murmur3Final(h, count * 4)
}

// ---------------------------------------------------------------------------------------------
// Trees

export interface Tree {
  readonly range: Range
  readonly shape: Shape
  /** fanout^depth. */
  readonly leafCount: number
  /** Ring positions per leaf: ceil(span / leafCount); the last leaves may be narrower or empty. */
  readonly leafWidth: number
  /** levels[l] holds fanout^l nodes, two words each: hi at 2i, lo at 2i + 1. Root: levels[0]. */
  readonly levels: ReadonlyArray<Uint32Array>
  /** Non-empty leaf buckets: key -> digest of its current object. Answers KeysRequest. */
  readonly buckets: Map<number, Map<string, Digest>>
  /** Number of keys with a (non-empty) object in the tree. */
  size: number
}

/** An empty tree. Throws on an invalid range or shape (a caller bug, not input). */
export const make = (range: Range, shape: Shape = DEFAULT_SHAPE): Tree => {
  const tree = allocate(range, shape)
  hashInternal(tree)
  return tree
}

/** Zeroed levels: leaves are right (XOR of nothing), internal nodes still to be hashed. */
const allocate = (range: Range, shape: Shape): Tree => {
  if (!validRange(range)) throw new Error(`merkle: invalid range ${rangeId(range)}`)
  if (!validShape(shape)) throw new Error(`merkle: invalid shape ${JSON.stringify(shape)}`)
  const leafCount = shape.fanout ** shape.depth
  const levels: Array<Uint32Array> = []
  for (let l = 0; l <= shape.depth; l++) levels.push(new Uint32Array(2 * shape.fanout ** l))
  return {
    range,
    shape,
    leafCount,
    leafWidth: Math.ceil(span(range) / leafCount),
    levels,
    buckets: new Map(),
    size: 0,
  }
}

/** Hash every internal node bottom-up: an empty subtree hashes its zero children, not to 0. */
const hashInternal = (tree: Tree): void => {
  for (let l = tree.shape.depth - 1; l >= 0; l--) {
    for (let i = 0; i < tree.shape.fanout ** l; i++) rehash(tree, l, i)
  }
}

/** Leaf bucket of an in-range position: exact integer division (all values below 2^53). */
const bucketAt = (tree: Tree, pos: number): number => {
  const off = offset(tree.range, pos)
  let q = Math.floor(off / tree.leafWidth)
  // Float division of integers can round up across an integer boundary; correct it.
  if (q * tree.leafWidth > off) q--
  else if ((q + 1) * tree.leafWidth <= off) q++
  return q
}

/** The leaf bucket of `key`, or undefined when the key is outside the tree's range. */
export const bucketOf = (tree: Tree, key: string): number | undefined => {
  const pos = position(key)
  return containsPosition(tree.range, pos) ? bucketAt(tree, pos) : undefined
}

/** Recompute internal node (level, index) from its children. */
const rehash = (tree: Tree, level: number, index: number): void => {
  const f = tree.shape.fanout
  const children = tree.levels[level + 1]!
  const node = tree.levels[level]!
  node[2 * index] = murmur3Words(children, 2 * index * f, 2 * f, KEY_SEED_HI)
  node[2 * index + 1] = murmur3Words(children, 2 * index * f, 2 * f, KEY_SEED_LO)
}

const xorLeaf = (tree: Tree, bucket: number, d: Digest): void => {
  const leaves = tree.levels[tree.shape.depth]!
  leaves[2 * bucket] = (leaves[2 * bucket]! ^ d[0]) >>> 0
  leaves[2 * bucket + 1] = (leaves[2 * bucket + 1]! ^ d[1]) >>> 0
}

/** Build a tree from scratch; entries outside the range are skipped. O(keys + nodes). */
export const build = (
  range: Range,
  shape: Shape,
  entries: Iterable<readonly [string, Obj]>,
): Tree => finish(add(begin(range, shape), entries))

/**
 * A tree built a page of keys at a time (the storage node builds its trees across steps, so
 * that no step hashes the whole store): `begin` an empty tree, `add` every page, `finish` once
 * every key was added. Until then only its leaves and keys are right (`update` keeps them so),
 * not its internal digests: compare nothing against it before `finish`.
 */
export const begin = (range: Range, shape: Shape): Tree => allocate(range, shape)

/** Add entries to a tree being built: leaves only; entries outside the range are skipped. */
export const add = (tree: Tree, entries: Iterable<readonly [string, Obj]>): Tree => {
  for (const [key, obj] of entries) {
    const pos = position(key)
    if (!containsPosition(tree.range, pos)) continue
    const d = keyDigest(key, obj)
    const bucket = bucketAt(tree, pos)
    let keys = tree.buckets.get(bucket)
    const old = keys?.get(key)
    // A repeated key: the last object wins, as it would in a Map.
    if (old !== undefined) {
      xorLeaf(tree, bucket, old)
      keys!.delete(key)
      tree.size--
      if (keys!.size === 0) tree.buckets.delete(bucket)
    }
    if (d === undefined) continue
    if (keys === undefined || keys.size === 0) {
      keys = new Map()
      tree.buckets.set(bucket, keys)
    }
    keys.set(key, d)
    tree.size++
    xorLeaf(tree, bucket, d)
  }
  return tree
}

/** Every key was added: hash the internal nodes bottom-up. O(nodes). */
export const finish = (tree: Tree): Tree => {
  hashInternal(tree)
  return tree
}

/**
 * Record that `key` changed from `oldObj` to `newObj` (undefined or empty: absent). In place,
 * O(depth · fanout). Keys outside the range are ignored, so a caller may offer every write to
 * every tree. Throws if `oldObj` is not what the tree holds for the key: the tree and the
 * store have drifted apart, a bug in the caller that would silently stall anti-entropy.
 */
export const update = (
  tree: Tree,
  key: string,
  oldObj: Obj | undefined,
  newObj: Obj | undefined,
): Tree => {
  const pos = position(key)
  if (!containsPosition(tree.range, pos)) return tree
  const bucket = bucketAt(tree, pos)
  const keys = tree.buckets.get(bucket)
  const held = keys?.get(key)
  const before = keyDigest(key, oldObj)
  if (!sameDigest(held, before)) {
    throw new Error(`merkle: tree out of step with the store for key ${JSON.stringify(key)}`)
  }
  const after = keyDigest(key, newObj)
  if (sameDigest(before, after)) return tree
  if (before !== undefined) xorLeaf(tree, bucket, before)
  if (after !== undefined) xorLeaf(tree, bucket, after)
  if (after === undefined) {
    keys!.delete(key)
    if (keys!.size === 0) tree.buckets.delete(bucket)
    tree.size--
  } else if (keys === undefined) {
    tree.buckets.set(bucket, new Map([[key, after]]))
    tree.size++
  } else {
    if (before === undefined) tree.size++
    keys.set(key, after)
  }
  let index = bucket
  for (let l = tree.shape.depth - 1; l >= 0; l--) {
    index = Math.floor(index / tree.shape.fanout)
    rehash(tree, l, index)
  }
  return tree
}

/** The digest of node `index` at `level`. */
export const nodeHash = (tree: Tree, level: number, index: number): Digest => {
  const words = tree.levels[level]!
  return [words[2 * index]!, words[2 * index + 1]!]
}

export const root = (tree: Tree): Digest => nodeHash(tree, 0, 0)

/** An independent copy (a snapshot: later updates to either do not affect the other). */
export const clone = (tree: Tree): Tree => ({
  ...tree,
  levels: tree.levels.map((l) => l.slice()),
  buckets: new Map([...tree.buckets].map(([b, keys]) => [b, new Map(keys)])),
})

// ---------------------------------------------------------------------------------------------
// The diff protocol, as data

/** Ask the peer for the hashes of nodes `indices` (ascending) at `level` of its tree. */
export interface TreeLevelRequest {
  readonly _tag: "TreeLevelRequest"
  /** The exchange's rid, minted by the initiator, echoed in every answer. */
  readonly rid: number
  readonly range: Range
  readonly shape: Shape
  readonly level: number
  readonly indices: ReadonlyArray<number>
}

export interface TreeLevelResponse {
  readonly _tag: "TreeLevelResponse"
  readonly rid: number
  readonly level: number
  /** Echo of the request's indices, so a stale or duplicated answer is recognised. */
  readonly indices: ReadonlyArray<number>
  /** hashes[i] is the peer's digest of node indices[i]. */
  readonly hashes: ReadonlyArray<Digest>
}

/** Ask for the peer's objects of the keys in `buckets` whose digest differs from ours. */
export interface KeysRequest {
  readonly _tag: "KeysRequest"
  readonly rid: number
  readonly range: Range
  readonly shape: Shape
  /** Leaf buckets, ascending, at most `limit`. */
  readonly buckets: ReadonlyArray<number>
  /** The initiator's [key, digest] for every key it holds in those buckets, sorted by key. */
  readonly digests: ReadonlyArray<readonly [string, Digest]>
  /** At most this many entries in the answer (K, the per-exchange key bound). */
  readonly limit: number
}

export interface KeyEntry {
  readonly key: string
  /** The peer's object; null when the peer holds none (the initiator must push its own). */
  readonly obj: Obj | null
}

export interface KeysResponse {
  readonly _tag: "KeysResponse"
  readonly rid: number
  /** The first `limit` differing keys in (bucket, key) order. */
  readonly entries: ReadonlyArray<KeyEntry>
}

export type DiffMessage = TreeLevelRequest | TreeLevelResponse | KeysRequest | KeysResponse

/** An answer, or why the request cannot be answered (the machine turns that into a refusal). */
export type Answer<M> =
  | { readonly _tag: "Answer"; readonly message: M }
  | { readonly _tag: "Invalid"; readonly reason: string }

/** The first request of a diff: the root. */
export const startDiff = (tree: Tree, rid: number): TreeLevelRequest => ({
  _tag: "TreeLevelRequest",
  rid,
  range: tree.range,
  shape: tree.shape,
  level: 0,
  indices: [0],
})

const isIndex = (x: unknown, bound: number): x is number =>
  typeof x === "number" && Number.isInteger(x) && x >= 0 && x < bound

const checkTarget = (tree: Tree, range: Range, shape: Shape): string | undefined => {
  if (!sameRange(tree.range, range)) return "range mismatch"
  if (!sameShape(tree.shape, shape)) return "shape mismatch"
  return undefined
}

/** The responder's side of one level: its hashes of the requested nodes. */
export const answerLevel = (tree: Tree, request: TreeLevelRequest): Answer<TreeLevelResponse> => {
  const mismatch = checkTarget(tree, request.range, request.shape)
  if (mismatch !== undefined) return { _tag: "Invalid", reason: mismatch }
  const { level, indices } = request
  if (!isIndex(level, tree.shape.depth + 1)) return { _tag: "Invalid", reason: "bad level" }
  const width = tree.shape.fanout ** level
  const indicesOk =
    Array.isArray(indices) && indices.length <= width && indices.every((i) => isIndex(i, width))
  if (!indicesOk) return { _tag: "Invalid", reason: "bad indices" }
  const hashes = indices.map((i) => nodeHash(tree, level, i))
  return {
    _tag: "Answer",
    message: { _tag: "TreeLevelResponse", rid: request.rid, level, indices, hashes },
  }
}

/** What the initiator does after comparing one level. */
export type Next =
  /** No differing node: the trees agree on this range (or the answer does not fit the request). */
  | { readonly _tag: "InSync"; readonly compared: number }
  | { readonly _tag: "Descend"; readonly request: TreeLevelRequest; readonly compared: number }
  | { readonly _tag: "FetchKeys"; readonly request: KeysRequest; readonly compared: number }

/** Does `response` answer `request`? (same exchange, level and indices, one hash per index) */
export const answers = (request: TreeLevelRequest, response: TreeLevelResponse): boolean =>
  response.rid === request.rid &&
  response.level === request.level &&
  Array.isArray(response.indices) &&
  Array.isArray(response.hashes) &&
  response.indices.length === request.indices.length &&
  response.hashes.length === request.indices.length &&
  response.indices.every((i, k) => i === request.indices[k]) &&
  response.hashes.every(
    (h) => Array.isArray(h) && h.length === 2 && h.every((w) => Number.isInteger(w)),
  )

/**
 * The initiator's side: compare the peer's hashes with ours and descend into the children of
 * the first `limit` differing nodes (ascending). Following only the first `limit` loses
 * nothing: the ancestors of the first `limit` differing leaves are exactly the first (at most
 * `limit`) differing nodes of every level, because a node's leaves precede those of every
 * node to its right. The caller checks `answers(request, response)` first.
 */
export const compareLevel = (
  tree: Tree,
  request: TreeLevelRequest,
  response: TreeLevelResponse,
  limit: number,
): Next => {
  const compared = response.hashes.length
  const differing: Array<number> = []
  for (let k = 0; k < request.indices.length && differing.length < limit; k++) {
    const index = request.indices[k]!
    if (!sameDigest(nodeHash(tree, request.level, index), response.hashes[k]!)) {
      differing.push(index)
    }
  }
  if (differing.length === 0) return { _tag: "InSync", compared }
  if (request.level === tree.shape.depth) {
    const keys = keysRequest(tree, request.rid, differing, limit)
    return { _tag: "FetchKeys", request: keys, compared }
  }
  const f = tree.shape.fanout
  const indices: Array<number> = []
  for (const parent of differing) for (let c = 0; c < f; c++) indices.push(parent * f + c)
  return {
    _tag: "Descend",
    request: { ...request, level: request.level + 1, indices },
    compared,
  }
}

/** Ask for the keys of `buckets` (ascending), carrying our digests of them. */
export const keysRequest = (
  tree: Tree,
  rid: number,
  buckets: ReadonlyArray<number>,
  limit: number,
): KeysRequest => {
  const digests: Array<readonly [string, Digest]> = []
  for (const b of buckets) for (const entry of tree.buckets.get(b) ?? []) digests.push(entry)
  digests.sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0))
  return {
    _tag: "KeysRequest",
    rid,
    range: tree.range,
    shape: tree.shape,
    buckets: [...buckets],
    digests,
    limit,
  }
}

/**
 * The responder's side of the leaves: for the requested buckets in ascending order, the keys
 * whose digest differs between the two sides (present on one side only counts), in key order,
 * with our object (null if we hold none); at most min(request.limit, limit) of them.
 * Digests naming keys outside the requested buckets are ignored.
 */
export const answerKeys = (
  tree: Tree,
  get: (key: string) => Obj | undefined,
  request: KeysRequest,
  limit: number,
): Answer<KeysResponse> => {
  const mismatch = checkTarget(tree, request.range, request.shape)
  if (mismatch !== undefined) return { _tag: "Invalid", reason: mismatch }
  if (!Array.isArray(request.buckets) || !Array.isArray(request.digests))
    return { _tag: "Invalid", reason: "bad keys request" }
  if (!request.buckets.every((b) => isIndex(b, tree.leafCount)))
    return { _tag: "Invalid", reason: "bad buckets" }
  const cap = Math.max(0, Math.min(limit, Number.isInteger(request.limit) ? request.limit : 0))
  const buckets = [...new Set(request.buckets)].sort((a, b) => a - b).slice(0, cap)
  const wanted = new Set(buckets)
  const theirs = new Map<number, Map<string, Digest>>()
  for (const item of request.digests) {
    if (!Array.isArray(item) || typeof item[0] !== "string") continue
    const bucket = bucketOf(tree, item[0])
    if (bucket === undefined || !wanted.has(bucket)) continue
    let keys = theirs.get(bucket)
    if (keys === undefined) {
      keys = new Map()
      theirs.set(bucket, keys)
    }
    keys.set(item[0], item[1])
  }
  const entries: Array<KeyEntry> = []
  for (const bucket of buckets) {
    const mine = tree.buckets.get(bucket) ?? new Map<string, Digest>()
    const other = theirs.get(bucket) ?? new Map<string, Digest>()
    const keys = [...new Set([...mine.keys(), ...other.keys()])].sort()
    for (const key of keys) {
      if (entries.length >= cap) break
      if (sameDigest(mine.get(key), other.get(key))) continue
      const obj = mine.has(key) ? (get(key) ?? null) : null
      entries.push({ key, obj })
    }
  }
  return { _tag: "Answer", message: { _tag: "KeysResponse", rid: request.rid, entries } }
}

export interface Reconciled {
  /** Objects to sync into the local store: sync(local, peer's), where that differs from local. */
  readonly repairs: ReadonlyArray<{ readonly key: string; readonly obj: Obj }>
  /** Objects the peer lacks: the same sync, where it differs from the peer's object. */
  readonly pushes: ReadonlyArray<{ readonly key: string; readonly obj: Obj }>
}

/**
 * The initiator's last step: merge each returned key. Both sides end with sync(local, remote):
 * we store it (repairs), the peer receives it (pushes). Entries that do not answer the request
 * (keys outside its buckets, beyond its limit, repeated) are ignored.
 */
export const reconcile = (
  tree: Tree,
  get: (key: string) => Obj | undefined,
  request: KeysRequest,
  response: KeysResponse,
): Reconciled => {
  const repairs: Array<{ key: string; obj: Obj }> = []
  const pushes: Array<{ key: string; obj: Obj }> = []
  if (response.rid !== request.rid || !Array.isArray(response.entries)) return { repairs, pushes }
  const wanted = new Set(request.buckets)
  const seen = new Set<string>()
  for (const entry of response.entries.slice(0, request.limit)) {
    if (typeof entry?.key !== "string" || seen.has(entry.key)) continue
    const bucket = bucketOf(tree, entry.key)
    if (bucket === undefined || !wanted.has(bucket)) continue
    seen.add(entry.key)
    const local = get(entry.key) ?? Version.empty
    const remote = entry.obj ?? Version.empty
    const merged = Version.sync(local, remote)
    if (!Version.equals(merged, local)) repairs.push({ key: entry.key, obj: merged })
    if (!Version.equals(merged, remote)) pushes.push({ key: entry.key, obj: merged })
  }
  return { repairs, pushes }
}
