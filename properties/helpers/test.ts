/**
 * node:test, with the name and file of the test being run kept at hand, so that a failing
 * property can print the command that replays just that property (properties/helpers/fc.ts).
 * Suites import `test` (and `after`, `before`, `describe`) from here instead of node:test.
 *
 * Tests of one file run one at a time (node:test's default within a file), so one "current
 * test" per process is exact.
 */
import { after, before, describe, test as nodeTest } from "node:test"

export { after, before, describe }

/** The test whose body is running, and the file that declared it (relative to the root). */
export let running: { readonly name: string; readonly file: string } | undefined

const root = new URL("../..", import.meta.url).pathname

/** The test file that called `test` (the first stack frame under properties/ ending .test.ts). */
const callerFile = (): string => {
  const stack = new Error().stack ?? ""
  const m = /(?:file:\/\/)?(\/[^\s:()]+\.test\.ts)/.exec(stack)
  const file = m?.[1] ?? "properties/<file>.test.ts"
  return file.startsWith(root) ? file.slice(root.length) : file
}

const wrapped = (name: string, ...rest: Array<any>) => {
  const file = callerFile()
  const at = rest.findIndex((x) => typeof x === "function")
  if (at >= 0) {
    const fn = rest[at]
    rest[at] = function (this: unknown, ...args: Array<any>) {
      running = { name, file }
      return fn.apply(this, args)
    }
  }
  return nodeTest(name, ...rest)
}

/** node:test's `test`, its helpers (`test.after` and the rest) included. */
export const test = Object.assign(wrapped, nodeTest) as typeof nodeTest
