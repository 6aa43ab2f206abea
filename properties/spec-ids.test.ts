/**
 * The catalogue check: every invariant ID defined in spec/*.md is the prefix of at least one
 * property's name in properties/, and every ID a property names is defined in the spec.
 */
import assert from "node:assert/strict"
import { readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { test } from "node:test"

const root = new URL("..", import.meta.url).pathname
const files = (dir: string, suffix: string): Array<string> =>
  readdirSync(join(root, dir), { recursive: true })
    .map(String)
    .filter((f) => f.endsWith(suffix))
    .map((f) => join(root, dir, f))

const ID = /\b([A-Z]+(?:-[A-Z]+)*-\d+[a-z]?)\b/

const defined = new Set<string>()
for (const file of files("spec", ".md")) {
  for (const line of readFileSync(file, "utf8").split("\n")) {
    const m = /^###\s+([A-Z]+(?:-[A-Z]+)*-\d+[a-z]?):/.exec(line)
    if (m) defined.add(m[1]!)
  }
}

const checked = new Set<string>()
for (const file of files("properties", ".test.ts")) {
  const text = readFileSync(file, "utf8")
  for (const m of text.matchAll(/\btest\(\s*["'`]([^"'`]+)["'`]/g)) {
    const id = ID.exec(m[1]!.split(":")[0]!)
    if (id && m[1]!.startsWith(`${id[1]}:`)) checked.add(id[1]!)
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
