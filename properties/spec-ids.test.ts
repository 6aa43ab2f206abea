/**
 * The catalogue check: every invariant ID defined in spec/*.md heads the name of at least one
 * property in properties/ ("KV-2: …", or a list "CAUSAL-1, CAUSAL-2: …" for one property that
 * checks several), and every ID a property names is defined in the spec. Only declared tests
 * count: a name quoted in a comment or a skipped test does not (helpers/declared.ts).
 */
import assert from "node:assert/strict"
import { readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { declaredTests } from "./helpers/declared.ts"
import { test } from "./helpers/test.ts"

const root = new URL("..", import.meta.url).pathname
const files = (dir: string, suffix: string): Array<string> =>
  readdirSync(join(root, dir), { recursive: true })
    .map(String)
    .filter((f) => f.endsWith(suffix))
    .map((f) => join(root, dir, f))

const defined = new Set<string>()
for (const file of files("spec", ".md")) {
  for (const line of readFileSync(file, "utf8").split("\n")) {
    const m = /^###\s+([A-Z]+(?:-[A-Z]+)*-\d+[a-z]?):/.exec(line)
    if (m) defined.add(m[1]!)
  }
}

const checked = new Set<string>()
for (const file of files("properties", ".test.ts")) {
  // A test's name starts with the IDs it checks: "KV-2: …" or "CAUSAL-1, CAUSAL-2: …". A name
  // in a comment, or of a skipped test, checks nothing (helpers/declared.ts).
  for (const t of declaredTests(readFileSync(file, "utf8"))) {
    if (!t.skipped) for (const id of t.ids) checked.add(id)
  }
}

test("SPEC-1: every invariant in spec/ has a property that checks it", () => {
  assert.ok(defined.size > 0, "the catalogue defines invariants")
  const missing = [...defined].filter((id) => !checked.has(id)).sort()
  assert.deepEqual(missing, [], `invariants without a property: ${missing.join(", ")}`)
})

test("SPEC-2: every property names an invariant the spec defines", () => {
  const unknown = [...checked].filter((id) => !defined.has(id)).sort()
  assert.deepEqual(unknown, [], `properties naming undefined IDs: ${unknown.join(", ")}`)
})
