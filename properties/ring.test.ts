/**
 * Properties of hashing and placement (RING-*): the ring against the naive reference ring of
 * models/ring.ts, and the hash against its published vectors.
 */
import assert from "node:assert/strict"
import { readFileSync } from "node:fs"
import { test } from "./helpers/test.ts"
import fc from "fast-check"
import { murmur3, position, RING_SIZE, utf8Bytes } from "../impl/core/hash.ts"
import { NodeId } from "../impl/core/ids.ts"
import * as Ring from "../impl/core/ring.ts"
import { naivePreferenceList } from "../models/ring.ts"
import { params } from "./helpers/fc.ts"

const vectors = JSON.parse(
  readFileSync(new URL("../spec/hash-vectors.json", import.meta.url), "utf8"),
)

test("RING-1: the hash matches its published test vectors and stays below 2^52", () => {
  for (const v of vectors.murmur3) assert.equal(murmur3(utf8Bytes(v.key), v.seed), v.hash, v.key)
  for (const v of vectors.position) assert.equal(position(utf8Bytes(v.key)), v.position, v.key)
  fc.assert(
    fc.property(fc.string({ unit: "binary" }), (key) => {
      const p = position(utf8Bytes(key))
      return Number.isInteger(p) && p >= 0 && p < RING_SIZE
    }),
    params(500),
  )
})

const members = fc
  .uniqueArray(fc.stringMatching(/^[a-z][a-z0-9]{0,5}$/), { minLength: 1, maxLength: 8 })
  .chain((ids) =>
    fc.tuple(
      fc.constant(ids),
      fc.array(fc.constantFrom(0.5, 1, 1, 2), { minLength: ids.length, maxLength: ids.length }),
    ),
  )
  .map(([ids, weights]) => ids.map((id, i) => ({ id: NodeId(id), weight: weights[i]! })))

test("RING-2: preference lists equal the naive reference ring's for random rings and keys", () => {
  fc.assert(
    fc.property(
      members,
      fc.integer({ min: 1, max: 16 }),
      fc.array(fc.string(), { minLength: 1, maxLength: 20 }),
      fc.integer({ min: 1, max: 5 }),
      (ms, tokens, keys, n) => {
        const ring = Ring.make(ms, tokens)
        for (const key of keys) {
          const k = utf8Bytes(key)
          assert.deepEqual(
            [...Ring.preferenceList(ring, k, n)],
            naivePreferenceList(ms, tokens, k, n),
          )
        }
      },
    ),
    params(200),
  )
})

test("RING-3: a preference list has N distinct nodes whenever N <= node count", () => {
  fc.assert(
    fc.property(members, fc.integer({ min: 1, max: 32 }), fc.string(), (ms, tokens, key) => {
      const ring = Ring.make(ms, tokens)
      for (let n = 1; n <= ms.length; n++) {
        const list = Ring.preferenceList(ring, utf8Bytes(key), n)
        assert.equal(list.length, n)
        assert.equal(new Set(list).size, n)
      }
    }),
    params(200),
  )
})

test("RING-4: ownership fractions sum to 1 and follow weights", () => {
  fc.assert(
    fc.property(members, fc.integer({ min: 1, max: 64 }), (ms, tokens) => {
      const own = Ring.ownership(Ring.make(ms, tokens))
      const total = [...own.values()].reduce((a, b) => a + b, 0)
      assert.ok(Math.abs(total - 1) < 1e-9, `sum ${total}`)
      const replica = Ring.replicaOwnership(Ring.make(ms, tokens), 2)
      const rtotal = [...replica.values()].reduce((a, b) => a + b, 0)
      assert.ok(Math.abs(rtotal - Math.min(2, ms.length)) < 1e-9, `replica sum ${rtotal}`)
    }),
    params(100),
  )
  // Weights: with many tokens a weight-2 node owns about twice a weight-1 node's share.
  const ring = Ring.make(
    [
      { id: NodeId("a"), weight: 1 },
      { id: NodeId("b"), weight: 1 },
      { id: NodeId("c"), weight: 2 },
    ],
    512,
  )
  const own = Ring.ownership(ring)
  assert.ok(Math.abs(own.get(NodeId("c"))! - 0.5) < 0.05, `weight-2 share ${own.get(NodeId("c"))}`)
})
