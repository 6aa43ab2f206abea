/**
 * Causal context tokens (CTX-*): round-trip, and no corrupted or forged token is ever accepted.
 */
import assert from "node:assert/strict"
import { test } from "./helpers/test.ts"
import fc from "fast-check"
import { ContextError, decode, encode } from "../impl/wire/context.ts"
import type { Clock } from "../impl/core/version.ts"
import { params } from "./helpers/fc.ts"

const SECRET = "test-secret"
const clockArb: fc.Arbitrary<Clock> = fc
  .uniqueArray(
    fc.tuple(
      fc.string({ unit: "binary-ascii", minLength: 1, maxLength: 12 }),
      fc.integer({ min: 1, max: 2 ** 40 }),
    ),
    {
      selector: ([a]) => a,
      maxLength: 8,
    },
  )
  .map((entries) => entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))

test("CTX-1: a context token round-trips its version vector", () => {
  fc.assert(
    fc.property(clockArb, (clock) => {
      assert.deepEqual(decode(encode(clock, SECRET), SECRET), clock)
    }),
    params(300),
  )
})

test("CTX-2: a corrupted, truncated or forged token is rejected with a clear error", () => {
  fc.assert(
    fc.property(clockArb, fc.nat(), fc.integer({ min: 1, max: 255 }), (clock, at, flip) => {
      const token = encode(clock, SECRET)
      const raw = Buffer.from(token, "base64url")
      raw[at % raw.length]! ^= flip
      const corrupted = decode(raw.toString("base64url"), SECRET)
      assert.ok(corrupted instanceof ContextError, "a flipped byte was accepted")
      assert.match(corrupted.message, /^invalid causal context: /)
      const truncated = decode(token.slice(0, Math.max(0, token.length - 1 - (at % 8))), SECRET)
      assert.ok(truncated instanceof ContextError)
      // The same clock under another cluster's secret is a forgery here.
      const forged = decode(encode(clock, "another-secret"), SECRET)
      assert.ok(forged instanceof ContextError && forged.reason === "Forged")
    }),
    params(300),
  )
  fc.assert(
    fc.property(fc.string(), (garbage) => {
      assert.ok(decode(garbage, SECRET) instanceof ContextError)
    }),
    params(300),
  )
})
