/**
 * `npm run mutate [-- [--force] [--concurrency N] [--seed S] [target[:lines]] ...]`
 *
 * Mutation testing of impl/core with Stryker, one target file at a time (mutate/targets.ts).
 * For each target, Stryker's command runner runs, against every mutant, only the fast property
 * suites that exercise that file (each suite in its own `node --import tsx` process, stopping at
 * the first failing one), with a fixed fast-check seed so that a mutant's fate does not change
 * from one run to the next.
 *
 * Incremental: results are kept per target in reports/mutation/<target>.incremental.json, and a
 * rerun tests only the mutants whose code changed. The command runner reports one pseudo-test,
 * so Stryker cannot see that a suite changed; this script does: when the target's suites (or
 * properties/helpers, models) differ from the last run, the survivors are dropped from the
 * incremental file and tested again (killed mutants are kept, as Stryker itself would).
 * `--force` retests everything; `--recheck-timeouts` retests the mutants that timed out (on a busy
 * machine a slow run of a surviving mutant can pass for a timeout), best with a larger
 * `--timeout-ms` (Stryker's timeoutMS, added to twice the unmutated run's time). Each suite also
 * has its own limit (three times its unmutated run, plus 10 s): a mutant that hangs a suite
 * fails it, and counts as killed, without waiting for Stryker's whole-command timeout.
 *
 * Arguments: target names (`hlc`, `version`, …; none: all, smallest first), optionally with a
 * line range for Stryker's --mutate (`version:1-200`). Reports: reports/mutation/<target>.json
 * (the mutation-testing-report-schema JSON) and reports/mutation/summary.json. Not run in CI.
 */
import { spawnSync } from "node:child_process"
import { createHash } from "node:crypto"
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { defaultOrder, type Target, targets } from "./targets.ts"

const OUT = "reports/mutation"

interface Args {
  force: boolean
  recheckTimeouts: boolean
  timeoutMs: number | undefined
  concurrency: number | undefined
  seed: number
  picks: Array<{ name: string; lines: string | undefined }>
}

const parseArgs = (argv: ReadonlyArray<string>): Args => {
  const args: Args = {
    force: false,
    recheckTimeouts: false,
    timeoutMs: undefined,
    concurrency: undefined,
    seed: 1,
    picks: [],
  }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!
    if (a === "--force") args.force = true
    else if (a === "--recheck-timeouts") args.recheckTimeouts = true
    else if (a === "--timeout-ms") args.timeoutMs = Number(argv[++i])
    else if (a === "--concurrency") args.concurrency = Number(argv[++i])
    else if (a === "--seed") args.seed = Number(argv[++i])
    else if (a === "--help" || a === "-h") {
      console.log(
        `usage: npm run mutate -- [--force] [--recheck-timeouts] [--timeout-ms MS] [--concurrency N] [--seed S] [target[:from-to]] ...\ntargets: ${defaultOrder.join(" ")}`,
      )
      process.exit(0)
    } else {
      const [name, lines] = a.split(":") as [string, string | undefined]
      if (!(name in targets)) {
        console.error(`mutate: unknown target ${name}; known: ${defaultOrder.join(" ")}`)
        process.exit(2)
      }
      args.picks.push({ name, lines })
    }
  }
  if (args.picks.length === 0) args.picks = defaultOrder.map((name) => ({ name, lines: undefined }))
  return args
}

/** Suites of a target that exist in this tree (mutation-gaps may not, in an old checkout). */
const suitesOf = (target: Target): Array<string> => target.suites.filter((s) => existsSync(s))

/** A digest of everything the target's tests read besides impl/: suites, helpers, models. */
const testsDigest = (suites: ReadonlyArray<string>): string => {
  const hash = createHash("sha256")
  const dirFiles = (dir: string): Array<string> =>
    existsSync(dir)
      ? readdirSync(dir, { recursive: true, encoding: "utf8" })
          .filter((f) => f.endsWith(".ts"))
          .sort()
          .map((f) => join(dir, f))
      : []
  for (const f of [...suites, ...dirFiles("properties/helpers"), ...dirFiles("models")]) {
    hash.update(f).update("\0").update(readFileSync(f)).update("\0")
  }
  return hash.digest("hex")
}

/** Drop the mutants of these statuses from an incremental report so that they run again. */
const forget = (incrementalFile: string, statuses: ReadonlyArray<string>): number => {
  if (!existsSync(incrementalFile)) return 0
  const report = JSON.parse(readFileSync(incrementalFile, "utf8")) as {
    files: Record<string, { mutants: Array<{ status: string }> }>
  }
  let dropped = 0
  for (const file of Object.values(report.files)) {
    const before = file.mutants.length
    file.mutants = file.mutants.filter((m) => !statuses.includes(m.status))
    dropped += before - file.mutants.length
  }
  writeFileSync(incrementalFile, JSON.stringify(report))
  return dropped
}

interface Counts {
  killed: number
  survived: number
  timeout: number
  noCoverage: number
  errors: number
  ignored: number
  total: number
  score: number
}

const countsOf = (jsonReport: string, file: string): Counts => {
  const report = JSON.parse(readFileSync(jsonReport, "utf8")) as {
    files: Record<string, { mutants: Array<{ status: string }> }>
  }
  const mutants = report.files[file]?.mutants ?? []
  const n = (status: string): number => mutants.filter((m) => m.status === status).length
  const killed = n("Killed")
  const survived = n("Survived")
  const timeout = n("Timeout")
  const noCoverage = n("NoCoverage")
  const errors = n("CompileError") + n("RuntimeError")
  const valid = killed + survived + timeout + noCoverage
  return {
    killed,
    survived,
    timeout,
    noCoverage,
    errors,
    ignored: n("Ignored"),
    total: mutants.length,
    score: valid === 0 ? 100 : (100 * (killed + timeout)) / valid,
  }
}

