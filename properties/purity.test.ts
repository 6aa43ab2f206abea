/**
 * The pure core stays pure (PURE-1): nothing in impl/core touches the clock, randomness, timers,
 * the process, the file system or the network. That is what lets the same machines run under
 * fast-check, in the simulator and as real nodes.
 */
import assert from "node:assert/strict"
import { readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { test } from "./helpers/test.ts"

const core = new URL("../impl/core/", import.meta.url).pathname
const FORBIDDEN: ReadonlyArray<[RegExp, string]> = [
  [/from\s+["']node:/, "a node:* import"],
  [/from\s+["'](fs|net|os|path|crypto|child_process|timers)["']/, "a Node built-in import"],
  [/\bDate\.now\b|\bnew Date\b/, "the wall clock"],
  [/\bMath\.random\b/, "unseeded randomness"],
  [/\bset(Timeout|Interval|Immediate)\b/, "a real timer"],
  [/\bprocess\./, "the process"],
  [/\bperformance\.now\b/, "the wall clock"],
  [/\bEffect\.run(Sync|Promise|Fork)\b/, "the Effect runtime"],
]

test("PURE-1: impl/core imports no node:*, no clock, no randomness, no timers, no runtime", () => {
  const files = readdirSync(core).filter((f) => f.endsWith(".ts"))
  assert.ok(files.length > 5)
  const violations: Array<string> = []
  for (const file of files) {
    const lines = readFileSync(join(core, file), "utf8").split("\n")
    lines.forEach((line, i) => {
      if (/^\s*(\*|\/\/)/.test(line)) return // comments may name what the code must not use
      for (const [pattern, what] of FORBIDDEN) {
        if (pattern.test(line)) violations.push(`impl/core/${file}:${i + 1} uses ${what}`)
      }
    })
  }
  assert.deepEqual(violations, [])
})
