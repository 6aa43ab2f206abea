/**
 * The Merkle diff protocol's functions (impl/core/merkle.ts) called directly with every answer a
 * confused or stale peer can give, each against a reference written from the spec's words
 * (spec/anti-entropy.md, AE-4..6) rather than from the code:
 *
 *  - `answers`: a level answer fits its request only when rid, level, indices (in order) and one
 *    two-word integer digest per index all match; every single corruption is refused;
 *  - `answerLevel` / `answerKeys`: a request for another range or shape, or with indices that are
 *    not a list of node indices, is refused with its reason;
 *  - `keysRequest`: exactly the initiator's digests of the requested buckets, sorted by key;
 *  - `answerKeys`: exactly the keys whose digests differ in the first min(limit, request's limit)
 *    distinct requested buckets (ascending), in (bucket, key) order, capped, with the responder's
 *    object or null; junk digests and digests outside those buckets are ignored;
 *  - `reconcile`: only entries that answer the request (its rid, within its limit, first
 *    occurrence of a string key, in a requested bucket) count; a repair only where the merge
 *    adds to the local object, a push only where it adds to the peer's;
 *  - `clone`: a snapshot: updating the original or the copy leaves the other as it was.
 *
 * The anti-entropy machine (anti-entropy-refusals, merkle) reaches these functions only with
 * requests it built itself, for trees it keeps; here the inputs are arbitrary.
 */
import assert from "node:assert/strict"
import fc from "fast-check"
import { position } from "../impl/core/hash.ts"
import * as Merkle from "../impl/core/merkle.ts"
import * as Version from "../impl/core/version.ts"
import { assertFloors, params } from "./helpers/fc.ts"
import { causalHistory } from "./helpers/histories.ts"
import { test } from "./helpers/test.ts"

const RING = 2 ** 52
/** Half the ring, so that some keys fall outside; 8 leaves, 2 per node. */
const range: Merkle.Range = { start: RING / 4, end: (3 * RING) / 4 }
const shape: Merkle.Shape = { fanout: 2, depth: 3 }
const KEYS = Array.from({ length: 40 }, (_, i) => `k${i}`)

const historyArb = causalHistory({
  actors: ["n1", "n2"],
  values: fc.string({ maxLength: 1 }),
  maxWrites: 6,
})

/** Two stores over the same keys, each key absent or at some point of one shared history. */
const storesArb = historyArb.chain((points) =>
  fc
    .tuple(
      fc.array(fc.option(fc.nat(points.length - 1), { nil: undefined }), {
        minLength: KEYS.length,
        maxLength: KEYS.length,
      }),
      fc.array(fc.option(fc.nat(points.length - 1), { nil: undefined }), {
        minLength: KEYS.length,
        maxLength: KEYS.length,
      }),
    )
    .map(([a, b]) => {
      const store = (picks: ReadonlyArray<number | undefined>) =>
        new Map(
          KEYS.flatMap((k, i) =>
            picks[i] === undefined ? [] : [[k, points[picks[i]!]!] as const],
          ),
        )
      return { points, a: store(a), b: store(b) }
    }),
)

const treeOf = (store: ReadonlyMap<string, Version.Obj>) =>
  Merkle.build(range, shape, [...store.entries()])

const byKey = (x: string, y: string) => (x < y ? -1 : x > y ? 1 : 0)

// ---------------------------------------------------------------------------------------------

type Corruption =
  | "none"
  | "rid"
  | "level"
  | "indices not a list"
  | "hashes not a list"
  | "an index missing"
  | "an index changed"
  | "indices reordered"
  | "a hash missing"
  | "a hash too many"
  | "a hash not a list"
  | "a hash of three words"
  | "a hash with a fraction"

const corruptions: ReadonlyArray<Corruption> = [
  "none",
  "rid",
  "level",
  "indices not a list",
  "hashes not a list",
  "an index missing",
  "an index changed",
  "indices reordered",
  "a hash missing",
  "a hash too many",
  "a hash not a list",
  "a hash of three words",
  "a hash with a fraction",
]

