/**
 * REPLAY-1: a failing property prints the command that replays just that property: its file,
 * a --test-name-pattern that matches only its test, and the failing case's seed and path.
 */
import assert from "node:assert/strict"
import fc from "fast-check"
import { params } from "./helpers/fc.ts"
import { test } from "./helpers/test.ts"

test("REPLAY-1: a failing property prints the command that replays just that property (file, test name, seed and path)", () => {
  let message = ""
  try {
    fc.assert(
      fc.property(fc.nat(100), (n) => n < 50),
      params(200, { seed: 42 }),
    )
  } catch (e) {
    message = String((e as Error).message)
  }
  assert.match(message, /Counterexample/, "fast-check's own report comes first")
  const line = message.split("\n").find((l) => l.includes("node --import tsx --test")) ?? ""
  assert.match(line, /^\s*FC_SEED=42 FC_PATH='[0-9:]+' node --import tsx --test /)
  assert.ok(line.endsWith(" properties/replay.test.ts"), `names the file: ${line}`)
  const pattern = /--test-name-pattern='\^(.*)\$'/.exec(line)?.[1]
  assert.ok(pattern !== undefined, `names the test: ${line}`)
  const name =
    "REPLAY-1: a failing property prints the command that replays just that property (file, test name, seed and path)"
  assert.ok(new RegExp(`^${pattern}$`).test(name), "the pattern matches this test")
  assert.ok(!new RegExp(`^${pattern}$`).test(`${name} and more`), "and only this test")
})
