/**
 * Chord at scale in the deterministic simulator (impl/sim/chord-sim.ts), reproducing section 6
 * of Stoica et al. (SIGCOMM 2001): path length against N, lookups after mass failure (with and
 * without replication), lookups under continuous churn, and the cost of a join.
 *
 *   npx tsx impl/cli/sim-chord.ts [--nodes 131072] [--seed 1] [--lookups 10000]
 *                                 [--experiment path|failure|churn|joins|all] [--out r.json]
 *                                 [--svg docs/chord-path-length.svg]
 *                                 [--churn-paper] [--churn-runs 10] [--churn-fingers one|all]
 *
 * The churn table counts failed lookups two ways: ours (a lookup that meets a dead node routes
 * around it) and the paper's (section 6.5: a query sent to a dead node fails the lookup).
 * --churn-paper also maintains fingers as the paper's simulator did (all of them at every
 * stabilization) and averages 10 independent runs.
 *
 * Tables go to stdout, progress to stderr, results (everything the tables show, and more) to
 * the --out JSON. A run is a pure function of its flags: the same flags give the same numbers.
 * See docs/chord.md for what each experiment measures and how it compares with the paper.
 */
import { writeFileSync } from "node:fs"
import { pathToFileURL } from "node:url"
import * as Chord from "../core/chord.ts"
import * as Sim from "../sim/chord-sim.ts"
import { bool, type CommandSpec, num, str, usageError, withParsed } from "./args.ts"
import { pathLengthSvg } from "./plot-svg.ts"
import * as Progress from "./progress.ts"
import { table } from "./table.ts"

const EXPERIMENTS = ["path", "failure", "churn", "joins"] as const
type Experiment = (typeof EXPERIMENTS)[number]

export const spec: CommandSpec = {
  name: "sim-chord",
  summary: "Chord routing at scale in the deterministic simulator (paper section 6)",
  usage: "npx tsx impl/cli/sim-chord.ts [options]",
  flags: [
    {
      name: "nodes",
      kind: "int",
      value: "N",
      default: "131072",
      help: "Largest ring: sizes 2^10, 2^11 … up to N",
    },
    { name: "seed", kind: "int", default: "1", help: "Seed of every random choice" },
    {
      name: "lookups",
      kind: "int",
      default: "10000",
      help: "Lookups per ring size (path) and per phase (failure)",
    },
    {
      name: "experiment",
      kind: "string",
      value: "NAME",
      default: "all",
      help: "path | failure | churn | joins | all (comma-separated list allowed)",
    },
    { name: "out", kind: "string", value: "FILE", help: "Write all results as JSON" },
    { name: "svg", kind: "string", value: "FILE", help: "Write the path-length plot (needs path)" },
    {
      name: "failure-nodes",
      kind: "int",
      value: "N",
      default: "10000",
      help: "Ring size of the failure experiment (capped by --nodes)",
    },
    {
      name: "churn-nodes",
      kind: "int",
      value: "N",
      default: "500",
      help: "Ring size of the churn experiment",
    },
    {
      name: "churn-rounds",
      kind: "int",
      value: "R",
      default: "120",
      help: "Stabilization rounds (30 s each) per churn rate",
    },
    {
      name: "churn-rates",
      kind: "string",
      value: "LIST",
      default: "0.333,0.5,1,2,3",
      help: "Joins and failures per round",
    },
    {
      name: "churn-runs",
      kind: "int",
      value: "K",
      default: "1; 10 with --churn-paper",
      help: "Independent churn runs (seeds seed … seed+K-1); failed fractions get a 95% interval",
    },
    {
      name: "churn-fingers",
      kind: "string",
      value: "one|all",
      default: "one; all with --churn-paper",
      help: "Finger upkeep in churn: the machine's one lookup per tick, or all set true at each tick",
    },
    {
      name: "churn-paper",
      kind: "bool",
      help: "The paper's section 6.5 setting: --churn-fingers all, Poisson lookups, 10 runs",
    },
    {
      name: "joins",
      kind: "int",
      value: "J",
      default: "50",
      help: "Joins measured per ring size (joins)",
    },
    {
      name: "join-nodes-max",
      kind: "int",
      value: "N",
      default: "32768",
      help: "Largest ring of the joins experiment",
    },
  ],
  examples: [
    "npx tsx impl/cli/sim-chord.ts",
    "npx tsx impl/cli/sim-chord.ts --nodes 100000 --experiment path --lookups 20000",
    "npx tsx impl/cli/sim-chord.ts --experiment failure,churn --out /tmp/chord.json",
    "npx tsx impl/cli/sim-chord.ts --experiment churn --churn-paper",
  ],
  notes: [
    "Rings of every size start converged (built from the omniscient model, as in the paper);",
    "lookups, joins, failures, churn and stabilization all run as real protocol messages.",
  ],
}