const corrupt = (
  r: Merkle.TreeLevelResponse,
  c: Corruption,
  at: number,
): Merkle.TreeLevelResponse | undefined => {
  const k = at % r.indices.length
  const set = <T>(xs: ReadonlyArray<T>, v: T) => xs.map((x, i) => (i === k ? v : x))
  const junk = (x: unknown) => x as never
  switch (c) {
    case "none":
      return r
    case "rid":
      return { ...r, rid: r.rid + 1 }
    case "level":
      return { ...r, level: r.level + 1 }
    case "indices not a list":
      return { ...r, indices: junk("0") }
    case "hashes not a list":
      return { ...r, hashes: junk({ length: r.hashes.length }) }
    case "an index missing":
      return { ...r, indices: r.indices.filter((_, i) => i !== k) }
    case "an index changed":
      return { ...r, indices: set(r.indices, r.indices[k]! + 1000) }
    case "indices reordered":
      return r.indices.length < 2 ? undefined : { ...r, indices: [...r.indices].reverse() }
    case "a hash missing":
      return { ...r, hashes: r.hashes.filter((_, i) => i !== k) }
    case "a hash too many":
      return { ...r, hashes: [...r.hashes, [1, 2]] }
    case "a hash not a list":
      return { ...r, hashes: set(r.hashes, junk("12")) }
    case "a hash of three words":
      return { ...r, hashes: set(r.hashes, junk([...r.hashes[k]!, 3])) }
    case "a hash with a fraction":
      return { ...r, hashes: set(r.hashes, [r.hashes[k]![0], 0.5]) }
  }
}

test("AE-6: a level answer fits its request only when rid, level, every index in order and one two-word integer digest per index match; every single corruption is refused", () => {
  const seen: Record<string, number> = {}
  fc.assert(
    fc.property(
      storesArb,
      fc.nat(shape.depth),
      fc.array(fc.nat(7), { minLength: 1, maxLength: 4 }),
      fc.constantFrom(...corruptions),
      fc.nat(3),
      fc.nat(100),
      ({ b }, level, picks, corruption, at, rid) => {
        const tree = treeOf(b)
        const width = shape.fanout ** level
        const indices = [...new Set(picks.map((p) => p % width))].sort((x, y) => x - y)
        const request: Merkle.TreeLevelRequest = {
          _tag: "TreeLevelRequest",
          rid,
          range,
          shape,
          level,
          indices,
        }
        const answer = Merkle.answerLevel(tree, request)
        assert.equal(answer._tag, "Answer")
        if (answer._tag !== "Answer") return
        const response = corrupt(answer.message, corruption, at)
        if (response === undefined) return
        assert.equal(Merkle.answers(request, response), corruption === "none", corruption)
        seen[corruption] = (seen[corruption] ?? 0) + 1
      },
    ),
    params(600),
  )
  console.log(`AE-6 answers counts: ${JSON.stringify(seen)}`)
  assertFloors(seen, Object.fromEntries(corruptions.map((c) => [c, 5])))
})

