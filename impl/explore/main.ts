/**
 * `npm run explore [-- --config small|large] [--broken-quorum | --broken-claims]
 * [--strategy dfs|bfs] [--max-states N]`: exhaustive small-scope exploration of the real node
 * machine (impl/explore/explore.ts). Runs every scope of the configuration, prints each scope and
 * a table of what was explored and, on a violation, the trace of transitions that reached it
 * (exit 1).
 */
import {
  brokenClaims,
  brokenQuorum,
  describeScope,
  explore,
  type Report,
  type Scope,
  scopes,
} from "./explore.ts"

const usage =
  "usage: npm run explore -- [--config small|large] [--broken-quorum | --broken-claims] " +
  "[--strategy dfs|bfs] [--max-states N]"

const args = process.argv.slice(2)
let config = "small"
let broken = false
let claims = false
let strategy: string | undefined
let maxStates: number | undefined
for (let i = 0; i < args.length; i++) {
  const a = args[i]!
  const value = (): string => {
    const v = args[++i]
    if (v === undefined) {
      console.error(`${a} needs a value\n${usage}`)
      process.exit(2)
    }
    return v
  }
  if (a === "--config") config = value()
  else if (a.startsWith("--config=")) config = a.slice("--config=".length)
  else if (a === "--broken-quorum") broken = true
  else if (a === "--broken-claims") claims = true
  else if (a === "--strategy") strategy = value()
  else if (a === "--max-states") maxStates = Number(value())
  else if (a === "--help" || a === "-h") {
    console.log(usage)
    process.exit(0)
  } else {
    console.error(`unknown argument ${a}\n${usage}`)
    process.exit(2)
  }
}
const chosen = scopes[config]
if (
  chosen === undefined ||
  (strategy !== undefined && strategy !== "dfs" && strategy !== "bfs") ||
  (maxStates !== undefined && !(Number.isInteger(maxStates) && maxStates > 0))
) {
  console.error(usage)
  process.exit(2)
}
// A counterexample is easiest to read when it is shortest: breadth first finds that one.
const how: "dfs" | "bfs" =
  (strategy as "dfs" | "bfs" | undefined) ?? (broken || claims ? "bfs" : "dfs")

const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)} s`
const count = (n: number): string => n.toLocaleString("en")

console.log(
  `exhaustive exploration of the node machine (Node.step), configuration "${config}"` +
    `${broken ? ", BROKEN QUORUM (test-only: the nodes run R=1, the checker assumes R=2)" : ""}` +
    `${claims ? ", BROKEN CLAIMS (test-only: unsafeFailover, forwarded writes run ungranted)" : ""}`,
)
console.log(`search: ${how === "dfs" ? "depth first" : "breadth first"}, state hashing`)

const rows: Array<ReadonlyArray<string>> = []
let failed: { readonly scope: Scope; readonly report: Report } | undefined
for (const base of chosen) {
  let scope = broken ? brokenQuorum(base) : base
  if (claims) scope = brokenClaims(scope)
  if (maxStates !== undefined) scope = { ...scope, maxStates }
  console.log("")
  console.log(`scope "${scope.name}":`)
  for (const line of describeScope(scope)) console.log(`  ${line}`)
  const progress = (r: Omit<Report, "violation">): void => {
    process.stderr.write(
      `  … ${count(r.explored)} states, ${count(r.transitions)} transitions, ${seconds(r.ms)}\n`,
    )
  }
  const report = explore(scope, { strategy: how, progress })
  rows.push([
    base.name,
    count(report.explored),
    count(report.distinct),
    count(report.transitions),
    count(report.terminal),
    String(report.maxDepth),
    [
      report.checked.superseded,
      report.checked.siblings,
      report.checked.quiescent,
      report.checked.purges,
    ]
      .map(count)
      .join(" / "),
    `${seconds(report.ms)} (CPU ${seconds(report.cpuMs)})`,
    report.violation !== undefined
      ? "stopped at the violation"
      : report.budgetHit
        ? `HIT at ${count(scope.maxStates)}`
        : "exhaustive",
    report.violation === undefined ? "0" : `1 (${report.violation.id})`,
  ])
  if (report.violation !== undefined) {
    failed = { scope, report }
    break
  }
}

const header = [
  "scope",
  "states explored",
  "distinct states",
  "transitions",
  "final states",
  "max depth",
  "judged (C-3 / C-5 / C-6 / purges)",
  "time",
  "state budget",
  "violations",
]
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)))
const line = (cells: ReadonlyArray<string>): string =>
  `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(" | ")} |`
console.log("")
console.log(line(header))
console.log(line(widths.map((w) => "-".repeat(w))))
for (const r of rows) console.log(line(r))
if (rows.length > 1) {
  const total = (f: (r: ReadonlyArray<string>) => string): string =>
    count(rows.reduce((k, r) => k + Number(f(r).replace(/,/g, "")), 0))
  console.log(
    line([
      "total",
      total((r) => r[1]!),
      total((r) => r[2]!),
      total((r) => r[3]!),
      total((r) => r[4]!),
      "",
      "",
      "",
      "",
      failed === undefined ? "0" : "1",
    ]),
  )
}
console.log("")
console.log(
  "final states: every client finished (the final CAUSAL-1 check runs there); judged: reads " +
    "after an acknowledged superseding write (CAUSAL-3), reads with siblings (CAUSAL-5), " +
    "quiescent states whose replicas were compared (CAUSAL-6), reads that purged a tombstone " +
    "(CAUSAL-8); time: wall clock, and the CPU " +
    "time of this process (the machine may be shared)",
)

if (failed !== undefined) {
  const v = failed.report.violation!
  console.log("")
  console.log(`VIOLATION of ${v.id} in scope "${failed.scope.name}": ${v.message}`)
  const steps = v.trace.filter((l) => !l.startsWith(" ")).length
  console.log(`counterexample (${steps} transitions):`)
  let n = 0
  for (const l of v.trace) console.log(l.startsWith(" ") ? `      ${l.trim()}` : `  ${++n}. ${l}`)
  process.exit(1)
}