/** Ring sizes: powers of two from 2^10 up to `nodes`, plus `nodes` itself if it is not one. */
export const sizesUpTo = (nodes: number): Array<number> => {
  if (nodes <= 1024) return [nodes]
  const sizes: Array<number> = []
  for (let n = 1024; n <= nodes; n *= 2) sizes.push(n)
  if (sizes[sizes.length - 1] !== nodes) sizes.push(nodes)
  return sizes
}

const pct = (x: number, digits = 2): string =>
  Number.isNaN(x) ? "-" : `${(x * 100).toFixed(digits)}%`
const f = (x: number, digits = 2): string => (Number.isNaN(x) ? "-" : x.toFixed(digits))

const withProgress = <T>(label: string, run: (p: Sim.ProgressFn) => T): T => {
  const bar = Progress.start(label, 1)
  const result = run((done, total) => bar.update(total > 0 ? done / total : 1))
  bar.finish()
  return result
}

const runPath = (sizes: ReadonlyArray<number>, lookups: number, seed: number) => {
  const results = sizes.map((nodes) =>
    withProgress(`path N=${nodes}`, (p) => Sim.pathLength({ nodes, lookups, seed }, p)),
  )
  console.log("\nPath length (section 6.3): hops of an iterative lookup on a converged ring")
  console.log(
    table(
      [
        "N",
        "lookups",
        "mean",
        "1st pct",
        "99th pct",
        "max",
        "½·log2 N",
        "mean vs ½·log2 N",
        "wrong",
      ],
      results.map((r) => [
        String(r.nodes),
        String(r.lookups),
        f(r.mean, 3),
        String(r.p1),
        String(r.p99),
        String(r.max),
        f(r.halfLog2N, 2),
        `${r.mean >= r.halfLog2N ? "+" : ""}${pct(r.mean / r.halfLog2N - 1, 1)}`,
        String(r.wrong),
      ]),
    ),
  )
  return results
}

const runFailure = (nodes: number, lookups: number, seed: number) => {
  const fractions = [0.1, 0.2, 0.3, 0.4, 0.5]
  const rows = withProgress(`failure N=${nodes}`, (p) =>
    Sim.massFailure({ nodes, lookups, seed, fractions }, p),
  )
  const r = Sim.successorListFor(nodes)
  console.log(
    `\nSimultaneous failures (section 6.4): N=${nodes}, r=${r}, ${lookups} lookups per phase; ` +
      "failed = did not reach a live replica",
  )
  console.log(
    table(
      [
        "p",
        "N=1 now",
        "N=1 stab.",
        "≈ p",
        "N=3 now",
        "N=3 stab.",
        "≈ p^3",
        "routing fail now",
        "timeouts/lookup now",
        "rounds to stabilize",
      ],
      rows.map((row) => [
        f(row.fraction, 1),
        pct(row.immediate.failed1),
        pct(row.afterStabilization.failed1),
        pct(row.fraction, 1),
        pct(row.immediate.failed3),
        pct(row.afterStabilization.failed3),
        pct(row.fraction ** 3, 1),
        pct(row.immediate.routingFailed),
        f(row.immediate.meanTimeouts),
        `${row.stabilizationRounds}${row.converged ? "" : " (not converged)"}`,
      ]),
    ),
  )
  return { nodes, successorListLength: r, lookupsPerPhase: lookups, rows }
}

/** Two-sided 95 % quantiles of Student's t for 1 … 30 degrees of freedom (then ≈ normal). */
const T975 = [
  12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.16, 2.145,
  2.131, 2.12, 2.11, 2.101, 2.093, 2.086, 2.08, 2.074, 2.069, 2.064, 2.06, 2.056, 2.052, 2.048,
  2.045, 2.042,
]

/** Mean of per-run values and the half-width of its 95 % confidence interval (NaN for one run). */
const estimate = (xs: ReadonlyArray<number>): { mean: number; ci95: number } => {
  const n = xs.length
  const m = xs.reduce((a, b) => a + b, 0) / n
  if (n < 2) return { mean: m, ci95: Number.NaN }
  const variance = xs.reduce((a, x) => a + (x - m) ** 2, 0) / (n - 1)
  return { mean: m, ci95: (T975[n - 2] ?? 1.96) * Math.sqrt(variance / n) }
}

