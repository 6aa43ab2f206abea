/**
 * SPEC-3: which layers check each invariant. A property checks an ID at one of three layers:
 *  - machine: it steps the real machine (`Node.step`/`Node.init`) directly, or explores it, or
 *    runs machines stepped directly in an order fast-check chooses (`new Machines(`,
 *    properties/helpers/machines.ts: no simulator);
 *  - sim: it runs the machines in the simulator (impl/sim) with faults;
 *  - cluster: it runs real node processes (properties/e2e-*.test.ts, `dht verify`).
 * A test's layer is read from its body (what it constructs), else from its file. spec/layers.md
 * is the table this computes (`LAYERS_UPDATE=1 node --import tsx --test
 * properties/spec-layers.test.ts` rewrites it), so the spec always says which layers check
 * which ID. Every safety ID (KV, CAUSAL, DUR, REBAL, HINT, PART, RECLAIM) must be checked at
 * all three, except the gaps listed in spec/layers.md, which may only shrink.
 */
import assert from "node:assert/strict"
import { readdirSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { test } from "./helpers/test.ts"

const root = new URL("..", import.meta.url).pathname
const ID = /^[A-Z]+(?:-[A-Z]+)*-\d+[a-z]?$/
const SAFETY = /^(KV|CAUSAL|DUR|REBAL|HINT|PART|RECLAIM)-\d+$/
const LAYERS = ["machine", "sim", "cluster"] as const
type Layer = (typeof LAYERS)[number]

const layerOfText = (text: string): Layer | undefined =>
  /new Simulation\(|runSchedule\(|new ScheduleRun\(|\bsim\.(call|invoke|runFor)\(/.test(text)
    ? "sim"
    : /Node\.step\(|Node\.init\(|explore\(|new Machines\(/.test(text)
      ? "machine"
      : undefined

/** ID -> layers, from every test of every suite. */
const computed = (): Map<string, Set<Layer>> => {
  const out = new Map<string, Set<Layer>>()
  const dir = join(root, "properties")
  for (const f of readdirSync(dir).filter((x) => x.endsWith(".test.ts"))) {
    const text = readFileSync(join(dir, f), "utf8")
    const fileLayer: Layer | undefined = f.startsWith("e2e") ? "cluster" : layerOfText(text)
    const starts = [...text.matchAll(/\btest\(\s*["'`]([^"'`]+)["'`]/g)]
    starts.forEach((m, i) => {
      const head = m[1]!.split(":")[0]!
      const ids = head.split(",").map((x) => x.trim())
      if (!ids.every((id) => ID.test(id))) return
      const body = text.slice(m.index, starts[i + 1]?.index ?? text.length)
      const layer = f.startsWith("e2e") ? "cluster" : (layerOfText(body) ?? fileLayer)
      if (layer === undefined) return
      for (const id of ids) {
        const s = out.get(id) ?? new Set<Layer>()
        s.add(layer)
        out.set(id, s)
      }
    })
  }
  return out
}

const defined = (): Array<string> => {
  const ids: Array<string> = []
  for (const f of readdirSync(join(root, "spec")).filter((x) => x.endsWith(".md"))) {
    for (const line of readFileSync(join(root, "spec", f), "utf8").split("\n")) {
      const m = /^###\s+([A-Z]+(?:-[A-Z]+)*-\d+[a-z]?):/.exec(line)
      if (m) ids.push(m[1]!)
    }
  }
  return ids
}

const byId = (a: string, b: string): number => {
  const [pa, na] = [a.replace(/-\d+.*$/, ""), Number(/-(\d+)/.exec(a)?.[1])]
  const [pb, nb] = [b.replace(/-\d+.*$/, ""), Number(/-(\d+)/.exec(b)?.[1])]
  return pa < pb ? -1 : pa > pb ? 1 : na - nb
}

const render = (table: Map<string, Set<Layer>>, ids: ReadonlyArray<string>): string => {
  const rows = [...ids].sort(byId).map((id) => {
    const s = table.get(id) ?? new Set()
    const cells = LAYERS.map((l) => (s.has(l) ? "yes" : ""))
    return `| ${id} | ${cells.join(" | ")} |`
  })
  const gaps = [...ids]
    .filter((id) => SAFETY.test(id))
    .sort(byId)
    .flatMap((id) => {
      const missing = LAYERS.filter((l) => !table.get(id)?.has(l))
      return missing.length === 0 ? [] : [`- ${id}: no ${missing.join(", no ")}`]
    })
  return [
    "# Which layers check each invariant",
    "",
    "Computed by properties/spec-layers.test.ts (SPEC-3) from the properties' names and bodies;",
    "rewrite with `LAYERS_UPDATE=1 node --import tsx --test properties/spec-layers.test.ts`.",
    "machine: the real machine stepped directly (or explored); sim: the simulator with faults;",
    "cluster: real node processes (end-to-end suites, `dht verify`).",
    "",
    "| ID | machine | sim | cluster |",
    "| --- | --- | --- | --- |",
    ...rows,
    "",
    "## Gaps",
    "",
    "Safety invariants (KV, CAUSAL, DUR, REBAL, HINT, PART, RECLAIM) not yet checked at every",
    "layer. The list may only shrink: SPEC-3 fails when a safety ID loses a layer.",
    "",
    ...(gaps.length === 0 ? ["None."] : gaps),
    "",
  ].join("\n")
}

test("SPEC-3: spec/layers.md says which layers check each invariant, and safety invariants lose no layer", () => {
  const table = computed()
  const ids = defined()
  const text = render(table, ids)
  const file = join(root, "spec", "layers.md")
  if (process.env.LAYERS_UPDATE === "1") writeFileSync(file, text)
  const committed = readFileSync(file, "utf8")
  /** ID -> the layers its gap line says it misses. */
  const gapsOf = (t: string): Map<string, Set<string>> =>
    new Map(
      t
        .slice(t.indexOf("## Gaps"))
        .split("\n")
        .filter((l) => l.startsWith("- "))
        .map((l) => {
          const [id, rest] = l.slice(2).split(": ")
          return [id!, new Set((rest ?? "").split(", ").map((x) => x.replace(/^no /, "")))]
        }),
    )
  const now = gapsOf(text)
  const before = gapsOf(committed)
  const lost = [...now].flatMap(([id, missing]) =>
    [...missing]
      .filter((layer) => !(before.get(id)?.has(layer) ?? false))
      .map((layer) => `${id} no longer checked at the ${layer} layer`),
  )
  assert.deepEqual(lost, [], `safety invariants lost a layer: ${lost.join("; ")}`)
  assert.equal(
    committed,
    text,
    "spec/layers.md is out of date: rewrite it with LAYERS_UPDATE=1 (see the file's header)",
  )
  const full = ids.filter((id) => SAFETY.test(id) && LAYERS.every((l) => table.get(id)?.has(l)))
  console.log(`# SPEC-3: ${full.length} safety IDs checked at all three layers; ${now.size} gaps`)
})
