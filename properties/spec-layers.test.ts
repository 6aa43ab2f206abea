/**
 * SPEC-3: which layers check each invariant. A property checks an ID at one of three layers:
 *  - machine: it steps the real machine (`Node.step`/`Node.init`, one of the request
 *    coordinators `Get.step`/`Put.step` it runs, or the gossip machine `Membership.step`)
 *    directly, or explores it, or
 *    runs machines stepped directly in an order fast-check chooses (`Machines`,
 *    properties/helpers/machines.ts: no simulator);
 *  - sim: it runs the machines in the simulator (impl/sim) with faults;
 *  - cluster: it runs real node processes (properties/e2e-*.test.ts, `dht verify`).
 * A test's layer is read from its body (what it constructs), else from its file. Only declared
 * tests count: a name quoted in a comment, or a skipped test, checks nothing
 * (helpers/declared.ts). spec/layers.md is the table this computes (`LAYERS_UPDATE=1 node
 * --import tsx --test properties/spec-layers.test.ts` rewrites it), so the spec always says
 * which layers check which ID. Every safety ID (KV, with KV-9 the at-most-once invariant,
 * CAUSAL, DUR, REBAL, HINT, PART, RECLAIM) must be checked at all three, except where
 * spec/layers.md's gaps list gives the reason it is not (written by hand after the dash, kept
 * by the rewrite); a safety ID may never lose a layer, and a gap with no reason fails.
 */
