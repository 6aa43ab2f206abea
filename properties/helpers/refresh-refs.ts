/**
 * Rewrite the `path:line` `name` references in docs/*.md (DOC-1) to the line where `name` is
 * now defined (else first mentioned): `npm run docs:refs` after moving code.
 */
import { readdirSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"

const root = new URL("../..", import.meta.url).pathname
const REF = /`((?:impl|spec|properties|bench)\/[\w/.-]+\.ts):(\d+)`(\s+)`(\w+)`/g

for (const doc of readdirSync(join(root, "docs")).filter((f) => f.endsWith(".md"))) {
  const path = join(root, "docs", doc)
  const text = readFileSync(path, "utf8")
  const next = text.replace(REF, (whole, file: string, line: string, gap: string, name: string) => {
    let lines: Array<string>
    try {
      lines = readFileSync(join(root, file), "utf8").split("\n")
    } catch {
      return whole
    }
    if (lines[Number(line) - 1]?.includes(name)) return whole
    const def = new RegExp(
      `(const|function|class|interface|type|private|public)\\s+${name}\\b|^\\s*${name}\\s*[(=:]`,
    )
    let at = lines.findIndex((l) => def.test(l))
    if (at < 0) at = lines.findIndex((l) => new RegExp(`\\b${name}\\b`).test(l))
    return at < 0 ? whole : `\`${file}:${at + 1}\`${gap}\`${name}\``
  })
  if (next !== text) {
    writeFileSync(path, next)
    console.log(`updated ${doc}`)
  }
}