test("AE-6: a level or keys request for another range or shape, or with indices that are not node indices, is refused with its reason", () => {
  const tree = treeOf(new Map())
  const level = (over: Partial<Merkle.TreeLevelRequest>) =>
    Merkle.answerLevel(tree, {
      _tag: "TreeLevelRequest",
      rid: 1,
      range,
      shape,
      level: 1,
      indices: [0, 1],
      ...over,
    })
  const keys = (over: Partial<Merkle.KeysRequest>) =>
    Merkle.answerKeys(
      tree,
      () => undefined,
      {
        _tag: "KeysRequest",
        rid: 1,
        range,
        shape,
        buckets: [0],
        digests: [],
        limit: 4,
        ...over,
      },
      4,
    )
  const other: Merkle.Range = { start: range.start + 1, end: range.end }
  const wider: Merkle.Shape = { fanout: 4, depth: 3 }
  assert.deepEqual(level({ range: other }), { _tag: "Invalid", reason: "range mismatch" })
  assert.deepEqual(level({ shape: wider }), { _tag: "Invalid", reason: "shape mismatch" })
  assert.deepEqual(keys({ range: other }), { _tag: "Invalid", reason: "range mismatch" })
  assert.deepEqual(keys({ shape: wider }), { _tag: "Invalid", reason: "shape mismatch" })
  for (const indices of ["01", 1, null, { length: 1 }, [0, 2], [-1], [0.5], [0, 1, 0]]) {
    assert.deepEqual(level({ indices: indices as never }), {
      _tag: "Invalid",
      reason: "bad indices",
    })
  }
  assert.deepEqual(level({ level: 4 }), { _tag: "Invalid", reason: "bad level" })
  assert.equal(level({})._tag, "Answer")
})

test("AE-5: a keys request carries exactly the initiator's digests of the requested buckets, sorted by key", () => {
  let digests = 0
  fc.assert(
    fc.property(storesArb, fc.subarray([0, 1, 2, 3, 4, 5, 6, 7]), ({ a }, buckets) => {
      const tree = treeOf(a)
      const request = Merkle.keysRequest(tree, 7, buckets, 5)
      const want = [...a.entries()]
        .filter(([k, obj]) => {
          const b = Merkle.bucketOf(tree, k)
          return b !== undefined && buckets.includes(b) && Merkle.keyDigest(k, obj) !== undefined
        })
        .map(([k, obj]) => [k, Merkle.keyDigest(k, obj)!] as const)
        .sort((x, y) => byKey(x[0], y[0]))
      assert.deepEqual(request.digests, want)
      assert.deepEqual(request.buckets, buckets)
      assert.equal(request.rid, 7)
      assert.equal(request.limit, 5)
      digests += want.length
    }),
    params(300),
  )
  assertFloors({ digests }, { digests: 1000 })
})

test("AE-5: a keys request over a bucket of hundreds of keys, added in any order, lists their digests sorted by key", () => {
  // Large enough that the sort merges runs instead of only inserting (small arrays hide a
  // comparator that never answers "greater").
  const many = Array.from({ length: 400 }, (_, i) => `key-${i}`)
  const obj = Version.update(Version.empty, Version.emptyClock, { value: "v", ts: 1 }, "n1")
  fc.assert(
    fc.property(fc.shuffledSubarray(many, { minLength: 300 }), (keys) => {
      const tree = Merkle.build({ start: 0, end: 0 }, { fanout: 2, depth: 0 }, [
        ...keys.map((k) => [k, obj] as const),
      ])
      const got = Merkle.keysRequest(tree, 1, [0], 10).digests.map(([k]) => k)
      assert.deepEqual(got, [...keys].sort(byKey))
    }),
    params(20),
  )
})

/** A request as a peer may send it: buckets repeated and unordered, digests with junk. */
const keysRequestArb = fc.record({
  buckets: fc.array(fc.nat(7), { maxLength: 6 }),
  limit: fc.constantFrom(0, 1, 2, 3, 6, 100, -1, 2.5),
  extra: fc.array(
    fc.oneof(
      fc.constant(null as unknown),
      fc.constant("k1" as unknown),
      fc.constant([5, [1, 2]] as unknown),
      fc.constant([["k1"], [1, 2]] as unknown),
      fc.constantFrom(...KEYS).map((k) => [k, [1, 2]] as unknown),
    ),
    { maxLength: 4 },
  ),
  dropped: fc.array(fc.boolean(), { minLength: 4, maxLength: 4 }),
})

