/**
 * Whole-cluster key listing (SCAN-1, SCAN-2). In the simulator: a cluster holds generated keys
 * (some deleted, some expired); a SCAN walks it page by page with a generated COUNT and pattern
 * while nodes join, one crashes, and writes and deletes of *other* keys go on. Every key live for
 * the whole scan must come back exactly once, and nothing that was never written may appear.
 * And the glob matcher against a reference built on regular expressions.
 */
import assert from "node:assert/strict"
import { test } from "./helpers/test.ts"
import fc from "fast-check"
import * as Glob from "../impl/core/glob.ts"
import type { ClientOp } from "../impl/core/messages.ts"
import { defaultNetwork, Simulation } from "../impl/sim/sim.ts"
import { assertFloors, params } from "./helpers/fc.ts"

type Interlude =
  | { _tag: "Join" }
  | { _tag: "Crash"; node: number }
  | { _tag: "Restart" }
  | { _tag: "Churn"; n: number }
  | { _tag: "Wait"; ms: number }

const interludeArb: fc.Arbitrary<Interlude> = fc.oneof(
  { weight: 1, arbitrary: fc.record({ _tag: fc.constant("Join" as const) }) },
  { weight: 1, arbitrary: fc.record({ _tag: fc.constant("Crash" as const), node: fc.nat(4) }) },
  { weight: 1, arbitrary: fc.record({ _tag: fc.constant("Restart" as const) }) },
  { weight: 2, arbitrary: fc.record({ _tag: fc.constant("Churn" as const), n: fc.nat(999) }) },
  {
    weight: 2,
    arbitrary: fc.record({
      _tag: fc.constant("Wait" as const),
      ms: fc.integer({ min: 10, max: 2000 }),
    }),
  },
)

test("SCAN-1: a SCAN returns every key live for the whole scan exactly once, while nodes join and crash and other keys change", () => {
  const seen = { scans: 0, keysChecked: 0, pages: 0, joinsDuring: 0, crashesDuring: 0 }
  fc.assert(
    fc.property(
      fc.integer(),
      fc.uniqueArray(fc.string({ minLength: 1, maxLength: 6 }), { minLength: 40, maxLength: 120 }),
      fc.integer({ min: 1, max: 12 }),
      fc.constantFrom(undefined, undefined, "s:*a*", "s:?", "s:[a-m]*", "*"),
      fc.array(interludeArb, { minLength: 30, maxLength: 30, size: "max" }),
      // A small examination budget makes nodes answer short pages that cover less than the
      // others' (the frontier rule); the default budget never runs out on stores this small.
      fc.constantFrom(5, 13, 4096),
      (seed, names, count, match, interludes, scanExamineMax) => {
        const sim = new Simulation({
          seed,
          nodes: 5,
          network: defaultNetwork,
          node: { scanExamineMax },
        })
        const stable = names.map((n) => `s:${n}`)
        for (const key of stable) {
          const o = sim.call(sim.ids[0]!, { _tag: "Put", key, value: "v", context: null })
          assert.equal(o.result?._tag, "PutOk")
        }
        // Keys that are not live: deleted, and expired.
        sim.call(sim.ids[1]!, { _tag: "Put", key: "gone:deleted", value: "v", context: null })
        sim.call(sim.ids[1]!, { _tag: "Put", key: "gone:deleted", value: null, context: null })
        sim.call(sim.ids[2]!, {
          _tag: "Put",
          key: "gone:expired",
          value: "v",
          context: null,
          exp: sim.now + 1,
        })
        sim.runFor(10)
        let down: number | undefined
        const live = () => sim.ids.filter((id, i) => i !== down && sim.isUp(id))
        const got: Array<string> = []
        let after: string | undefined
        let pages = 0
        for (let step = 0; ; step++) {
          const op: ClientOp = {
            _tag: "Scan",
            count,
            ...(after === undefined ? {} : { after }),
            ...(match === undefined ? {} : { match }),
          }
          const nodes = live()
          const o = sim.call(nodes[step % nodes.length]!, op)
          if (o.result?._tag === "ScanOk") {
            pages++
            got.push(...o.result.keys)
            if (o.result.next === null) break
            after = o.result.next
          }
          assert.ok(pages < 10_000 && step < 20_000, "the scan never ended")
          const i = interludes[step % interludes.length]!
          switch (i._tag) {
            case "Join":
              if (sim.ids.length < 8 && down === undefined) {
                sim.addNode()
                seen.joinsDuring++
              }
              break
            case "Crash":
              if (down === undefined) {
                down = i.node
                sim.stop(sim.ids[down]!)
                seen.crashesDuring++
              }
              break
            case "Restart":
              if (down !== undefined) sim.restart(sim.ids[down]!)
              down = undefined
              break
            case "Churn": {
              const key = `churn:${i.n}`
              const nodes2 = live()
              sim.call(nodes2[i.n % nodes2.length]!, {
                _tag: "Put",
                key,
                value: i.n % 3 === 0 ? null : "v",
                context: null,
              })
              break
            }
            case "Wait":
              sim.runFor(i.ms)
              break
          }
        }
        const wanted = stable.filter((k) => match === undefined || Glob.matches(match, k))
        const counts = new Map<string, number>()
        for (const k of got) counts.set(k, (counts.get(k) ?? 0) + 1)
        for (const k of wanted) {
          assert.equal(counts.get(k) ?? 0, 1, `${k} came back ${counts.get(k) ?? 0} times`)
        }
        for (const k of got) {
          assert.ok(
            k.startsWith("s:") || k.startsWith("churn:"),
            `SCAN returned ${k}, which is not live`,
          )
          assert.ok(match === undefined || Glob.matches(match, k), `${k} does not match ${match}`)
        }
        assert.deepEqual(got, [...got].sort(), "keys come in byte order")
        seen.scans++
        seen.pages += pages
        seen.keysChecked += wanted.length
      },
    ),
    params(40),
  )
  assertFloors(seen, { keysChecked: 500, pages: 150, joinsDuring: 10, crashesDuring: 10 })
})

