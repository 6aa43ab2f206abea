/**
 * DOC-1: the code references in the docs stay true. A reference is written `path:line` `name`
 * (docs/architecture.md walks a SET and a GET that way); the line must exist and mention the
 * name, so that moving code without fixing the walk fails here; `npm run docs:refs` rewrites
 * the line numbers after a move.
 */
import assert from "node:assert/strict"
import { readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { test } from "./helpers/test.ts"

const root = new URL("..", import.meta.url).pathname
const REF = /`((?:impl|spec|properties|bench)\/[\w/.-]+\.ts):(\d+)`\s+`(\w+)`/g

test("DOC-1: every `file:line` `name` reference in docs/ points at a line that mentions the name", () => {
  let checked = 0
  const broken: Array<string> = []
  for (const doc of readdirSync(join(root, "docs")).filter((f) => f.endsWith(".md"))) {
    const text = readFileSync(join(root, "docs", doc), "utf8")
    for (const m of text.matchAll(REF)) {
      const [, file, line, name] = m
      checked++
      let lines: Array<string>
      try {
        lines = readFileSync(join(root, file!), "utf8").split("\n")
      } catch {
        broken.push(`${doc}: ${file} does not exist`)
        continue
      }
      const at = lines[Number(line) - 1]
      if (at === undefined || !at.includes(name!)) {
        const found = lines.findIndex((l) => new RegExp(`\\b${name}\\b`).test(l))
        broken.push(
          `${doc}: ${file}:${line} does not mention ${name}` +
            (found >= 0 ? ` (first mention at line ${found + 1})` : ""),
        )
      }
    }
  }
  assert.ok(checked >= 10, `only ${checked} references found: the walk lost its references`)
  assert.deepEqual(broken, [])
})