test("AE-5, AE-6: a keys answer holds exactly the differing keys of the first min(limit, asked) distinct requested buckets, in (bucket, key) order, with the responder's object or null", () => {
  const seen = { entries: 0, nulls: 0, capped: 0, junkIgnored: 0 }
  fc.assert(
    fc.property(storesArb, keysRequestArb, fc.constantFrom(2, 5, 50), ({ a, b }, r, limit) => {
      const ta = treeOf(a)
      const tb = treeOf(b)
      const ownDigests = Merkle.keysRequest(ta, 3, [...new Set(r.buckets)], 0).digests
      const digests = [...ownDigests.filter((_, i) => !r.dropped[i % 4]), ...r.extra] as never
      const request: Merkle.KeysRequest = {
        _tag: "KeysRequest",
        rid: 3,
        range,
        shape,
        buckets: r.buckets,
        digests,
        limit: r.limit,
      }
      const got = Merkle.answerKeys(tb, (k) => b.get(k), request, limit)
      // The reference, from AE-5's words.
      const cap = Math.max(0, Math.min(limit, Number.isInteger(r.limit) ? r.limit : 0))
      const buckets = [...new Set(r.buckets)].sort((x, y) => x - y).slice(0, cap)
      const theirs = new Map<string, Merkle.Digest>()
      for (const item of digests as ReadonlyArray<unknown>) {
        if (!Array.isArray(item) || typeof item[0] !== "string") {
          seen.junkIgnored++
          continue
        }
        const bucket = Merkle.bucketOf(tb, item[0])
        if (bucket === undefined || !buckets.includes(bucket)) continue
        theirs.set(item[0], item[1])
      }
      const want: Array<Merkle.KeyEntry> = []
      for (const bucket of buckets) {
        // A key whose object is empty is held by no tree (it has no digest).
        const held = (k: string) => Merkle.keyDigest(k, b.get(k)) !== undefined
        const mine = [...b.keys()].filter((k) => held(k) && Merkle.bucketOf(tb, k) === bucket)
        const other = [...theirs.keys()].filter((k) => Merkle.bucketOf(tb, k) === bucket)
        for (const key of [...new Set([...mine, ...other])].sort(byKey)) {
          const d = b.has(key) ? Merkle.keyDigest(key, b.get(key)) : undefined
          if (Merkle.sameDigest(d, theirs.get(key))) continue
          if (want.length >= cap) {
            seen.capped++
            break
          }
          want.push({ key, obj: d === undefined ? null : b.get(key)! })
        }
      }
      assert.deepEqual(got, {
        _tag: "Answer",
        message: { _tag: "KeysResponse", rid: 3, entries: want },
      })
      seen.entries += want.length
      seen.nulls += want.filter((e) => e.obj === null).length
    }),
    params(600),
  )
  console.log(`AE-5 keys answer counts: ${JSON.stringify(seen)}`)
  assertFloors(seen, { entries: 260, nulls: 50, capped: 70, junkIgnored: 350 })
})

