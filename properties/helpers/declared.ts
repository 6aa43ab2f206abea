/**
 * The tests a suite declares, as the catalogue checks count them (SPEC-1, SPEC-2, SPEC-3): a
 * `test(` call that starts a line — so not one quoted in a comment — whose name is a string
 * literal; the IDs heading its name ("KV-2: …", "CAUSAL-1, CAUSAL-2: …"); its body, the text of
 * the call itself, to its closing parenthesis (so a helper defined after it is not its body).
 * A skipped test does not count: the skip and todo variants of `test` are not `test(`, and a
 * test with a skip or todo option, or inside a `describe` that has one (or is its skip or todo
 * variant), is marked skipped.
 */

export interface Declared {
  readonly name: string
  /** The IDs heading the name; empty when the head is not a list of IDs. */
  readonly ids: ReadonlyArray<string>
  readonly body: string
  readonly skipped: boolean
}

const ID = /^[A-Z]+(?:-[A-Z]+)*-\d+[a-z]?$/

/** A call's options, between its name and its callback: does it say skip or todo? */
const skips = (head: string): boolean => /\b(skip|todo)\s*:/.test(head)

/** Each `describe` call's extent, and whether it is skipped. */
const describes = (
  text: string,
): Array<{ readonly at: number; readonly end: number; readonly skipped: boolean }> =>
  [...text.matchAll(/^[ \t]*describe(\.skip|\.todo)?\(/gm)].map((m) => {
    const rest = text.slice(m.index, m.index + 400)
    const head = rest.slice(0, Math.max(0, rest.search(/=>|function\b/)))
    const end = callEnd(text, text.indexOf("(", m.index))
    return { at: m.index, end, skipped: m[1] !== undefined || skips(head) }
  })

/**
 * Where the call whose `(` is at `open` ends: the index after its matching `)`, skipping
 * strings, template literals, comments and escaped characters (enough for test files).
 */
export const callEnd = (text: string, open: number): number => {
  let depth = 0
  for (let i = open; i < text.length; i++) {
    const c = text[i]!
    if (c === "\\") {
      i++
    } else if (c === '"' || c === "'" || c === "`") {
      for (i++; i < text.length && text[i] !== c; i++) if (text[i] === "\\") i++
    } else if (c === "/" && text[i + 1] === "/") {
      while (i < text.length && text[i] !== "\n") i++
    } else if (c === "/" && text[i + 1] === "*") {
      i = text.indexOf("*/", i + 2)
      if (i < 0) return text.length
      i++
    } else if (c === "(") {
      depth++
    } else if (c === ")") {
      depth--
      if (depth === 0) return i + 1
    }
  }
  return text.length
}

export const declaredTests = (text: string): Array<Declared> => {
  const starts = [...text.matchAll(/^[ \t]*test\(\s*["'`]([^"'`]+)["'`]/gm)]
  const blocks = describes(text)
  return starts.map((m, i) => {
    const name = m[1]!
    const open = text.indexOf("(", m.index)
    const body = text.slice(
      m.index,
      Math.min(callEnd(text, open), starts[i + 1]?.index ?? text.length),
    )
    const afterName = body.slice(m[0].length)
    const head = afterName.slice(0, Math.max(0, afterName.search(/=>|function\b/)))
    const inSkipped = blocks.some((d) => d.skipped && d.at < m.index && m.index < d.end)
    const ids = name
      .split(":")[0]!
      .split(",")
      .map((x) => x.trim())
    return {
      name,
      ids: ids.every((id) => ID.test(id)) ? ids : [],
      body,
      skipped: skips(head) || inSkipped,
    }
  })
}