import assert from "node:assert/strict"
import { readdirSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { declaredTests } from "./helpers/declared.ts"
import { test } from "./helpers/test.ts"

const root = new URL("..", import.meta.url).pathname
const SAFETY = /^(KV|CAUSAL|DUR|REBAL|HINT|PART|RECLAIM)-\d+$/
const LAYERS = ["machine", "sim", "cluster"] as const
type Layer = (typeof LAYERS)[number]

const layerOfText = (text: string): Layer | undefined =>
  /new Simulation\(|runSchedule\(|new ScheduleRun\(|\bsim\.(call|invoke|runFor)\(/.test(text)
    ? "sim"
    : /Node\.step\(|Node\.init\(|(Get|Put|Membership)\.step\(|explore\(|new Machines\(/.test(text)
      ? "machine"
      : undefined

/** ID -> layers, from every declared test of every suite that is not skipped. */
const computed = (): Map<string, Set<Layer>> => {
  const out = new Map<string, Set<Layer>>()
  const dir = join(root, "properties")
  for (const f of readdirSync(dir).filter((x) => x.endsWith(".test.ts"))) {
    const text = readFileSync(join(dir, f), "utf8")
    const fileLayer: Layer | undefined = f.startsWith("e2e") ? "cluster" : layerOfText(text)
    for (const t of declaredTests(text)) {
      if (t.skipped || t.ids.length === 0) continue
      const layer = f.startsWith("e2e") ? "cluster" : (layerOfText(t.body) ?? fileLayer)
      if (layer === undefined) continue
      for (const id of t.ids) {
        const s = out.get(id) ?? new Set<Layer>()
        s.add(layer)
        out.set(id, s)
      }
    }
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

/** A gap: the layers a safety ID misses, and the reason given for it (if any). */
interface Gap {
  readonly missing: ReadonlyArray<Layer>
  readonly reason: string | undefined
}

const GAPS_HEADER = "## Gaps"

/** The gaps a layers.md lists: "- ID: no machine, no sim — why". */
const gapsOf = (text: string): Map<string, Gap> => {
  const at = text.indexOf(GAPS_HEADER)
  if (at < 0) return new Map()
  return new Map(
    text
      .slice(at)
      .split("\n")
      .filter((l) => l.startsWith("- "))
      .map((l) => {
        const [what, ...why] = l.slice(2).split(" — ")
        const [id, rest] = what!.split(": ")
        const missing = (rest ?? "")
          .split(", ")
          .map((x) => x.replace(/^no /, "").trim())
          .filter((x): x is Layer => (LAYERS as ReadonlyArray<string>).includes(x))
        const reason = why.join(" — ").trim()
        return [id!, { missing, reason: reason === "" ? undefined : reason }] as const
      }),
  )
}

/** Each safety ID's missing layers now, with the reason the committed file gives, if it fits. */
const gapsNow = (
  table: Map<string, Set<Layer>>,
  ids: ReadonlyArray<string>,
  committed: ReadonlyMap<string, Gap>,
): Map<string, Gap> =>
  new Map(
    [...ids]
      .filter((id) => SAFETY.test(id))
      .sort(byId)
      .flatMap((id) => {
        const missing = LAYERS.filter((l) => !table.get(id)?.has(l))
        if (missing.length === 0) return []
        const before = committed.get(id)
        // A reason covers the layers it was written for: a newly missing layer needs a new one.
        const covered = before !== undefined && missing.every((l) => before.missing.includes(l))
        return [[id, { missing, reason: covered ? before.reason : undefined }] as const]
      }),
  )

const render = (
  table: Map<string, Set<Layer>>,
  ids: ReadonlyArray<string>,
  gaps: ReadonlyMap<string, Gap>,
): string => {
  const rows = [...ids].sort(byId).map((id) => {
    const s = table.get(id) ?? new Set()
    const cells = LAYERS.map((l) => (s.has(l) ? "yes" : ""))
    return `| ${id} | ${cells.join(" | ")} |`
  })
  const lines = [...gaps].map(
    ([id, g]) =>
      `- ${id}: no ${g.missing.join(", no ")}${g.reason === undefined ? "" : ` — ${g.reason}`}`,
  )
  return [
    "# Which layers check each invariant",
    "",
    "Computed by properties/spec-layers.test.ts (SPEC-3) from the properties' names and bodies;",
    "rewrite with `LAYERS_UPDATE=1 node --import tsx --test properties/spec-layers.test.ts`.",
    "machine: the real machine (or one of its request coordinators, or its gossip machine) stepped directly (or",
    "explored, or several machines stepped directly in an order fast-check chooses); sim: the",
    "simulator with faults; cluster: real",
    "node processes (end-to-end suites, `dht verify`). A name in a comment or a skipped test",
    "counts for nothing.",
    "",
    "| ID | machine | sim | cluster |",
    "| --- | --- | --- | --- |",
    ...rows,
    "",
    GAPS_HEADER,
    "",
    "Every safety invariant (KV, with KV-9 the at-most-once invariant, CAUSAL, DUR, REBAL, HINT,",
    "PART, RECLAIM) is checked at all three layers, except those listed here, each with the",
    "reason, written by hand after the dash (the rewrite keeps it). SPEC-3 fails when a safety",
    "ID loses a layer, or misses one with no reason given.",
    "",
    ...(lines.length === 0 ? ["None."] : lines),
    "",
  ].join("\n")
}

test("SPEC-3: spec/layers.md says which layers check each invariant; every safety invariant is checked at all three, or the file says why not, and none loses a layer", () => {
  const table = computed()
  const ids = defined()
  const file = join(root, "spec", "layers.md")
  const before = readFileSync(file, "utf8")
  const committed = gapsOf(before)
  const now = gapsNow(table, ids, committed)
  const text = render(table, ids, now)
  if (process.env.LAYERS_UPDATE === "1") writeFileSync(file, text)
  const lost = [...now].flatMap(([id, gap]) =>
    gap.missing
      .filter((layer) => !(committed.get(id)?.missing.includes(layer) ?? false))
      .map((layer) => `${id} no longer checked at the ${layer} layer`),
  )
  assert.deepEqual(lost, [], `safety invariants lost a layer: ${lost.join("; ")}`)
  const unexplained = [...now]
    .filter(([, gap]) => gap.reason === undefined)
    .map(([id, gap]) => `${id} (no ${gap.missing.join(", no ")})`)
  assert.deepEqual(
    unexplained,
    [],
    `safety invariants missing a layer with no reason in spec/layers.md: ${unexplained.join("; ")}`,
  )
  assert.equal(
    readFileSync(file, "utf8"),
    text,
    "spec/layers.md is out of date: rewrite it with LAYERS_UPDATE=1 (see the file's header)",
  )
  const full = ids.filter((id) => SAFETY.test(id) && LAYERS.every((l) => table.get(id)?.has(l)))
  const safety = ids.filter((id) => SAFETY.test(id)).length
  console.log(
    `# SPEC-3: ${full.length} of ${safety} safety IDs checked at all three layers; ${now.size} gaps, each with its reason`,
  )
})

test("SPEC-1, SPEC-3: only declared tests count, each with its own body: a name quoted in a comment, a skipped test, a test in a skipped describe and a helper defined after a test count for nothing", () => {
  // The markers are spelled in pieces, so that this test's own body shows none of them.
  const [step, sim, exp] = ["Node" + ".step(", "new " + "Simulation(", "explore" + "("]
  // Spelled in pieces, like the calls above, so that no scanner of the repository mistakes
  // these fixtures for skipped tests.
  const [skip, todo] = ["sk" + "ip", "to" + "do"]
  const text = [
    '// test("KV-1: quoted in a comment", () => {})',
    ' * test("KV-2: quoted in a doc comment", () => {})',
    'test("KV-3: declared", () => {',
    `  ${step}state, event, store)`,
    "})",
    `const helper = () => ${sim}{})`,
    `test("KV-4: skipped", { ${skip}: true }, () => ${sim}{}))`,
    `test.${skip}("KV-5: skipped too", () => {})`,
    `describe("a block", { ${todo}: "later" }, () => {`,
    '  test("KV-6: inside a skipped describe", () => {})',
    "})",
    `test("KV-7, KV-8: after the block", () => ${exp}scope))`,
  ].join("\n")
  const got = declaredTests(text).map((t) => [t.ids.join(), t.skipped, layerOfText(t.body) ?? ""])
  assert.deepEqual(got, [
    ["KV-3", false, "machine"],
    ["KV-4", true, "sim"],
    ["KV-6", true, ""],
    ["KV-7,KV-8", false, "machine"],
  ])
})