test("AE-6: reconcile takes only the entries that answer the request, and repairs or pushes only where the merge adds something", () => {
  const seen = { taken: 0, repairs: 0, pushes: 0, neither: 0, ignored: 0, staleRid: 0 }
  fc.assert(
    fc.property(
      storesArb,
      fc.subarray([0, 1, 2, 3, 4, 5, 6, 7], { minLength: 1 }),
      fc.array(
        fc.oneof(
          {
            weight: 6,
            arbitrary: fc.record({ inBuckets: fc.constant(true), pick: fc.nat(), point: fc.nat() }),
          },
          {
            weight: 2,
            arbitrary: fc.record({ key: fc.constantFrom(...KEYS), point: fc.nat() }),
          },
          { weight: 1, arbitrary: fc.constantFrom(null, { key: 5 }, {}, "k1") },
        ),
        { maxLength: 10 },
      ),
      fc.constantFrom(1, 3, 100),
      fc.boolean(),
      ({ points, a }, buckets, raw, limit, staleRid) => {
        const tree = treeOf(a)
        const request = Merkle.keysRequest(tree, 9, buckets, limit)
        const inBuckets = KEYS.filter((k) => buckets.includes(Merkle.bucketOf(tree, k) ?? -1))
        // A point past the history's end stands for "the peer holds none" (null).
        const objAt = (point: number) => points[point % (points.length + 1)] ?? null
        const entries = raw.map((e) => {
          if (e === null || typeof e !== "object" || !("point" in e)) return e
          const key = "pick" in e ? inBuckets[e.pick % inBuckets.length] : e.key
          return key === undefined ? null : { key, obj: objAt(e.point) }
        }) as never as ReadonlyArray<Merkle.KeyEntry>
        const response: Merkle.KeysResponse = {
          _tag: "KeysResponse",
          rid: staleRid ? 8 : 9,
          entries,
        }
        const got = Merkle.reconcile(tree, (k) => a.get(k), request, response)
        const want: Merkle.Reconciled = { repairs: [], pushes: [] }
        if (staleRid) seen.staleRid++
        else {
          const taken = new Set<string>()
          for (const e of entries.slice(0, limit) as ReadonlyArray<unknown>) {
            const key = (e as { key?: unknown } | null)?.key
            const bucket = typeof key === "string" ? Merkle.bucketOf(tree, key) : undefined
            if (
              typeof key !== "string" ||
              taken.has(key) ||
              bucket === undefined ||
              !buckets.includes(bucket)
            ) {
              seen.ignored++
              continue
            }
            taken.add(key)
            seen.taken++
            const local = a.get(key) ?? Version.empty
            const remote = (e as Merkle.KeyEntry).obj ?? Version.empty
            const merged = Version.sync(local, remote)
            const repair = !Version.equals(merged, local)
            const push = !Version.equals(merged, remote)
            if (repair) (want.repairs as Array<unknown>).push({ key, obj: merged })
            if (push) (want.pushes as Array<unknown>).push({ key, obj: merged })
            if (repair) seen.repairs++
            if (push) seen.pushes++
            if (!repair && !push) seen.neither++
          }
        }
        assert.deepEqual(got, want)
      },
    ),
    params(600),
  )
  console.log(`AE-6 reconcile counts: ${JSON.stringify(seen)}`)
  assertFloors(seen, {
    taken: 170,
    repairs: 60,
    pushes: 55,
    neither: 45,
    ignored: 100,
    staleRid: 110,
  })
})

test("AE-4: a cloned tree is a snapshot: updating the original or the copy leaves the other equal to a tree built from what it held", () => {
  let updates = 0
  fc.assert(
    fc.property(storesArb, ({ a, b }) => {
      const original = treeOf(a)
      const copy = Merkle.clone(original)
      // Move the original to b's contents, key by key.
      for (const k of KEYS) {
        if (a.get(k) === b.get(k)) continue
        Merkle.update(original, k, a.get(k), b.get(k))
        updates++
      }
      const sameTree = (x: Merkle.Tree, y: Merkle.Tree, what: string) => {
        assert.deepEqual(x.levels, y.levels, `${what}: levels`)
        assert.deepEqual(x.buckets, y.buckets, `${what}: buckets`)
        assert.equal(x.size, y.size, `${what}: size`)
      }
      sameTree(copy, treeOf(a), "the copy after updating the original")
      sameTree(original, treeOf(b), "the original after its updates")
      // And the other way round.
      const again = Merkle.clone(original)
      for (const k of KEYS) if (a.get(k) !== b.get(k)) Merkle.update(again, k, b.get(k), a.get(k))
      sameTree(original, treeOf(b), "the original after updating its copy")
      sameTree(again, treeOf(a), "the copy after its updates")
    }),
    params(200),
  )
  assertFloors({ updates }, { updates: 2000 })
})

// ---------------------------------------------------------------------------------------------
// The tree's parts at their boundaries