const pctCi = (e: { mean: number; ci95: number }): string =>
  Number.isNaN(e.ci95) ? pct(e.mean) : `${pct(e.mean)} ± ${pct(e.ci95)}`

interface ChurnOptions {
  readonly nodes: number
  readonly rounds: number
  readonly rates: ReadonlyArray<number>
  readonly seed: number
  readonly runs: number
  readonly fingers: Sim.ChurnFingers
  readonly arrivals: Sim.ChurnArrivals
}

const runChurn = (o: ChurnOptions) => {
  const perRun = Array.from({ length: o.runs }, (_, j) =>
    withProgress(`churn N=${o.nodes}${o.runs > 1 ? ` run ${j + 1}/${o.runs}` : ""}`, (p) =>
      Sim.churn(
        {
          nodes: o.nodes,
          seed: o.seed + j,
          rates: o.rates,
          rounds: o.rounds,
          fingers: o.fingers,
          arrivals: o.arrivals,
        },
        p,
      ),
    ),
  )
  const sum = (xs: ReadonlyArray<number>) => xs.reduce((a, b) => a + b, 0)
  const summary = o.rates.map((rate, ri) => {
    const rows = perRun.map((run) => run[ri]!)
    return {
      ratePerRound: rate,
      runs: rows.length,
      joins: sum(rows.map((r) => r.joins)),
      failures: sum(rows.map((r) => r.failures)),
      lookups: sum(rows.map((r) => r.lookups)),
      failed: estimate(rows.map((r) => r.failedFraction)),
      wrongOwner: sum(rows.map((r) => r.wrongOwner)),
      gaveUp: sum(rows.map((r) => r.gaveUp)),
      metDeadNode: sum(rows.map((r) => r.metDeadNode)),
      failedNoRetry: estimate(rows.map((r) => r.failedNoRetryFraction)),
      meanHops: estimate(rows.map((r) => r.meanHops)).mean,
      meanTimeouts: estimate(rows.map((r) => r.meanTimeouts)).mean,
    }
  })
  const interval = Chord.defaultConfig.stabilizeIntervalMs / 1000
  console.log(
    `\nLookups under churn (section 6.5): N≈${o.nodes}, ${o.runs} run(s) of ${o.rounds} rounds of ` +
      `${interval} s; lookups ${o.arrivals === "poisson" ? "Poisson, 1/s" : "one per second"}; ` +
      `fingers ${o.fingers === "all" ? "all set true at every tick (as the paper's simulator)" : "one lookup per tick"}`,
  )
  console.log(
    "failed = wrong owner or gave up (our lookups route around dead nodes); " +
      "no retry = also failed if any query went to a dead node (the paper's count)" +
      (o.runs > 1 ? "; ± = 95% interval over runs" : ""),
  )
  console.log(
    table(
      [
        "joins+fails per round",
        "per second",
        "joins",
        "failures",
        "lookups",
        "failed",
        "wrong owner",
        "gave up",
        "met dead node",
        "failed, no retry",
        "mean hops",
        "timeouts/lookup",
      ],
      summary.map((row) => [
        f(row.ratePerRound, 2),
        f(row.ratePerRound / interval, 4),
        String(row.joins),
        String(row.failures),
        String(row.lookups),
        pctCi(row.failed),
        String(row.wrongOwner),
        String(row.gaveUp),
        String(row.metDeadNode),
        pctCi(row.failedNoRetry),
        f(row.meanHops),
        f(row.meanTimeouts, 3),
      ]),
    ),
  )
  return {
    nodes: o.nodes,
    rounds: o.rounds,
    runs: o.runs,
    fingers: o.fingers,
    arrivals: o.arrivals,
    stabilizeIntervalMs: Chord.defaultConfig.stabilizeIntervalMs,
    summary,
    rows: perRun.flat(),
  }
}