const shellQuote = (s: string): string => `'${s.replace(/'/g, "'\\''")}'`

const runSuite = "node --import tsx --test-reporter=dot"

/**
 * Each suite's time limit against a mutant, in seconds: three times its unmutated run plus ten
 * seconds. A mutant that makes a loop endless then fails (is killed) once the suite it hangs
 * exceeds its own limit, instead of costing Stryker's whole-command timeout (twice all suites
 * plus timeoutMS). Both count as detected; a suite that merely runs slow on a loaded machine
 * would need to take three times as long. Undefined, with the reason printed, when a suite
 * fails unmutated (Stryker's dry run would refuse the target too).
 */
const suiteLimits = (suites: ReadonlyArray<string>, seed: number): Array<number> | undefined => {
  const limits: Array<number> = []
  for (const s of suites) {
    const started = Date.now()
    const run = spawnSync("sh", ["-c", `FC_SEED=${seed} ${runSuite} ${shellQuote(s)}`], {
      stdio: "ignore",
    })
    const seconds = (Date.now() - started) / 1000
    if (run.status !== 0) {
      console.error(`mutate: ${s} fails on the unmutated tree (FC_SEED=${seed}); fix it first`)
      return undefined
    }
    limits.push(Math.ceil(3 * seconds) + 10)
    console.log(`mutate: ${s} ran in ${seconds.toFixed(1)} s unmutated; limit ${limits.at(-1)} s`)
  }
  return limits
}

const main = (): void => {
  const args = parseArgs(process.argv.slice(2))
  mkdirSync(OUT, { recursive: true })
  const base = JSON.parse(readFileSync("stryker.config.json", "utf8")) as Record<string, unknown>
  delete base.$schema
  const summaryFile = join(OUT, "summary.json")
  const summary: Record<string, Counts & { date: string; lines?: string; minutes: number }> =
    existsSync(summaryFile) ? JSON.parse(readFileSync(summaryFile, "utf8")) : {}
  let failed = false

  for (const { name, lines } of args.picks) {
    const target = targets[name]!
    const suites = suitesOf(target)
    const incrementalFile = join(OUT, `${name}.incremental.json`)
    const digestFile = join(OUT, `${name}.tests.sha256`)
    const jsonReport = join(OUT, `${name}.json`)
    const digest = testsDigest(suites)
    if (existsSync(digestFile) && readFileSync(digestFile, "utf8") !== digest) {
      const dropped = forget(incrementalFile, ["Survived", "NoCoverage"])
      console.log(`mutate ${name}: tests changed since the last run; ${dropped} survivor(s) rerun`)
    }
    if (args.recheckTimeouts) {
      const dropped = forget(incrementalFile, ["Timeout"])
      console.log(`mutate ${name}: ${dropped} timed-out mutant(s) rerun`)
    }
    const limits = suiteLimits(suites, args.seed)
    if (limits === undefined) {
      failed = true
      continue
    }
    const command = suites
      .map((s, i) => `FC_SEED=${args.seed} timeout -k 5 ${limits[i]} ${runSuite} ${shellQuote(s)}`)
      .join(" && ")
    const config = {
      ...base,
      mutate: [lines === undefined ? target.file : `${target.file}:${lines}`],
      commandRunner: { command },
      incrementalFile,
      force: args.force,
      jsonReporter: { fileName: jsonReport },
      ...(args.concurrency !== undefined ? { concurrency: args.concurrency } : {}),
      ...(args.timeoutMs !== undefined ? { timeoutMS: args.timeoutMs } : {}),
    }
    const configFile = join(OUT, `${name}.stryker.json`)
    writeFileSync(configFile, `${JSON.stringify(config, null, 2)}\n`)
    console.log(`\nmutate ${name}: ${config.mutate[0]} against ${suites.join(" ")}`)
    const started = Date.now()
    const run = spawnSync(
      process.execPath,
      ["node_modules/@stryker-mutator/core/bin/stryker.js", "run", configFile],
      { stdio: "inherit" },
    )
    const minutes = (Date.now() - started) / 60000
    if (run.status !== 0 || !existsSync(jsonReport)) {
      console.error(`mutate ${name}: stryker exited ${run.status ?? run.signal}`)
      failed = true
      continue
    }
    writeFileSync(digestFile, digest)
    const counts = countsOf(jsonReport, target.file)
    summary[name] = {
      ...counts,
      date: new Date().toISOString().slice(0, 10),
      ...(lines === undefined ? {} : { lines }),
      minutes: Math.round(minutes * 10) / 10,
    }
    writeFileSync(summaryFile, `${JSON.stringify(summary, null, 2)}\n`)
  }

  console.log("\n| target | killed | survived | timeout | no coverage | errors | score | date |")
  console.log("| --- | --- | --- | --- | --- | --- | --- | --- |")
  for (const name of defaultOrder) {
    const c = summary[name]
    if (c === undefined) continue
    const where = c.lines === undefined ? name : `${name}:${c.lines}`
    console.log(
      `| ${where} | ${c.killed} | ${c.survived} | ${c.timeout} | ${c.noCoverage} | ${c.errors} | ${c.score.toFixed(1)} % | ${c.date} |`,
    )
  }
  if (failed) process.exit(1)
}

main()