test("AE-1: a key's digest is a fixed format: these objects hash to these digests on every node and every version (a change would make mixed-version replicas see every key as differing)", () => {
  const one = (value: string | null, extra: object = {}) => ({
    entries: [{ actor: "n1", counter: 1, values: [{ value, ts: 5, ...extra }] }],
  })
  const golden: ReadonlyArray<readonly [string, Version.Obj, Merkle.Digest]> = [
    ["k", one("v"), [3974305225, 3720441140]],
    [
      "ключ",
      { entries: [{ actor: "n1", counter: 2, values: [{ value: "ł€", ts: 7 }] }] },
      [3455454719, 906853867],
    ],
    ["k", one(null), [3148701668, 903007121]],
    // U+00FF is the last one-byte character: still written as bytes.
    ["k", one("\u00ff"), [2174522497, 720323253]],
    ["k", one("v", { exp: 99 }), [3552746091, 3474165486]],
    ["k", one("3", { counter: { n1: 3 } }), [480369248, 3913584199]],
    [
      "k",
      {
        entries: [
          { actor: "n1", counter: 1, values: [] },
          {
            actor: "nœ2",
            counter: 4,
            values: [
              { value: "x", ts: 9 },
              { value: "y", ts: 8 },
            ],
          },
        ],
      },
      [2291307413, 783832092],
    ],
  ]
  for (const [key, obj, digest] of golden) {
    assert.deepEqual(Merkle.keyDigest(key, obj), digest, JSON.stringify([key, obj]))
  }
  for (const absent of [undefined, null, Version.empty]) {
    assert.equal(Merkle.keyDigest("k", absent), undefined)
  }
  // Digests are equal only when both words are.
  assert.equal(Merkle.sameDigest([1, 2], [1, 2]), true)
  assert.equal(Merkle.sameDigest([1, 2], [1, 3]), false)
  assert.equal(Merkle.sameDigest([1, 2], [3, 2]), false)
  assert.equal(Merkle.sameDigest(undefined, [1, 2]), false)
  assert.equal(Merkle.sameDigest(undefined, undefined), true)
})

test("AE-1: values that differ only above the low byte of a character (wide text) have different digests", () => {
  let pairs = 0
  fc.assert(
    fc.property(
      fc.string({ unit: "binary", minLength: 1, maxLength: 4 }),
      fc.string({ unit: "binary", minLength: 1, maxLength: 4 }),
      fc.constantFrom("k", "ключ"),
      (x, y, key) => {
        fc.pre(x !== y)
        const obj = (value: string) => ({
          entries: [{ actor: "n1", counter: 1, values: [{ value, ts: 1 }] }],
        })
        // The same low bytes, with the high ones of y: what a byte-narrowing encoding confuses.
        const low = [...x].map((c) => String.fromCharCode(c.charCodeAt(0) & 0xff)).join("")
        for (const other of [y, low]) {
          if (other === x) continue
          const a = Merkle.keyDigest(key, obj(x))
          const b = Merkle.keyDigest(key, obj(other))
          assert.equal(Merkle.sameDigest(a, b), false, JSON.stringify([x, other]))
          pairs++
        }
      },
    ),
    params(300),
  )
  assertFloors({ pairs }, { pairs: 300 })
})