const runJoins = (sizes: ReadonlyArray<number>, joins: number, seed: number) => {
  const rows = sizes.map((nodes) =>
    withProgress(`joins N=${nodes}`, (p) => Sim.joinCost({ nodes, joins, seed }, p)),
  )
  console.log(
    "\nCost of a join (section 4.4): messages sent and received by the joining node, " +
      "until linked and until its finger table is exact",
  )
  console.log(
    table(
      [
        "N",
        "joins",
        "join lookup hops",
        "msgs to link",
        "rounds to link",
        "msgs to exact fingers",
        "rounds to exact fingers",
        "log2 N",
        "(log2 N)^2",
        "unfinished",
      ],
      rows.map((r) => [
        String(r.nodes),
        String(r.joins),
        f(r.lookupHopsMean),
        f(r.messagesToLinkMean, 1),
        f(r.roundsToLinkMean),
        f(r.messagesToFingersMean, 1),
        f(r.roundsToFingersMean),
        f(r.log2N, 1),
        f(r.log2N ** 2, 0),
        String(r.notLinked + r.fingersNotExact),
      ]),
    ),
  )
  return rows
}

const parseExperiments = (text: string): Array<Experiment> | string => {
  const words = text.split(",").map((w) => w.trim())
  if (words.includes("all")) return [...EXPERIMENTS]
  for (const w of words) {
    if (!(EXPERIMENTS as ReadonlyArray<string>).includes(w)) return `unknown experiment "${w}"`
  }
  return words as Array<Experiment>
}

export const main = (argv: ReadonlyArray<string>): Promise<number> =>
  withParsed(spec, argv, async ({ values }) => {
    const nodes = num(values, "nodes") ?? 131072
    const seed = num(values, "seed") ?? 1
    const lookups = num(values, "lookups") ?? 10000
    const experiments = parseExperiments(str(values, "experiment") ?? "all")
    if (typeof experiments === "string") return usageError(spec, experiments)
    if (nodes < 2) return usageError(spec, "--nodes must be at least 2")
    if (lookups < 1) return usageError(spec, "--lookups must be at least 1")
    const rates = (str(values, "churn-rates") ?? "0.333,0.5,1,2,3").split(",").map(Number)
    if (rates.some((r) => !(r >= 0))) return usageError(spec, "--churn-rates: numbers ≥ 0")
    const churnPaper = bool(values, "churn-paper")
    const churnFingers = str(values, "churn-fingers") ?? (churnPaper ? "all" : "one")
    if (churnFingers !== "one" && churnFingers !== "all") {
      return usageError(spec, "--churn-fingers: one or all")
    }
    const churnRuns = num(values, "churn-runs") ?? (churnPaper ? 10 : 1)
    if (churnRuns < 1) return usageError(spec, "--churn-runs must be at least 1")
    const svg = str(values, "svg")
    if (svg !== undefined && !experiments.includes("path")) {
      return usageError(spec, "--svg plots the path experiment; include it in --experiment")
    }
    const sizes = sizesUpTo(nodes)
    const results: Record<string, unknown> = {
      meta: {
        command: "impl/cli/sim-chord.ts",
        seed,
        nodes,
        lookups,
        experiments,
        chord: Chord.defaultConfig,
        latency: "exponential, mean 50 ms",
        successorList: "r = 2·⌈log2 N⌉",
      },
    }
    if (experiments.includes("path")) {
      const path = runPath(sizes, lookups, seed)
      results.path = path
      if (svg !== undefined) {
        writeFileSync(svg, pathLengthSvg(path))
        process.stderr.write(`wrote ${svg}\n`)
      }
    }
    if (experiments.includes("failure")) {
      const failureNodes = Math.min(num(values, "failure-nodes") ?? 10000, nodes)
      results.failure = runFailure(failureNodes, lookups, seed)
    }
    if (experiments.includes("churn")) {
      results.churn = runChurn({
        nodes: num(values, "churn-nodes") ?? 500,
        rounds: num(values, "churn-rounds") ?? 120,
        rates,
        seed,
        runs: churnRuns,
        fingers: churnFingers,
        arrivals: churnPaper ? "poisson" : "fixed",
      })
    }
    if (experiments.includes("joins")) {
      const joinMax = Math.min(num(values, "join-nodes-max") ?? 32768, nodes)
      const joinSizes = sizes.filter((n) => n <= joinMax)
      results.joins = runJoins(
        joinSizes.length > 0 ? joinSizes : [joinMax],
        num(values, "joins") ?? 50,
        seed,
      )
    }
    const out = str(values, "out")
    if (out !== undefined) {
      writeFileSync(out, `${JSON.stringify(results, null, 2)}\n`)
      process.stderr.write(`wrote ${out}\n`)
    }
    return 0
  })

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code
    },
    (error: unknown) => {
      process.stderr.write(
        `sim-chord: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
      )
      process.exitCode = 1
    },
  )
}
