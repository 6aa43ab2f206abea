/**
 * Last-write-wins namespaces on hybrid logical clocks (LWW-*): with every node's clock skewed by
 * up to a bound, a write that causally follows another never loses to it.
 *
 * Two mechanisms protect it, each enough alone: the write's context supersedes the earlier value
 * before timestamps are compared, and the coordinator's hybrid clock stamps the write above every
 * timestamp it saw. Removing either leaves the property true; removing both makes it fail
 * (checked by mutation when this suite was written).
 */
import assert from "node:assert/strict"
import { test } from "./helpers/test.ts"
import fc from "fast-check"
import * as Version from "../impl/core/version.ts"
import { defaultNetwork, Simulation } from "../impl/sim/sim.ts"
import { params } from "./helpers/fc.ts"

const SKEW_BOUND_MS = 30_000

test("LWW-1: with clock skew up to the bound, a causally later write never loses to an earlier one", () => {
  fc.assert(
    fc.property(
      fc.integer(),
      fc.array(fc.integer({ min: -SKEW_BOUND_MS, max: SKEW_BOUND_MS }), {
        minLength: 5,
        maxLength: 5,
      }),
      fc.array(fc.tuple(fc.nat(4), fc.boolean(), fc.constantFrom(0, 0, 0, 1, 300)), {
        minLength: 1,
        maxLength: 30,
      }),
      (seed, skews, steps) => {
        const sim = new Simulation({
          seed,
          nodes: 5,
          network: defaultNetwork,
          clockSkewMs: skews,
          // Two nodes' clocks differ by up to twice the bound.
          node: { namespaces: [{ prefix: "", policy: "lww" }], maxClockSkewMs: 2 * SKEW_BOUND_MS },
        })
        let context: Version.Clock | null = null
        steps.forEach(([node, blind, pauseMs], i) => {
          const at = sim.ids[node]!
          const value = `v${i}`
          // Each write follows the previous one causally: it carries the context read after it
          // (or, blind, reads a quorum that overlaps the previous write's quorum).
          const put = sim.call(at, {
            _tag: "Put",
            key: "k",
            value,
            context: blind ? null : context,
          })
          assert.equal(put.result?._tag, "PutOk")
          sim.runFor(pauseMs)
          const get = sim.call(sim.ids[(node + 1) % 5]!, { _tag: "Get", key: "k" })
          assert.equal(get.result?._tag, "GetOk")
          if (get.result?._tag !== "GetOk") return
          assert.deepEqual(Version.values(get.result.obj), [value], `skews ${skews}`)
          context = Version.context(get.result.obj)
        })
      },
    ),
    params(100),
  )
})