test("AE-1: ranges, shapes and leaf buckets at their boundaries", () => {
  // The default shape, and shapeFor against a plain reading of its rule.
  assert.deepEqual(Merkle.make(range).shape, { fanout: 16, depth: 3 })
  const reference = (expected: number, perLeaf: number, fanout: number) => {
    let depth = 0
    for (;;) {
      if (fanout ** depth * perLeaf >= expected) return depth
      if (fanout ** (depth + 1) > Merkle.MAX_LEAVES) return depth
      depth++
    }
  }
  for (const fanout of [2, 4, 16])
    for (const perLeaf of [1, 32])
      for (const expected of [0, 1, 31, 32, 33, 512, 513, 10 ** 6, 10 ** 9, 10 ** 12]) {
        assert.deepEqual(
          Merkle.shapeFor(expected, perLeaf, fanout),
          { fanout, depth: reference(expected, perLeaf, fanout) },
          `shapeFor(${expected}, ${perLeaf}, ${fanout})`,
        )
      }
  // A range excludes its start and includes its end.
  const r: Merkle.Range = { start: 100, end: 200 }
  assert.equal(Merkle.containsPosition(r, 100), false)
  assert.equal(Merkle.containsPosition(r, 101), true)
  assert.equal(Merkle.containsPosition(r, 200), true)
  assert.equal(Merkle.containsPosition(r, 201), false)
  assert.equal(Merkle.sameRange(r, { start: 100, end: 200 }), true)
  assert.equal(Merkle.sameRange(r, { start: 100, end: 201 }), false)
  assert.equal(Merkle.sameRange(r, { start: 101, end: 200 }), false)
  assert.equal(Merkle.sameShape({ fanout: 2, depth: 3 }, { fanout: 2, depth: 3 }), true)
  assert.equal(Merkle.sameShape({ fanout: 2, depth: 3 }, { fanout: 2, depth: 4 }), false)
  assert.equal(Merkle.sameShape({ fanout: 2, depth: 3 }, { fanout: 4, depth: 3 }), false)
  // The leaf bound is inclusive.
  assert.equal(Merkle.validShape({ fanout: 2, depth: 20 }), true)
  assert.equal(Merkle.validShape({ fanout: 2, depth: 21 }), false)
  assert.throws(() => Merkle.make({ start: -1, end: 5 }), /merkle: invalid range -1:5/)
  assert.throws(() => Merkle.make(r, { fanout: 1, depth: 2 }), /merkle: invalid shape/)
})

test("AE-1: a key exactly at, just below or just above a leaf boundary lands in the bucket exact integer division gives", () => {
  let checked = 0
  fc.assert(
    fc.property(
      fc.integer({ min: 2 ** 20, max: 2 ** 52 }),
      fc.constantFrom({ fanout: 2, depth: 3 }, { fanout: 16, depth: 2 }, { fanout: 4, depth: 6 }),
      fc.nat(),
      fc.constantFrom(-1, 0, 1),
      fc.constantFrom(...KEYS),
      (span, shape, pick, delta, key) => {
        const leaves = shape.fanout ** shape.depth
        const width = Math.ceil(span / leaves)
        const q = 1 + (pick % (leaves - 1))
        const offset = q * width + delta
        fc.pre(offset >= 0 && offset < span)
        // Place the key at `offset` by choosing the range around its position.
        const at = position(key)
        const start = (((at - 1 - offset) % RING) + RING) % RING
        const end = (start + span) % RING
        const tree = Merkle.make({ start, end }, shape)
        const want = Number(BigInt(offset) / BigInt(width))
        assert.equal(Merkle.bucketOf(tree, key), want, JSON.stringify({ span, offset, width }))
        checked++
      },
    ),
    params(300),
  )
  assertFloors({ checked }, { checked: 200 })
})

test("AE-4: building from entries that repeat a key keeps the last object, as a map would (an empty last object removes the key)", () => {
  let repeats = 0
  fc.assert(
    fc.property(
      historyArb,
      fc.array(fc.tuple(fc.constantFrom(...KEYS.slice(0, 12)), fc.nat()), { maxLength: 30 }),
      (points, raw) => {
        const entries = raw.map(([k, p]) => [k, points[p % points.length]!] as const)
        const last = new Map(entries)
        repeats += entries.length - last.size
        const got = Merkle.build(range, shape, entries)
        const want = Merkle.build(range, shape, [...last])
        assert.deepEqual(got.levels, want.levels)
        assert.deepEqual(got.buckets, want.buckets)
        assert.equal(got.size, want.size)
      },
    ),
    params(300),
  )
  assertFloors({ repeats }, { repeats: 500 })
})
