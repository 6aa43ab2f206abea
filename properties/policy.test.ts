/**
 * A key's conflict policy (impl/core/node-config.ts `policyOf`, LWW-2) and how a node applies
 * it to an object (node-state.ts `reconcile`), checked directly against a reference stated
 * here: the policy of the longest namespace prefix the key starts with (the first listed among
 * prefixes of that length), "siblings" when none matches; an lww key keeps only the sibling
 * with the latest hybrid timestamp, a siblings key keeps the object as it is.
 */
import assert from "node:assert/strict"
import fc from "fast-check"
import * as Node from "../impl/core/node.ts"
import { policyOf, type Namespace } from "../impl/core/node-config.ts"
import { reconcile } from "../impl/core/node-state.ts"
import * as Version from "../impl/core/version.ts"
import { assertFloors, params } from "./helpers/fc.ts"
import { causalHistory } from "./helpers/histories.ts"
import { config } from "./helpers/machine.ts"
import { test } from "./helpers/test.ts"

/** Prefixes and keys over a two-letter alphabet, so that prefixes often overlap and tie. */
const word = (maxLength: number) =>
  fc.array(fc.constantFrom("a", "b"), { maxLength }).map((cs) => cs.join(""))

const namespacesArb: fc.Arbitrary<Array<Namespace>> = fc.array(
  fc.record({ prefix: word(3), policy: fc.constantFrom("lww" as const, "siblings" as const) }),
  { maxLength: 5 },
)

/** The reference: every matching prefix, longest first, the earliest listed among equals. */
const expected = (namespaces: ReadonlyArray<Namespace>, key: string) => {
  const matching = namespaces
    .map((ns, i) => ({ ns, i }))
    .filter(({ ns }) => key.slice(0, ns.prefix.length) === ns.prefix)
    .sort((x, y) => y.ns.prefix.length - x.ns.prefix.length || x.i - y.i)
  return matching.length === 0 ? "siblings" : matching[0]!.ns.policy
}

test("LWW-2: a key's policy is its longest matching namespace prefix's (siblings when none matches), and a node keeps only the latest sibling of an lww key and every sibling of the others", () => {
  const seen = { lww: 0, siblings: 0, unmatched: 0, ties: 0, pruned: 0 }
  fc.assert(
    fc.property(
      namespacesArb,
      word(4),
      causalHistory({
        actors: ["n1", "n2", "n3"],
        values: fc.constantFrom("x", "y"),
        maxWrites: 6,
      }),
      (namespaces, key, points) => {
        const want = expected(namespaces, key)
        const matching = namespaces.filter((ns) => key.startsWith(ns.prefix))
        if (matching.length === 0) seen.unmatched++
        const longest = Math.max(-1, ...matching.map((ns) => ns.prefix.length))
        const atLongest = matching.filter((ns) => ns.prefix.length === longest)
        if (new Set(atLongest.map((ns) => ns.policy)).size > 1) seen.ties++
        const cfg: Node.Config = { ...config, namespaces }
        assert.equal(policyOf(cfg, key), want, `policy of ${JSON.stringify(key)}`)
        seen[want]++
        const state = Node.init(cfg, 0)
        for (const obj of points) {
          const got = reconcile(state, key, obj)
          if (want === "siblings") {
            assert.deepEqual(got, obj, "a siblings key's object is kept as it is")
            continue
          }
          const all = Version.siblings(obj)
          const kept = Version.siblings(got)
          if (all.length > 1) seen.pruned++
          assert.equal(kept.length, Math.min(all.length, 1), "an lww key keeps one sibling")
          if (kept.length === 1) {
            const latest = Math.max(...all.map((d) => d.sibling.ts))
            assert.equal(kept[0]!.sibling.ts, latest, "the kept sibling is the latest")
          }
          assert.deepEqual(Version.context(got), Version.context(obj), "the clock is kept")
        }
      },
    ),
    params(500),
  )
  console.log(`# policies: ${JSON.stringify(seen)}`)
  // About half the smallest of six runs' draws (docs/verification.md, "Floor margins").
  assertFloors(seen, { lww: 60, siblings: 170, unmatched: 100, ties: 13, pruned: 140 })
})