/** Reference: Redis's glob as a regular expression over the same byte string. */
const reference = (pattern: string, key: string): boolean => {
  let source = ""
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!
    if (c === "*") source += "[\\s\\S]*"
    else if (c === "?") source += "[\\s\\S]"
    else if (c === "\\" && i + 1 < pattern.length) source += literal(pattern[++i]!)
    else source += literal(c)
  }
  return new RegExp(`^${source}$`).test(key)
}

const literal = (c: string) => c.replace(/[.*+?^${}()|[\]\\/-]/g, "\\$&")

test("SCAN-2: the glob matcher agrees with a regular-expression reference on *, ? and escapes, and handles classes", () => {
  let positives = 0
  fc.assert(
    fc.property(
      fc.array(fc.constantFrom("a", "b", "*", "?", "\\*", "\\?", "x"), { maxLength: 8 }),
      fc.string({ unit: fc.constantFrom("a", "b", "x", "*", "?"), maxLength: 8 }),
      (parts, key) => {
        const pattern = parts.join("")
        const want = reference(pattern, key)
        assert.equal(Glob.matches(pattern, key), want, `${pattern} vs ${key}`)
        if (want) positives++
      },
    ),
    params(2000),
  )
  assertFloors({ positives }, { positives: 41 })
  const cases: ReadonlyArray<readonly [string, string, boolean]> = [
    ["h[ae]llo", "hello", true],
    ["h[ae]llo", "hillo", false],
    ["h[^e]llo", "hallo", true],
    ["h[^e]llo", "hello", false],
    ["h[a-b]llo", "hbllo", true],
    ["h[a-b]llo", "hcllo", false],
    ["*", "", true],
    ["a*", "", false],
    ["user:*:name", "user:42:name", true],
  ]
  for (const [pattern, key, want] of cases) assert.equal(Glob.matches(pattern, key), want, pattern)
})
